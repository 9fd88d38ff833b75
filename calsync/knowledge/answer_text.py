"""A matched question as an answer a person reads: terminal text (rich) and plain JSON-able data.

This is the knowledge-only answer (article steps, "did you mean", "what I can help with"); the live
diagnostics' findings and actions join it later through the `Answer` the troubleshooter builds.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from calsync.knowledge.loader import Article, KnowledgeBase
from calsync.knowledge.matcher import Match

__all__ = ["OTHER_HELP", "answer_data", "articles_shown", "offered", "render_answer", "render_article"]

OTHER_HELP = (
    "For anything else (your SalesPartner password or login, billing and invoices, the mobile app, "
    "CRM features and reports) please contact SalesPartner support."
)


def offered(match: Match) -> tuple[str, ...]:
    """The articles to offer as "did you mean": both top two when they are close, else none."""
    if not match.ambiguous:
        return ()
    return tuple(article_id for article_id, _ in match.alternatives[:2])


def articles_shown(match: Match) -> list[str]:
    """Article ids the answer shows: the match first, then any "did you mean" alternative."""
    shown = [match.article] if match.article is not None else []
    shown.extend(a for a in offered(match) if a not in shown)
    return shown


def answer_data(user: str, question: str, match: Match) -> dict[str, Any]:
    """The `ask --json` object (findings and actions come with the live diagnostics)."""
    return {
        "user": user,
        "question": question,
        "article": match.article,
        "findings": [],
        "articles": articles_shown(match),
        "actions": [],
    }


def render_article(article: Article) -> RenderableType:
    parts: list[RenderableType] = []
    if article.summary:
        parts.append(Text(article.summary, style="italic"))
    for step in article.steps:
        parts.append(Text(""))
        parts.append(Text(step.title, style="bold"))
        if step.text:
            parts.append(Text(step.text))
        for number, item in enumerate(step.items, start=1):
            marker = f"{number}." if step.ordered else "•"
            parts.append(Text(f"  {marker} {item}"))
    return Panel(
        Group(*parts), title=f"[bold]{escape(article.title)}[/bold]", title_align="left", expand=False
    )


def _help_topics(kb: KnowledgeBase) -> RenderableType:
    lines: list[RenderableType] = [
        Text("I can help with calendar sync between SalesPartner and your calendar:")
    ]
    lines.extend(Text(f"  • {article.title}") for article in kb.articles)
    lines.append(Text(""))
    lines.append(Text(OTHER_HELP))
    return Group(*lines)


def render_answer(console: Console, kb: KnowledgeBase, question: str, match: Match) -> None:
    """Print the answer to `question` for a person at a terminal."""
    console.print(Text.assemble(("Q: ", "bold cyan"), question[:500]))
    alternatives = [a for a in offered(match) if a != match.article]
    if match.article is not None:
        console.print(render_article(kb.get(match.article)))
        if alternatives:
            titles = " or ".join(f"“{kb.get(a).title}”" for a in alternatives)
            console.print(Text(f"Did you mean {titles}?", style="yellow"))
        return
    if alternatives:
        titles = " or ".join(f"“{kb.get(a).title}”" for a in alternatives)
        console.print(Text(f"I'm not sure which problem this is. Did you mean {titles}?", style="yellow"))
        return
    console.print(_help_topics(kb))
