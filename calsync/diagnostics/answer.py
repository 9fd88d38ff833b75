"""The answer to a rep: findings, the articles to show with each step marked by what the checks saw,
and the actions that fix it. Pure data; every surface (terminal, JSON, Slack, HTML) renders it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from calsync.diagnostics.findings import Finding, Severity, by_severity
from calsync.knowledge.loader import Article, KnowledgeBase, Step

ActionKind = Literal["reconnect", "sync_now", "contact_support"]
StepMark = Literal["ok", "warning", "error", "unknown"]

MARK_SYMBOLS: dict[str, str] = {"ok": "✅", "warning": "⚠️", "error": "❌", "unknown": "❔"}

# The article a problem calls for, by check; a few codes are better served by another article.
ARTICLE_FOR_CHECK: dict[str, str] = {
    "connection": "not-connected",
    "calendar": "not-showing",
    "sync": "not-showing",
    "duplicates": "duplicates",
    "changes": "changes-not-syncing",
    "provider_switch": "switch-provider",
}
ARTICLE_FOR_CODE: dict[str, str] = {
    "connection.multiple_active": "duplicates",
    "connection.none": "not-connected",
}
# Findings whose fix is signing in again (a new grant, and the selected calendar checked again).
RECONNECT_CODES = frozenset(
    {
        "connection.disconnected",
        "connection.revoked",
        "connection.expired",
        "connection.consent_removed",
        "connection.sign_in_required",
        "connection.no_tokens",
        "calendar.not_found",
        "calendar.none_selected",
    }
)
CALENDAR_PRODUCTS = {"google": "Google Calendar", "microsoft": "Outlook"}


@dataclass(frozen=True)
class MarkedStep:
    step: Step
    mark: StepMark | None  # None: no check speaks to this step
    codes: tuple[str, ...] = ()  # the findings behind the mark

    @property
    def symbol(self) -> str:
        return MARK_SYMBOLS[self.mark] if self.mark else "•"


@dataclass(frozen=True)
class ShownArticle:
    article: Article
    steps: tuple[MarkedStep, ...]
    matched: bool  # the article the question matched (else: one the findings called for)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    label: str
    provider: str | None = None
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "provider": self.provider, "url": self.url}


@dataclass(frozen=True)
class Answer:
    user: str
    question: str | None
    article: str | None  # the article the question matched (None: no question, or off-topic)
    findings: tuple[Finding, ...]
    articles: tuple[ShownArticle, ...]
    actions: tuple[Action, ...]
    verdict: str
    checked_at: datetime
    confidence: float | None = None
    alternatives: tuple[tuple[str, float], ...] = ()
    ambiguous: bool = False
    off_topic: bool = False
    user_name: str = ""
    checks_run: tuple[str, ...] = field(default=())
    diagnosis_id: str | None = None  # the audit entry of this answer: feedback and support refer to it

    @property
    def visible_findings(self) -> tuple[Finding, ...]:
        """What a rep is shown: everything that is not `ok`, and the `ok` findings of the checks the
        shown articles relate to (all of them for a diagnosis without a question)."""
        if self.question is None:
            return self.findings
        related = {name for shown in self.articles for name in shown.article.checks_for()}
        return tuple(f for f in self.findings if f.severity is not Severity.OK or f.check in related)

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.is_problem)

    @property
    def worst(self) -> Severity:
        return self.findings[0].severity if self.findings else Severity.OK

    def to_json(self) -> dict[str, Any]:
        """The stable JSON contract of `calsync diagnose --json` and `calsync ask --json`."""
        return {
            "user": self.user,
            "question": self.question,
            "article": self.article,
            "findings": [finding.to_json() for finding in self.findings],
            "articles": [shown.article.id for shown in self.articles],
            "actions": [action.to_json() for action in self.actions],
        }


def mark_steps(
    article: Article, findings: Sequence[Finding], checks_run: Sequence[str]
) -> tuple[MarkedStep, ...]:
    """Each step marked by the worst finding of the checks related to it (front matter `checks`)."""
    marked = []
    for step in article.steps:
        related = [name for name in article.checks.get(step.key, ()) if name in checks_run]
        relevant = [finding for finding in findings if finding.check in related]
        if not related:
            marked.append(MarkedStep(step, None))
            continue
        worst = max(
            (finding.severity for finding in relevant), key=lambda severity: severity.rank, default=None
        )
        mark: StepMark = "ok"
        if worst in (Severity.ERROR, Severity.WARNING, Severity.UNKNOWN):
            mark = worst.value  # type: ignore[assignment]
        causes = tuple(
            finding.code for finding in relevant if worst is not None and finding.severity is worst
        )
        marked.append(MarkedStep(step, mark, causes))
    return tuple(marked)


def articles_for(
    knowledge: KnowledgeBase,
    matched: Sequence[str],
    findings: Sequence[Finding],
    checks_run: Sequence[str],
) -> tuple[ShownArticle, ...]:
    """The articles the problems call for (most severe first), then the matched ones.

    A problem whose fix is reconnecting always calls for its article (a not-showing question from
    a rep whose grant is revoked leads with the not-connected steps); any other problem calls for
    its article only when the matched articles have no step about its check already.
    """
    covered = {name for article_id in matched for name in knowledge.get(article_id).checks_for()}
    ordered = by_severity(list(findings))
    # When nothing is wrong but something is worth knowing, that thing leads (and so does its article).
    leading_info = ordered[0] if ordered and ordered[0].severity is Severity.INFO else None
    called_for: list[str] = []
    for finding in ordered:
        if finding.severity not in (Severity.ERROR, Severity.WARNING) and finding is not leading_info:
            continue
        article_id = ARTICLE_FOR_CODE.get(finding.code) or ARTICLE_FOR_CHECK.get(finding.check)
        if not article_id or article_id in called_for or article_id in matched:
            continue
        if (
            finding.code in RECONNECT_CODES
            or finding.code in ARTICLE_FOR_CODE
            or finding.check not in covered
        ):
            called_for.append(article_id)
    shown = []
    for article_id in (*called_for, *matched):
        article = knowledge.get(article_id)
        shown.append(ShownArticle(article, mark_steps(article, findings, checks_run), article_id in matched))
    return tuple(shown)


# Findings a cycle run now may clear: something waiting for the next sync, either way. Offered only
# when nothing needs a reconnect first (a sync cannot get through a dead grant).
SYNC_NOW_CODES = frozenset(
    {
        "sync.pending",
        "sync.overdue",
        "sync.push_late",
        "sync.pull_late",
        "sync.last_run_failed",
        "sync.appointment_missing",
        "changes.pending",
        "changes.not_picked_up",
    }
)


def actions_for(findings: Sequence[Finding], reconnect_url: Any) -> tuple[Action, ...]:
    """Reconnect for each provider whose connection needs a new sign-in, then contact support."""
    actions: list[Action] = []
    for finding in findings:
        if finding.code in RECONNECT_CODES and finding.provider:
            if any(action.provider == finding.provider for action in actions):
                continue
            product = CALENDAR_PRODUCTS.get(finding.provider, finding.provider)
            actions.append(
                Action("reconnect", f"Reconnect {product}", finding.provider, reconnect_url(finding.provider))
            )
    if not actions and any(finding.code in SYNC_NOW_CODES for finding in findings):
        actions.append(Action("sync_now", "Sync now"))
    actions.append(Action("contact_support", "Talk to support"))
    return tuple(actions)


def verdict_for(findings: Sequence[Finding]) -> str:
    """One line first: the worst problem in the rep's words, or that nothing is wrong."""
    if not findings:
        return "I couldn't find anything to check for you."
    top = findings[0]
    if top.severity is not Severity.OK:
        return top.summary
    return "Your calendar connection looks healthy — I found nothing wrong."
