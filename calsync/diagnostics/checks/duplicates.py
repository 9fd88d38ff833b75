"""The `duplicates` check: does the same appointment show up more than once on the rep's calendars?

Rep-level and live: the events of every active connection's selected calendar in the window around
today (read concurrently; the live view reads each calendar once per diagnosis), grouped in one pass
by our appointment id — or, for events that don't carry it, by (normalized title, start). A group of
two or more copies is a duplicate, across calendars or within one.

The root cause comes from where the copies are:
- on two providers (Google Calendar and Outlook): the old connection is still active after a switch;
- on two accounts of one provider: two active connections;
- on one account that is connected twice: the same account connected twice;
- anything else (copies on one calendar of one connection): a sync conflict we can't explain.

A calendar that can't be read means no verdict, never a false "no duplicates": a dead grant
propagates to the runner; a transient failure becomes the runner's `unknown` finding for that
connection (built with `runner.failure`, so it merges with the other checks' one).
That two connections are active at all is a database fact the `connection` check reports on its
own (`connection.multiple_active`), so it survives an outage there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.humanize import clock_time
from calsync.diagnostics.runner import failure
from calsync.diagnostics.state import ConnectionState, RepState, evidence_time
from calsync.render import labels
from calsync.syncbackend.providers.base import Event, GrantError, ProviderError

NAME = "duplicates"
TITLE = "Duplicate appointments"

MAX_GROUPS_IN_EVIDENCE = 10

# The help center's warning, said in the summary whenever duplicates exist, and in full in the hint.
DONT_DELETE_BOTH = "Don't delete both copies — deleting an event cancels the appointment."
DELETE_WARNING = (
    "If you delete an appointment from your calendar, SalesPartner will mark it as cancelled. "
    "Only delete one copy."
)
ONE_CONNECTION = "Go to Settings > Calendar Connections and make sure you only have one active connection"

OLD_PROVIDER = "duplicates.old_provider_still_active"
TWO_CONNECTIONS = "duplicates.two_active_connections"
SAME_ACCOUNT = "duplicates.same_account_twice"
FOUND = "duplicates.found"
NONE = "duplicates.none"


# -- the scan: pure, one pass ---------------------------------------------------------------------


class EventCopy(NamedTuple):
    """One copy of a duplicated appointment: which connection read it, and where it is. (A named
    tuple: a scan may build ten thousand of them, and a frozen dataclass is ~4x slower to build.)"""

    connection_id: int
    connection_label: str
    provider: str
    account_email: str
    calendar_id: str
    event_id: str
    title: str
    start: datetime
    appointment_id: str | None

    def to_evidence(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "connection": self.connection_label,
            "provider": self.provider,
            "calendar_id": self.calendar_id,
            "event_id": self.event_id,
            "carries_appointment_id": self.appointment_id is not None,
        }


@dataclass(frozen=True)
class DuplicateGroup:
    """Two or more events that are the same appointment (or the same foreign event)."""

    appointment_id: str | None  # None: events without our id, grouped by title and start
    title: str
    start: datetime
    copies: tuple[EventCopy, ...]

    @property
    def providers(self) -> frozenset[str]:
        return frozenset(copy.provider for copy in self.copies)

    @property
    def accounts(self) -> frozenset[tuple[str, str]]:
        return frozenset((copy.provider, copy.account_email) for copy in self.copies)

    @property
    def connection_ids(self) -> frozenset[int]:
        return frozenset(copy.connection_id for copy in self.copies)

    def to_evidence(self) -> dict[str, Any]:
        return {
            "appointment_id": self.appointment_id,
            "title": self.title,
            "start": evidence_time(self.start),
            "copies": [copy.to_evidence() for copy in self.copies],
        }


def normalize_title(title: str) -> str:
    """Case and spacing don't make two events different."""
    return " ".join(title.casefold().split())


_Seen = tuple[ConnectionState, Event]


def find_duplicate_groups(
    events_by_connection: Mapping[ConnectionState, Sequence[Event]],
) -> list[DuplicateGroup]:
    """Groups of two or more copies, ordered by start then title.

    One pass over the events with dict grouping (no pairwise comparison):
    - events carrying our appointment id are grouped by it, across calendars and within one;
    - events without it are grouped by (normalized title, start); such a group joins the appointment
      with the same title and start when there is one (a copy that lost our id is still a copy);
    - cancelled events are not copies; one event read through two connections (the same account
      connected twice, the same calendar selected) counts once.
    """
    seen: set[tuple[str, str, str, str]] = set()
    by_appointment: dict[str, list[_Seen]] = {}
    appointment_at: dict[tuple[str, datetime], str] = {}
    foreign: dict[tuple[str, datetime], list[_Seen]] = {}
    for connection, events in events_by_connection.items():
        account = connection.account_email.lower()
        for event in events:
            if event.status == "cancelled":
                continue
            physical = (connection.provider, account, event.calendar_id, event.id)
            if physical in seen:
                continue
            seen.add(physical)
            slot = (normalize_title(event.title), event.start)
            if event.appointment_id:
                copies = by_appointment.get(event.appointment_id)
                if copies is None:
                    by_appointment[event.appointment_id] = [(connection, event)]
                else:
                    copies.append((connection, event))
                appointment_at.setdefault(slot, event.appointment_id)
            else:
                same = foreign.get(slot)
                if same is None:
                    foreign[slot] = [(connection, event)]
                else:
                    same.append((connection, event))

    groups: list[DuplicateGroup] = []
    for slot, copies in foreign.items():
        owner = appointment_at.get(slot)
        if owner is not None:
            by_appointment[owner].extend(copies)
        elif len(copies) > 1:
            groups.append(_group(None, copies))
    groups.extend(
        _group(appointment_id, copies) for appointment_id, copies in by_appointment.items() if len(copies) > 1
    )
    groups.sort(key=lambda group: (group.start, normalize_title(group.title)))
    return groups


def _group(appointment_id: str | None, seen: list[_Seen]) -> DuplicateGroup:
    # The copy carrying our id names the group (its title is the appointment's).
    first = next(((c, e) for c, e in seen if e.appointment_id), seen[0])[1]
    return DuplicateGroup(
        appointment_id=appointment_id,
        title=first.title,
        start=first.start,
        copies=tuple(
            EventCopy(
                connection_id=connection.id,
                connection_label=connection.label,
                provider=connection.provider,
                account_email=connection.account_email.lower(),
                calendar_id=event.calendar_id,
                event_id=event.id,
                title=event.title,
                start=event.start,
                appointment_id=event.appointment_id,
            )
            for connection, event in seen
        ),
    )


def cause_of(group: DuplicateGroup, active: Sequence[ConnectionState]) -> str:
    """The finding code that explains one group, given the rep's active connections."""
    if len(group.providers) > 1:
        return OLD_PROVIDER
    if len(group.accounts) > 1:
        return TWO_CONNECTIONS
    ((provider, account),) = group.accounts
    same_account = [c for c in active if c.provider == provider and c.account_email.lower() == account]
    if len(same_account) > 1:
        return SAME_ACCOUNT
    return FOUND


# -- the check ------------------------------------------------------------------------------------


async def _run(context: CheckContext) -> Sequence[Finding]:
    # Connections the connection/calendar checks already explain (no tokens, no calendar selected)
    # can't be read; with one of them left out, "no duplicates" would be a guess, so we say nothing.
    active = context.rep.active_connections
    readable = [c for c in active if context.live.has_tokens(c) and c.selected_calendar_id]
    if not readable:
        return []
    results = await asyncio.gather(
        *(context.live.events(connection) for connection in readable), return_exceptions=True
    )
    failures = _failures(readable, results)
    if failures:
        return failures
    fetched = [result for result in results if isinstance(result, list)]
    events_by_connection = dict(zip(readable, fetched, strict=True))
    checked = sum(len(events) for events in fetched)
    groups = find_duplicate_groups(events_by_connection)
    complete = len(readable) == len(active)
    if not groups:
        return [_none(context, readable, checked)] if complete else []

    by_cause: dict[str, list[DuplicateGroup]] = {}
    for group in groups:
        by_cause.setdefault(cause_of(group, active), []).append(group)
    findings = []
    for code in (OLD_PROVIDER, TWO_CONNECTIONS, SAME_ACCOUNT, FOUND):
        if code in by_cause:
            findings.append(_duplicates(context, code, by_cause[code], active, checked))
    return findings


def _failures(
    readable: Sequence[ConnectionState], results: Sequence[list[Event] | BaseException]
) -> list[Finding]:
    """A calendar we could not read means no verdict. A dead grant propagates (the runner skips this
    check; the connection check reports it); a transient failure becomes the runner's own `unknown`
    finding, but tied to its connection so it merges with the other checks' finding for that
    connection instead of showing twice."""
    failures = []
    for connection, result in zip(readable, results, strict=True):
        if isinstance(result, GrantError):
            raise result
        if isinstance(result, ProviderError):
            failures.append(failure(DUPLICATES, result, connection))
        elif isinstance(result, BaseException):
            raise result
    return failures


def _duplicates(
    context: CheckContext,
    code: str,
    groups: list[DuplicateGroup],
    active: Sequence[ConnectionState],
    checked: int,
) -> Finding:
    involved = sorted(
        (c for c in active if c.id in {i for g in groups for i in g.connection_ids}), key=_connected_at
    )
    # Same account connected twice: the copies may all have been read through one connection.
    if code == SAME_ACCOUNT:
        ((twice, account),) = groups[0].accounts
        involved = sorted(
            (c for c in active if c.provider == twice and c.account_email.lower() == account),
            key=_connected_at,
        )
    example = _example(groups, context.rep, context.now)
    how_many = _how_many(groups)
    severity = Severity.ERROR
    provider: str | None = None
    connection_id: int | None = None
    if code == OLD_PROVIDER:
        old, new = involved[0], involved[-1]
        old_product, new_product = labels.product(old.provider), labels.product(new.provider)
        summary = (
            f"Every appointment reaches both {old_product} and {new_product}: the old "
            f"{labels.provider_name(old.provider)} connection ({old.account_email}) is still "
            f"active after you switched. {how_many}, "
            f"like {example}. {DONT_DELETE_BOTH}"
        )
        hint = (
            f"Disconnect the one you no longer use (probably {old_product}): Settings > Calendar "
            f"Connections > Disconnect, so only one connection is active. {DELETE_WARNING}"
        )
        provider, connection_id = old.provider, old.id
    elif code == TWO_CONNECTIONS:
        product = labels.product(involved[0].provider)
        accounts = _and([c.account_email for c in involved])
        summary = (
            f"Your appointments reach two {product} accounts, {accounts}: both connections are "
            f"active. {how_many}, like {example}. {DONT_DELETE_BOTH}"
        )
        hint = f"{ONE_CONNECTION}: disconnect the account you don't use for appointments. {DELETE_WARNING}"
        provider = involved[0].provider
    elif code == SAME_ACCOUNT:
        first = involved[0]
        product = labels.product(first.provider)
        summary = (
            f"Your {product} account {first.account_email} is connected twice, so each appointment "
            f"is added twice. {how_many}, like {example}. {DONT_DELETE_BOTH}"
        )
        hint = (
            f"You have the same {product} account connected through two connections. "
            f"{ONE_CONNECTION}: disconnect one of them. {DELETE_WARNING}"
        )
        provider, connection_id = first.provider, involved[-1].id
    else:
        severity = Severity.WARNING
        where = _and(sorted({labels.calendar_noun(copy.provider) for g in groups for copy in g.copies}))
        summary = f"{how_many} on your {where}, like {example}. {DONT_DELETE_BOTH}"
        hint = (
            f"{DELETE_WARNING} Duplicates that keep appearing may indicate a sync conflict: "
            "contact support if it keeps happening — our team can look at your account and sort it out."
        )
        providers = {copy.provider for g in groups for copy in g.copies}
        connections = {copy.connection_id for g in groups for copy in g.copies}
        provider = next(iter(providers)) if len(providers) == 1 else None
        connection_id = next(iter(connections)) if len(connections) == 1 else None
    return Finding(
        check=NAME,
        code=code,
        severity=severity,
        summary=summary,
        hint=hint,
        evidence={
            "events_checked": checked,
            "groups_total": len(groups),
            "groups": [group.to_evidence() for group in groups[:MAX_GROUPS_IN_EVIDENCE]],
            "connections": [_connection_evidence(c) for c in involved],
        },
        provider=provider,
        connection_id=connection_id,
    )


def _none(context: CheckContext, readable: Sequence[ConnectionState], checked: int) -> Finding:
    where = _and([labels.calendar_noun(c.provider) for c in readable])
    events = "1 event" if checked == 1 else f"{checked} events"
    return Finding(
        check=NAME,
        code=NONE,
        severity=Severity.OK,
        summary=(
            f"No duplicates on your {where}: we checked {events} from the last 2 days and the next 2 weeks."
        ),
        evidence={
            "events_checked": checked,
            "window": {
                "from": evidence_time(context.now - timedelta(days=2)),
                "to": evidence_time(context.now + timedelta(days=14)),
            },
            "connections": [_connection_evidence(c) for c in readable],
        },
        provider=readable[0].provider if len(readable) == 1 else None,
        connection_id=readable[0].id if len(readable) == 1 else None,
    )


# -- words ----------------------------------------------------------------------------------------


def _connected_at(connection: ConnectionState) -> datetime:
    return connection.authorized_at or connection.created_at


def _connection_evidence(connection: ConnectionState) -> dict[str, Any]:
    return {
        "id": connection.id,
        "label": connection.label,
        "provider": connection.provider,
        "account_email": connection.account_email,
        "calendar_id": connection.selected_calendar_id,
        "connected_at": evidence_time(_connected_at(connection)),
    }


def _and(items: Iterable[str]) -> str:
    words = list(dict.fromkeys(items))
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _times(count: int) -> str:
    return "twice" if count == 2 else f"{count} times"


def _how_many(groups: Sequence[DuplicateGroup]) -> str:
    noun = "appointment" if all(g.appointment_id for g in groups) else "event"
    most = max(len(g.copies) for g in groups)
    often = _times(most) if all(len(g.copies) == most for g in groups) else "more than once"
    if len(groups) == 1:
        return f"1 {noun} shows up {often}"
    return f"{len(groups)} {noun}s show up {often}"


def _example(groups: Sequence[DuplicateGroup], rep: RepState, now: datetime) -> str:
    group = groups[0]
    zone = _zone_of(rep, group.appointment_id)
    return f"'{group.title}' ({clock_time(group.start, now, zone)})"


def _zone_of(rep: RepState, appointment_id: str | None) -> tzinfo:
    appointment = next((a for a in rep.appointments if a.id == appointment_id), None)
    if appointment is None:
        return UTC
    try:
        return ZoneInfo(appointment.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


DUPLICATES = Check(name=NAME, title=TITLE, run_rep=_run)
