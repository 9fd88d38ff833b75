"""An `Answer` for a person at a terminal (rich).

Brief by default, as in Slack: the headline (the cause and what it affects), the fix with the steps
of its one help-center section, any other cause once each, and the actions — every URL whole on a
line of its own. `details` adds every finding with its hint (what Slack's *Details* shows, so
without a hint the answer overrules);
`evidence` adds each finding's code and evidence (what an agent sees).
"""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.text import Text

from calsync.diagnostics.answer import Answer, ShownArticle
from calsync.diagnostics.causes import Cause
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


def help_topics(knowledge: KnowledgeBase) -> str:
    """What calsync can help with, for off-topic questions (every surface uses this text)."""
    topics = "\n".join(f"  • {article.title}" for article in knowledge.articles)
    return f"I can help with calendar sync between SalesPartner and your calendar:\n{topics}\n\n{OTHER_HELP}"


def _finding(finding: Finding, hint: str, evidence: bool) -> RenderableType:
    mark, style = SEVERITY_MARKS[finding.severity]
    lines: list[RenderableType] = [Text.assemble((f"{mark} ", style), (finding.summary, style))]
    if hint and finding.severity is not Severity.OK:
        lines.append(Text(f"   → {hint}", style="dim"))
    if evidence and finding.evidence:
        detail = json.dumps(dict(finding.evidence), ensure_ascii=False, default=str)
        lines.append(Text(f"   [{finding.code}] {detail}", style="dim"))
    return Group(*lines)


def _steps(shown: ShownArticle) -> list[RenderableType]:
    """The shown steps of one article; a step the checks confirmed says so."""
    parts: list[RenderableType] = []
    for index, marked in enumerate(shown.steps):
        source = f" (help center: {shown.article.title})" if index == 0 else ""
        label = f" — {marked.label}" if marked.mark == "checked" else ""
        parts.append(
            Text.assemble(("  ", ""), (marked.step.title, "bold"), (label, "green"), (source, "dim"))
        )
        if marked.step.text:
            parts.append(Text(f"    {marked.step.text}"))
        for number, item in enumerate(marked.step.items, start=1):
            parts.append(Text(f"    {f'{number}.' if marked.step.ordered else '•'} {item}"))
    return parts


def _cause(cause: Cause, first: bool) -> list[RenderableType]:
    mark, style = SEVERITY_MARKS[cause.severity]
    parts: list[RenderableType] = []
    if not first:
        parts.append(Text.assemble((f"{mark} ", style), ("Also: ", "bold"), (cause.summary, style)))
    if cause.fix.words:
        parts.append(Text.assemble(("Fix: " if cause.fix.by_rep else "", "bold"), (cause.fix.words, "")))
    return parts


def render_answer(
    answer: Answer, knowledge: KnowledgeBase, *, evidence: bool = False, details: bool = False
) -> RenderableType:
    """The whole answer; `details` adds every finding, `evidence` their codes and detail (agents)."""
    parts: list[RenderableType] = []
    who = f"{answer.user_name} <{answer.user}>" if answer.user_name else answer.user
    if answer.question is not None:
        question = " ".join(answer.question.split())[:500]
        parts.append(Text.assemble(("Q: ", "bold cyan"), (question, ""), (f"  — {who}", "dim")))
    else:
        parts.append(Text.assemble(("Diagnosis of ", "bold cyan"), (who, "bold")))
    if answer.kind == "smalltalk":
        parts.append(Text(answer.headline))
        return Group(*parts)

    causes = answer.shown_causes
    lead = causes[0].severity if causes and answer.kind == "answer" else None
    mark, style = SEVERITY_MARKS[lead] if lead is not None else ("", "bold")
    parts.append(Text(f"{mark} {answer.headline}".strip(), style=f"bold {style}".strip()))
    if answer.kind == "declined":
        parts.append(Text(help_topics(knowledge)))
        if causes:
            parts.append(Text(""))
            parts.append(Text.assemble(("By the way: ", "bold"), (causes[0].summary, "")))
            parts.append(Text.assemble(("Fix: ", "bold"), (causes[0].fix.words, "")))
    else:
        for index, cause in enumerate(causes):
            parts.extend(_cause(cause, index == 0))
            for shown in answer.articles:
                if shown.cause == cause.code:
                    parts.extend(_steps(shown))
        for shown in answer.articles:
            if shown.cause is None:
                parts.append(Text(""))
                parts.extend(_steps(shown))
        if answer.offers_choices:
            titles = " or ".join(
                f"“{knowledge.get(article).title}”" for article, _ in answer.alternatives[:2]
            )
            parts.append(Text(f"Did you mean {titles}?", style="yellow"))
    findings = answer.findings if (details or evidence) else ()
    if findings:
        parts.append(Text(""))
        parts.append(Text("Details: what I checked", style="bold underline"))
        # The rep's Details drop a hint the answer overrules, as Slack's do (`Answer.hint_for`: no
        # "Reconnect" while an incident says reconnecting won't help); an agent's evidence view keeps
        # every hint beside its code, as the agent's Slack view does.
        parts.extend(
            _finding(finding, finding.hint if evidence else answer.hint_for(finding), evidence)
            for finding in findings
        )
    buttons = [
        action for action in answer.actions if action.kind != "contact_support" or not answer.has_rep_fix
    ]
    if buttons:
        parts.append(Text(""))
        for action in buttons:
            parts.append(Text(f"[{action.label}]", style="bold blue"))
            if action.url:
                parts.append(Text(action.url, no_wrap=True, overflow="ignore"))
    return Group(*parts)
