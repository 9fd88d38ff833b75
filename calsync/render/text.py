"""An `Answer` for a person at a terminal (rich): the verdict, the findings, the articles with each
step marked by what the checks saw, and the actions. Agents also see each finding's evidence."""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from calsync.diagnostics.answer import Answer, ShownArticle
from calsync.diagnostics.findings import Finding, Severity
from calsync.knowledge.loader import KnowledgeBase

OTHER_HELP = (
    "For anything else (your SalesPartner password or login, billing and invoices, the mobile app, "
    "CRM features and reports) please contact SalesPartner support."
)

SEVERITY_MARKS: dict[Severity, tuple[str, str]] = {
    Severity.ERROR: ("❌", "bold red"),
    Severity.WARNING: ("⚠️ ", "yellow"),
    Severity.UNKNOWN: ("❔", "magenta"),
    Severity.INFO: ("ℹ️ ", "cyan"),
    Severity.OK: ("✅", "green"),
}
STEP_STYLES = {"error": "red", "warning": "yellow", "unknown": "magenta", "ok": "green"}


def help_topics(knowledge: KnowledgeBase) -> str:
    """What calsync can help with, for off-topic questions (every surface uses this text)."""
    topics = "\n".join(f"  • {article.title}" for article in knowledge.articles)
    return f"I can help with calendar sync between SalesPartner and your calendar:\n{topics}\n\n{OTHER_HELP}"


def _finding(finding: Finding, evidence: bool) -> RenderableType:
    mark, style = SEVERITY_MARKS[finding.severity]
    lines: list[RenderableType] = [Text.assemble((f"{mark} ", style), (finding.summary, style))]
    if finding.hint and finding.severity is not Severity.OK:
        lines.append(Text(f"   → {finding.hint}", style="dim"))
    if evidence and finding.evidence:
        detail = json.dumps(dict(finding.evidence), ensure_ascii=False, default=str)
        lines.append(Text(f"   [{finding.code}] {detail}", style="dim"))
    return Group(*lines)


def _article(shown: ShownArticle) -> RenderableType:
    article = shown.article
    parts: list[RenderableType] = []
    if article.summary:
        parts.append(Text(article.summary, style="italic"))
    for marked in shown.steps:
        parts.append(Text(""))
        style = STEP_STYLES.get(marked.mark or "", "")
        parts.append(Text.assemble((f"{marked.symbol} ", style), (marked.step.title, "bold")))
        if marked.step.text:
            parts.append(Text(marked.step.text))
        for number, item in enumerate(marked.step.items, start=1):
            parts.append(Text(f"  {f'{number}.' if marked.step.ordered else '•'} {item}"))
    title = article.title if shown.matched else f"{article.title} (what we found calls for this)"
    return Panel(Group(*parts), title=Text(title, style="bold"), title_align="left", expand=False)


def render_answer(answer: Answer, knowledge: KnowledgeBase, *, evidence: bool = False) -> RenderableType:
    """The whole answer; `evidence` adds each finding's code and detail (for support agents)."""
    parts: list[RenderableType] = []
    who = f"{answer.user_name} <{answer.user}>" if answer.user_name else answer.user
    if answer.question is not None:
        parts.append(Text.assemble(("Q: ", "bold cyan"), (answer.question[:500], ""), (f"  — {who}", "dim")))
    else:
        parts.append(Text.assemble(("Diagnosis of ", "bold cyan"), (who, "bold")))
    if answer.off_topic:
        if answer.alternatives:
            titles = " or ".join(
                f"“{knowledge.get(article).title}”" for article, _ in answer.alternatives[:2]
            )
            parts.append(Text(f"I'm not sure which problem this is. Did you mean {titles}?", style="yellow"))
        else:
            parts.append(Text(answer.verdict, style="bold"))
            parts.append(Text(help_topics(knowledge)))
        return Group(*parts)
    worst_style = SEVERITY_MARKS[answer.worst][1] if answer.findings else "bold"
    parts.append(Text(answer.verdict, style=f"bold {worst_style}"))
    if answer.ambiguous and len(answer.articles) > 1:
        titles = " or ".join(f"“{shown.article.title}”" for shown in answer.articles if shown.matched)
        parts.append(Text(f"Did you mean {titles}? Both are below.", style="yellow"))
    findings = answer.findings if evidence else answer.visible_findings
    if findings:
        parts.append(Text(""))
        parts.append(Text("What I found", style="bold underline"))
        parts.extend(_finding(finding, evidence) for finding in findings)
    for shown in answer.articles:
        parts.append(Text(""))
        parts.append(_article(shown))
    if answer.actions:
        parts.append(Text(""))
        for action in answer.actions:
            target = f": {action.url}" if action.url else ""
            parts.append(Text(f"[{action.label}]{target}", style="bold blue"))
    return Group(*parts)
