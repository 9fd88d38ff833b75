"""The answer to a rep: a headline, the causes with their one fix each, the help-center steps that
go with those fixes, and the actions. Pure data; every surface (terminal, JSON, Slack, HTML) renders
it, and every surface shows the same facts.

The article follows the cause: the first article shown is the detected cause's (a revoked grant →
"Calendar Shows Not Connected"), with only the section that fixes it; the article the question
matched comes second, and only when it adds something the causes don't. A step is marked by what
it is for this rep — do this, or checked for you — never with a ❌ on the help center's own words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from calsync.diagnostics.causes import Cause, find_causes
from calsync.diagnostics.findings import Finding, Severity
from calsync.knowledge.loader import Article, KnowledgeBase, Step
from calsync.render import labels

__all__ = [
    "Action",
    "Answer",
    "AnswerKind",
    "MarkedStep",
    "ShownArticle",
    "actions_for",
    "articles_for",
    "compose",
    "headline_for",
    "shown_causes",
]

AnswerKind = Literal["answer", "declined", "smalltalk"]
ActionKind = Literal["reconnect", "sync_now", "contact_support"]
StepMark = Literal["do", "checked"]

# What a check that found nothing wrong has established, for "checked for you: …".
CHECKED_NOTES: dict[str, str] = {
    "connection": "your calendar is connected",
    "calendar": "the right calendar is selected",
    "sync": "syncs are on time",
    "duplicates": "no duplicates",
    "changes": "calendar edits are being picked up",
    "provider_switch": "nothing left over from a switch",
}
HEALTHY = "Your calendar connection looks healthy — I found nothing wrong."
DECLINED = "That's not something I can help with — I answer questions about calendar sync."
UNSURE = "I checked your calendar connection and found nothing wrong."


@dataclass(frozen=True)
class MarkedStep:
    step: Step
    mark: StepMark | None  # None: no check speaks to this step (the help center's guidance)
    note: str = ""  # for "checked": what was found fine

    @property
    def label(self) -> str:
        if self.mark == "do":
            return "Do this"
        if self.mark == "checked":
            return f"Checked for you: {self.note}" if self.note else "Checked for you"
        return ""


@dataclass(frozen=True)
class ShownArticle:
    article: Article
    steps: tuple[MarkedStep, ...]  # only the steps that matter for this rep
    matched: bool  # the article the question matched (else: the one a cause's fix calls for)
    cause: str | None = None  # the code of the cause whose fix these steps are


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
    article: str | None  # the article the question matched (None: no question, not sure, off-topic)
    headline: str  # the one line first: the cause in plain words and what it affects
    causes: tuple[Cause, ...]  # in order of impact
    findings: tuple[Finding, ...]  # every finding, most severe first (agents and Details see them all)
    articles: tuple[ShownArticle, ...]
    actions: tuple[Action, ...]
    checked_at: datetime
    kind: AnswerKind = "answer"
    confidence: float | None = None
    alternatives: tuple[tuple[str, float], ...] = ()
    ambiguous: bool = False
    user_name: str = ""
    checks_run: tuple[str, ...] = field(default=())
    diagnosis_id: str | None = None  # the audit entry of this answer: feedback and support refer to it

    @property
    def off_topic(self) -> bool:
        return self.kind == "declined"

    @property
    def shown_causes(self) -> tuple[Cause, ...]:
        return shown_causes(self.kind, self.causes)

    @property
    def problems(self) -> tuple[Cause, ...]:
        """Causes that need something done, or that we could not check."""
        return _problems(self.causes)

    @property
    def worst(self) -> Severity:
        return max((finding.severity for finding in self.findings), key=lambda s: s.rank, default=Severity.OK)

    @property
    def offers_choices(self) -> bool:
        """Whether to ask "did you mean …?": only when nothing was found that answers it already."""
        if self.kind != "answer" or any(c.severity.rank >= Severity.WARNING.rank for c in self.causes):
            return False
        return self.ambiguous or (
            self.question is not None and self.article is None and bool(self.alternatives)
        )

    def hint_for(self, finding: Finding) -> str:
        """The finding's hint for the rep, unless the cause it is folded into overrules it: an
        incident the rep can only wait out (its connection's own "reconnect" would contradict it)."""
        for cause in self.causes:
            if (
                cause.code.startswith("incident.")
                and cause.fix.kind == "wait"
                and finding.code in cause.findings[1:]
                and finding.connection_id == cause.connection_id
            ):
                return ""
        return finding.hint

    @property
    def has_rep_fix(self) -> bool:
        return any(cause.fix.by_rep for cause in self.shown_causes)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON contract of `calsync diagnose --json` and `calsync ask --json`."""
        return {
            "user": self.user,
            "question": self.question,
            "article": self.article,
            "findings": [finding.to_json() for finding in self.findings],
            "articles": list(dict.fromkeys(shown.article.id for shown in self.articles)),
            "actions": [action.to_json() for action in self.actions],
            "headline": self.headline,
            "causes": [cause.to_json() for cause in self.causes],
            "kind": self.kind,
        }


# -- building it ---------------------------------------------------------------------------------


def _problems(causes: Sequence[Cause]) -> tuple[Cause, ...]:
    """Causes that need something done, or that we could not check."""
    return tuple(cause for cause in causes if cause.severity.rank >= Severity.WARNING.rank)


# The appointment the question names, found where it should be: it answers the question, so it
# comes right after anything broken, before lesser problems. (Not finding the one named is said only
# when nothing else is: a problem found explains more than a name we could not place.)
TRACED = frozenset({"sync.appointment_found"})


def shown_causes(kind: AnswerKind, causes: Sequence[Cause]) -> tuple[Cause, ...]:
    """What a rep is shown: what is broken, then the appointment the question names, then the other
    problems — or when there are none the one fact worth leading with. A declined question shows
    only a broken calendar (an error), in one line."""
    if kind == "declined":
        return tuple(cause for cause in causes if cause.severity is Severity.ERROR)[:1]
    problems = _problems(causes)
    broken = [cause for cause in problems if cause.severity is Severity.ERROR]
    traced = [cause for cause in causes if cause.code in TRACED and cause not in problems]
    shown = [*broken, *traced, *(cause for cause in problems if cause not in broken)]
    return tuple(shown) or tuple(causes[:1])


def _checked_steps(
    article: Article, findings: Sequence[Finding], checks_run: Sequence[str]
) -> list[MarkedStep]:
    """Every step of an article, marked "checked" where its checks ran and found nothing wrong."""
    marked = []
    for step in article.steps:
        related = [name for name in article.checks.get(step.key, ()) if name in checks_run]
        relevant = [finding for finding in findings if finding.check in related]
        if related and relevant and all(f.severity in (Severity.OK, Severity.INFO) for f in relevant):
            notes = [CHECKED_NOTES[name] for name in related if name in CHECKED_NOTES]
            marked.append(MarkedStep(step, "checked", ", ".join(dict.fromkeys(notes))))
        else:
            marked.append(MarkedStep(step, None))
    return marked


def articles_for(
    knowledge: KnowledgeBase,
    causes: Sequence[Cause],
    matched: Sequence[str],
    findings: Sequence[Finding],
    checks_run: Sequence[str],
) -> tuple[ShownArticle, ...]:
    """The fix sections of the causes' articles first (each step once), then the matched article
    when it adds something: all of it when no cause is shown, else only its steps no check speaks
    to (the help center's own guidance, such as how to allow pop-ups)."""
    shown: list[ShownArticle] = []
    done: set[tuple[str, str]] = set()  # (article, step) already shown
    for cause in causes:
        if not cause.fix.article:
            continue
        article = knowledge.get(cause.fix.article)
        keys = [key for key in cause.fix.steps if (article.id, key) not in done]
        done.update((article.id, key) for key in keys)
        if keys:
            marked = tuple(MarkedStep(article.step(key), "do") for key in keys)
            shown.append(ShownArticle(article, marked, article.id in matched, cause.code))
    by_cause = {article_id for article_id, _ in done}
    for article_id in matched:
        if article_id in by_cause:
            continue
        article = knowledge.get(article_id)
        every = _checked_steps(article, findings, checks_run)
        if causes:  # a cause leads: only the guidance no check speaks to can add something
            every = [marked for marked in every if not article.checks.get(marked.step.key)]
        if every:
            shown.append(ShownArticle(article, tuple(every), True))
    return tuple(shown)


def actions_for(causes: Sequence[Cause], reconnect_url: Callable[[str], str | None]) -> tuple[Action, ...]:
    """One Reconnect per provider whose cause is fixed by signing in again; else Sync now when a
    cause waits on a cycle; Talk to support always last (shown only where no rep fix exists)."""
    actions: list[Action] = []
    for cause in causes:
        provider = cause.fix.provider
        if cause.fix.kind == "reconnect" and provider and all(a.provider != provider for a in actions):
            product = labels.product(provider)
            actions.append(Action("reconnect", f"Reconnect {product}", provider, reconnect_url(provider)))
    if not actions and any(cause.fix.cycle_helps for cause in causes):
        actions.append(Action("sync_now", "Sync now"))
    actions.append(Action("contact_support", "Talk to support"))
    return tuple(actions)


def headline_for(kind: AnswerKind, causes: Sequence[Cause], *, unsure: bool) -> str:
    """The first line: the most important cause, or that nothing is wrong (`unsure`: the question
    matched no article, so we say what we checked rather than that the rep's problem is solved)."""
    if kind == "declined":
        return DECLINED
    shown = shown_causes(kind, causes)
    if shown:
        return shown[0].summary
    return UNSURE if unsure else HEALTHY


def _guidance(shown: Sequence[Cause], matched: Sequence[str]) -> Sequence[str]:
    """The matched articles whose guidance may be added: none while an incident leads and the rep can
    only wait (how to connect or allow pop-ups would contradict "reconnecting won't help")."""
    waiting = any(c.code.startswith("incident.") and c.fix.kind == "wait" for c in shown)
    return () if waiting else matched


def compose(
    knowledge: KnowledgeBase,
    *,
    user: str,
    user_name: str,
    question: str | None,
    findings: Sequence[Finding],
    checked_at: datetime,
    checks_run: Sequence[str],
    reconnect_url: Callable[[str], str | None],
    article: str | None = None,
    matched: Sequence[str] = (),
    declined: bool = False,
    confidence: float | None = None,
    alternatives: tuple[tuple[str, float], ...] = (),
    ambiguous: bool = False,
) -> Answer:
    """The answer for findings already made, most severe first: causes, headline, articles, actions.
    `matched` are the articles the question matched (the chosen one first); `declined` says the
    question is clearly about something else."""

    kind: AnswerKind = "declined" if declined else "answer"
    causes = find_causes(findings)
    shown = shown_causes(kind, causes)
    return Answer(
        user=user,
        user_name=user_name,
        question=question,
        article=article,
        headline=headline_for(kind, causes, unsure=question is not None and not matched),
        causes=causes,
        findings=tuple(findings),
        articles=()
        if declined
        else articles_for(knowledge, shown, _guidance(shown, matched), findings, checks_run),
        actions=actions_for(shown, reconnect_url),
        checked_at=checked_at,
        kind=kind,
        confidence=confidence,
        alternatives=alternatives,
        ambiguous=ambiguous,
        checks_run=tuple(checks_run),
    )
