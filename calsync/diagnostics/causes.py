"""Findings grouped into causes: one cause, its consequences folded in, one fix.

A revoked grant explains the late push, the failed run, the overdue appointment and the checks that
could not look: the rep hears one thing ("Google says access was revoked; 'Tasting demo for Wonka' is
waiting for this"), one fix (Reconnect) and nothing that contradicts it. The findings themselves are
kept whole for agents (the JSON, the report, the Details view); a cause lists the codes it stands for.

`find_causes(findings)` walks the rules below in order of impact: each rule's root findings become a
cause, and the findings of the same connection it explains are folded into it. What no rule explains
and is still a problem becomes a cause of its own, so nothing a rep should know is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from calsync.diagnostics.findings import Finding, Severity
from calsync.render import labels
from calsync.render.words import appointments_phrase

FixKind = Literal[
    "reconnect",  # sign in again (the Reconnect button)
    "connect",  # no calendar connected at all
    "choose_calendar",  # select another calendar in Settings
    "choose_account",  # connect the work account instead
    "turn_off",  # one connection too many: turn one off
    "sync_now",  # waiting on the next cycle; the Sync now button runs it
    "wait",  # nothing to do: it arrives or clears by itself
    "book_again",  # the appointment was cancelled; book it again to keep it
    "name_it",  # we could not tell which appointment the rep means
    "contact_support",  # nothing the rep can do: support can
    "nothing",  # a fact worth knowing, nothing to fix
]
# Fixes the rep makes: a cause with one of these is never shown beside "contact support".
REP_FIXES: frozenset[FixKind] = frozenset(
    {"reconnect", "connect", "choose_calendar", "choose_account", "turn_off", "sync_now", "book_again"}
)


# Codes a cause of one connection explains on that connection (prefix match with a trailing dot).
SYNC_CONSEQUENCES = (
    "sync.push_late",
    "sync.pull_late",
    "sync.last_run_failed",
    "sync.overdue",
    "sync.pending",
    "sync.appointment_missing",
    "changes.not_picked_up",
    "changes.pending",
    "provider.",
    ".skipped",
    ".timeout",
)
TRANSIENT_RUN_CODES = frozenset({"rate_limited", "provider_unavailable", "timeout", "malformed_response"})


@dataclass(frozen=True)
class Fix:
    kind: FixKind
    words: str  # one sentence: what to do (the steps, when there are any, are the article's)
    article: str | None = None  # the help-center article whose section shows how
    steps: tuple[str, ...] = ()  # that section's step keys
    provider: str | None = None  # for a reconnect: which calendar
    cycle_helps: bool = False  # a sync cycle now would settle it (the Sync now button)

    @property
    def by_rep(self) -> bool:
        return self.kind in REP_FIXES

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "words": self.words,
            "article": self.article,
            "steps": list(self.steps),
            "provider": self.provider,
        }


@dataclass(frozen=True)
class Cause:
    code: str  # the root finding's code: what this cause is
    severity: Severity
    summary: str  # the cause in plain words, what it affects folded in
    fix: Fix
    findings: tuple[str, ...]  # the codes it stands for: the root first, then its consequences
    provider: str | None = None
    connection_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "summary": self.summary,
            "fix": self.fix.to_json(),
            "findings": list(self.findings),
        }


# -- the rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    roots: frozenset[str]
    fix: FixKind
    words: str  # `{product}`: "Google Calendar" / "Outlook"
    article: str | None = None
    steps: tuple[str, ...] = ()
    explains: tuple[str, ...] = ()  # consequence codes (or prefixes/suffixes) on the same connection
    one_cause: bool = False  # every root of this rule makes one cause together (duplicates)
    cycle_helps: bool = False  # waiting on the next cycle: Sync now runs it


def _rule(
    roots: Iterable[str],
    fix: FixKind,
    words: str,
    article: str | None = None,
    steps: Iterable[str] = (),
    explains: Iterable[str] = (),
    *,
    one_cause: bool = False,
    cycle_helps: bool = False,
) -> _Rule:
    return _Rule(
        frozenset(roots),
        fix,
        words,
        article,
        tuple(steps),
        tuple(explains),
        one_cause,
        cycle_helps or fix == "sync_now",
    )


RECONNECT_WORDS = "Reconnect {product}: sign in again and allow the permissions — it takes a minute."
GRANT_CODES = (
    "connection.revoked",
    "connection.expired",
    "connection.consent_removed",
    "connection.sign_in_required",
    "connection.disconnected",
    "connection.no_tokens",
)
DUPLICATE_ROOTS = (
    "duplicates.old_provider_still_active",
    "duplicates.two_active_connections",
    "duplicates.same_account_twice",
    "connection.multiple_active",
)
PROVIDER_TROUBLE = ("provider.rate_limited", "provider.unavailable", "provider.timeout", "provider.malformed")
# A shared cause (`checks/incidents.py`): it explains the connection's own grant findings, so the
# rep is not told to reconnect while their admin's change makes reconnecting fail.
ORG_INCIDENTS = ("incident.org_consent_removed", "incident.org_access_revoked")

RULES: tuple[_Rule, ...] = (
    _rule(ORG_INCIDENTS, "wait", "", explains=[*GRANT_CODES, "sync.last_run_failed", *SYNC_CONSEQUENCES]),
    _rule(["incident.provider_outage"], "wait", "", explains=[*PROVIDER_TROUBLE, *SYNC_CONSEQUENCES]),
    _rule(GRANT_CODES, "reconnect", RECONNECT_WORDS, "not-connected", ["reconnect"], SYNC_CONSEQUENCES),
    _rule(
        ["connection.none"],
        "connect",
        "Connect your calendar in Settings > Calendar Connections.",
        "not-connected",
        ["reconnect"],
        ["sync.appointment_missing"],
    ),
    _rule(
        ["calendar.not_found", "calendar.none_selected"],
        "reconnect",
        "Reconnect {product} and your own calendar is selected for you — or pick another one in "
        "Settings > Calendar Connections.",
        "not-showing",
        ["right-calendar"],
        SYNC_CONSEQUENCES,
    ),
    _rule(
        ["calendar.read_only"],
        "choose_calendar",
        "Select a calendar you can edit, such as your own, in Settings > Calendar Connections.",
        "not-showing",
        ["right-calendar"],
        SYNC_CONSEQUENCES,
    ),
    _rule(
        DUPLICATE_ROOTS,
        "turn_off",
        "Keep one connection: turn off the one you don't use in Settings > Calendar Connections.",
        "duplicates",
        ["multiple-calendars"],
        ["duplicates.found", *DUPLICATE_ROOTS],
        one_cause=True,
    ),
    _rule(
        ["sync.cancellations_held"],
        "nothing",
        "Nothing to do now: they stay booked until support checks with you. If you deleted them on "
        "purpose, tell support.",
        explains=["sync.appointment_missing", "sync.appointment_cancelled"],
    ),
    _rule(
        PROVIDER_TROUBLE,
        "wait",
        "Nothing to reconnect: this clears by itself. Check again in a few minutes.",
        explains=SYNC_CONSEQUENCES,
    ),
    _rule(
        ["changes.cancelled_by_delete", "sync.appointment_cancelled"],
        "book_again",
        "To keep the meeting, book it again from the conversation — deleting an event in your "
        "calendar cancels it in SalesPartner.",
        "changes-not-syncing",
        ["what-doesnt-sync"],
        ["changes.cancelled_by_delete", "sync.appointment_cancelled"],
        one_cause=True,
    ),
    _rule(
        ["sync.last_run_failed"],
        "sync_now",
        "Sync now tries again right away; if it fails again, talk to support — that part is on our side.",
        None,
        [],
        [
            "sync.push_late",
            "sync.pull_late",
            "sync.overdue",
            "sync.pending",
            "sync.appointment_missing",
            "changes.not_picked_up",
        ],
    ),
    _rule(
        ["calendar.not_primary"],
        "choose_calendar",
        "If that's not where you want them, select your own calendar in Settings > Calendar Connections.",
        "not-showing",
        ["right-calendar"],
    ),
    _rule(
        ["calendar.personal_account"],
        "choose_account",
        "Disconnect the personal account in Settings > Calendar Connections and connect your work "
        "account instead.",
        "not-showing",
        ["right-calendar"],
    ),
    _rule(
        ["duplicates.found"],
        "contact_support",
        "Delete just one copy of each doubled appointment; if copies keep appearing, talk to support — "
        "it may be a sync conflict on our side.",
        "duplicates",
        ["dont-delete-both", "contact-support"],
    ),
    _rule(
        ["sync.overdue", "sync.push_late"],
        "sync_now",
        "Sync now sends it right away.",
        None,
        [],
        ["sync.push_late", "sync.pull_late", "sync.overdue", "sync.appointment_missing"],
        one_cause=True,
    ),
    _rule(
        ["changes.not_picked_up", "sync.pull_late"],
        "sync_now",
        "Sync now picks your calendar edits up right away.",
        None,
        [],
        ["sync.pull_late", "changes.not_picked_up", "sync.last_run_failed", "sync.appointment_found"],
        one_cause=True,
    ),
    _rule(
        ["sync.pending"],
        "wait",
        "",  # the headline says when; the help center's step says what to do
        "not-showing",
        ["give-it-a-moment"],
        cycle_helps=True,
    ),
    _rule(
        ["changes.pending"],
        "wait",
        "",  # the headline says when; the help center's step says the rest
        "changes-not-syncing",
        ["sync-timing"],
        ["sync.appointment_found"],  # the moved event, found at its new time: the same story
        cycle_helps=True,
    ),
    _rule(
        ["provider_switch.switched"],
        "nothing",
        "Look for older appointments in your previous calendar; new ones go to your current one.",
        "switch-provider",
        ["important"],
        ["sync.appointment_missing"],
    ),
    _rule(
        ["sync.appointment_not_identified"],
        "name_it",
        "Tell me the company, day and time, e.g. “my 2pm with Acme tomorrow”.",
    ),
)
# A finding no rule claims gets a cause of its own with this fix, by severity.
_LEFTOVER_FIX: dict[Severity, FixKind] = {
    Severity.ERROR: "contact_support",
    Severity.WARNING: "contact_support",
    Severity.UNKNOWN: "wait",
    Severity.INFO: "nothing",
}


# -- grouping --------------------------------------------------------------------------------------


def _matches(code: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith(".") and code.endswith(pattern):
            return True
        if pattern.endswith(".") and code.startswith(pattern):
            return True
        if code == pattern:
            return True
    return False


def _eligible(finding: Finding) -> bool:
    """Anything but a plain "fine"; an appointment found where it should be is worth leading with."""
    return finding.severity is not Severity.OK or finding.code == "sync.appointment_found"


def _same_place(root: Finding, other: Finding) -> bool:
    """Whether `other` is about the connection (or provider) `root` is about; a finding about the
    rep as a whole goes with either."""
    if root.connection_id is not None and other.connection_id is not None:
        return root.connection_id == other.connection_id
    if root.provider is not None and other.provider is not None:
        return root.provider == other.provider
    return True


def _explained(rule: _Rule, root: Finding, other: Finding) -> bool:
    if not _matches(other.code, rule.explains) or not _same_place(root, other):
        return False
    if rule.fix == "wait" and other.code == "sync.last_run_failed" and not rule.roots & set(ORG_INCIDENTS):
        # A provider having trouble explains a run that failed for the same (transient) reason only.
        return other.evidence.get("code") in TRANSIENT_RUN_CODES
    return True


def _waiting(findings: Sequence[Finding]) -> list[str]:
    """Titles of the appointments these findings say are still waiting to reach the calendar."""
    titles: list[str] = []
    for finding in findings:
        if finding.code in ("sync.overdue", "sync.pending"):
            items = finding.evidence.get("appointments") or []
            titles.extend(str(item.get("title") or "") for item in items if isinstance(item, dict))
        elif finding.code == "sync.appointment_missing":
            appointment = finding.evidence.get("appointment") or {}
            if isinstance(appointment, dict) and appointment.get("title"):
                titles.append(str(appointment["title"]))
    return list(dict.fromkeys(title for title in titles if title))


def waiting_clause(titles: Sequence[str]) -> str:
    """ "‘A’ is waiting for this." / "‘A’ and 2 others are waiting for this."."""
    if not titles:
        return ""
    return appointments_phrase(titles, singular="is waiting for this.", plural="are waiting for this.")


def _summary(rule: _Rule | None, root: Finding, folded: Sequence[Finding]) -> str:
    summary = root.summary.strip()
    if rule is not None and rule.fix in ("reconnect", "connect", "choose_calendar", "wait"):
        clause = waiting_clause(_waiting(folded))
        if clause and root.code not in ("sync.overdue", "sync.pending"):
            summary = f"{summary} {clause}"
    return summary


def _fix(rule: _Rule | None, root: Finding) -> Fix:
    product = labels.product(root.provider, "your calendar")
    if rule is None:
        kind = _LEFTOVER_FIX.get(root.severity, "nothing")
        return Fix(kind, root.hint or "", provider=root.provider)
    if root.code in ORG_INCIDENTS and root.evidence.get("reconnected"):
        # Colleagues reconnected since: the admin restored access, and reconnecting works again.
        return Fix("reconnect", root.hint, "not-connected", ("reconnect",), root.provider)
    words = root.hint if root.code.startswith("incident.") else rule.words.format(product=product)
    if root.code == "connection.consent_removed":
        words += " If it says an administrator must approve SalesPartner, ask your IT team to approve it."
    elif root.code == "connection.sign_in_required":
        words += " Finish the whole sign-in, including any multi-factor prompt."
    provider = root.provider if rule.fix == "reconnect" else None
    return Fix(rule.fix, words, rule.article, rule.steps, provider, rule.cycle_helps)


def find_causes(findings: Sequence[Finding]) -> tuple[Cause, ...]:
    """The causes behind `findings`, in order of impact, each finding in at most one cause."""
    claimed: set[int] = set()  # indexes into findings
    causes: list[tuple[int, int, Cause]] = []  # (severity rank, rule order, cause)
    for order, rule in enumerate(RULES):
        roots = [
            (i, f)
            for i, f in enumerate(findings)
            if i not in claimed and f.code in rule.roots and _eligible(f)
        ]
        groups: list[list[tuple[int, Finding]]] = (
            [roots] if rule.one_cause and roots else [[root] for root in roots]
        )
        for group in groups:
            # The most severe root leads the cause.
            group.sort(key=lambda pair: -pair[1].severity.rank)
            _, lead = group[0]
            members = [i for i, _ in group]
            for i, other in enumerate(findings):
                if i in claimed or i in members:
                    continue
                if _explained(rule, lead, other):
                    members.append(i)
            folded = [findings[i] for i in members]
            severity = max((f.severity for f in folded), key=lambda s: s.rank)
            if severity is Severity.UNKNOWN and lead.severity is not Severity.UNKNOWN:
                severity = lead.severity  # a check that could not look does not outrank the cause
            claimed.update(members)
            causes.append(
                (
                    severity.rank,
                    order,
                    Cause(
                        code=lead.code,
                        severity=severity,
                        summary=_summary(rule, lead, folded),
                        fix=_fix(rule, lead),
                        findings=tuple(dict.fromkeys(findings[i].code for i in members)),
                        provider=lead.provider,
                        connection_id=lead.connection_id,
                    ),
                )
            )
    for i, finding in enumerate(findings):
        if i in claimed or not _eligible(finding):
            continue
        claimed.add(i)
        causes.append(
            (
                finding.severity.rank,
                len(RULES),
                Cause(
                    code=finding.code,
                    severity=finding.severity,
                    summary=finding.summary,
                    fix=_fix(None, finding),
                    findings=(finding.code,),
                    provider=finding.provider,
                    connection_id=finding.connection_id,
                ),
            )
        )
    causes.sort(key=lambda item: (-item[0], item[1]))
    return tuple(cause for _, _, cause in causes)
