"""The `changes` check: what happened to edits the rep made in the calendar itself?

The help center's rules: calendar edits (time/date, title, description) sync back within 15–30
minutes; deleting an event cancels the appointment; events added directly in the calendar never
create appointments.

Rep part (database only, so it survives a provider outage): appointments cancelled in the last 14
days because their event was deleted in the calendar.
Connection part, per active connection (live): events on the selected calendar carrying our
appointment id whose time, title or description differ from the appointment and that were edited
after the last pickup — pending (normal) or overdue — else "picked up"; and, when the rep asks about
an event they added in the calendar themselves, the by-design answer with a few such events.
Provider failures propagate to the runner (an `unknown` finding, never a false "picked up").
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.humanize import ago, clock_time, duration
from calsync.diagnostics.state import AppointmentState, ConnectionState, SyncRunState, evidence_time
from calsync.render import labels
from calsync.syncbackend.appointments import DELETED_IN_CALENDAR
from calsync.syncbackend.providers.base import Event

NAME = "changes"
TITLE = "Calendar changes"

CANCELLED_WINDOW = timedelta(days=14)
PICKUP_DEADLINE = timedelta(minutes=35)  # the help center's 15–30 minutes, plus a little slack
MAX_LISTED = 5

TIMING = "SalesPartner picks up calendar edits within 15–30 minutes"
DIRECT_EVENTS = (
    "Events you add directly in your calendar don't create appointments in SalesPartner — "
    "appointments must be booked through conversations."
)


# -- rep part: database facts ---------------------------------------------------------------------


def _cancelled_by_delete(appointment: AppointmentState, now: datetime) -> bool:
    return (
        appointment.status == "cancelled"
        and appointment.cancellation_reason == DELETED_IN_CALENDAR
        and appointment.updated_at >= now - CANCELLED_WINDOW
    )


async def _run_rep(context: CheckContext) -> Sequence[Finding]:
    rep, now = context.rep, context.now
    cancelled = sorted(
        (a for a in rep.appointments if _cancelled_by_delete(a, now)),
        key=lambda a: a.updated_at,
        reverse=True,
    )
    if not cancelled:
        return []
    connections = {c.id: c for c in rep.connections}

    def where(appointment: AppointmentState) -> ConnectionState | None:
        links = sorted(appointment.links, key=lambda link: link.state != "deleted")
        return next(
            (connections[link.connection_id] for link in links if link.connection_id in connections), None
        )

    places = {where(a) for a in cancelled}
    place = next(iter(places)) if len(places) == 1 else None
    calendar = f"your {labels.calendar_noun(place.provider)}" if place else "your calendar"
    if len(cancelled) == 1:
        (appointment,) = cancelled
        summary = (
            f"'{appointment.title}' was cancelled {_ago(appointment.updated_at, now)} because its event "
            f"was deleted in {calendar}."
        )
    else:
        listed = _and([f"'{a.title}' ({_ago(a.updated_at, now)})" for a in cancelled[:MAX_LISTED]])
        more = f" and {len(cancelled) - MAX_LISTED} more" if len(cancelled) > MAX_LISTED else ""
        summary = (
            f"{len(cancelled)} appointments were cancelled in the last 14 days because their events were "
            f"deleted in {calendar}: {listed}{more}."
        )
    return [
        Finding(
            check=NAME,
            code="changes.cancelled_by_delete",
            severity=Severity.WARNING,
            summary=summary,
            hint=(
                "Deleting an event in your calendar cancels the appointment in SalesPartner. If that was "
                "a mistake, book it again in SalesPartner and it will be added back to your calendar."
            ),
            evidence={
                "appointments": [
                    {
                        "id": a.id,
                        "title": a.title,
                        "start": evidence_time(a.start),
                        "cancelled_at": evidence_time(a.updated_at),
                        "cancellation_reason": a.cancellation_reason,
                        "connection": _label(where(a)),
                        "event_id": next(
                            (link.event_id for link in a.links if link.state == "deleted"), None
                        ),
                    }
                    for a in cancelled[:10]
                ],
                "count": len(cancelled),
            },
            provider=place.provider if place else None,
            connection_id=place.id if place else None,
        )
    ]


# -- connection part: live ------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarEdit:
    """An edit made in the calendar to one of our events that SalesPartner has not picked up yet."""

    appointment: AppointmentState
    event: Event
    changed: tuple[str, ...]  # "time", "title", "description"
    since: datetime | None  # the last time SalesPartner read or wrote this event

    def to_evidence(self) -> dict[str, Any]:
        return {
            "appointment_id": self.appointment.id,
            "event_id": self.event.id,
            "calendar_id": self.event.calendar_id,
            "changed": list(self.changed),
            "edited_at": evidence_time(self.event.updated),
            "last_pickup": evidence_time(self.since),
            "in_salespartner": {
                "title": self.appointment.title,
                "start": evidence_time(self.appointment.start),
                "end": evidence_time(self.appointment.end),
            },
            "in_calendar": {
                "title": self.event.title,
                "start": evidence_time(self.event.start),
                "end": evidence_time(self.event.end),
            },
        }


def _text(value: str) -> str:
    """Descriptions compared as text: providers may hand back HTML or re-wrapped lines."""
    without_tags = re.sub(r"<[^>]+>", " ", value) if "<" in value else value
    return " ".join(html.unescape(without_tags).split())


def what_changed(appointment: AppointmentState, event: Event) -> tuple[str, ...]:
    changed = []
    if event.start != appointment.start or event.end != appointment.end:
        changed.append("time")
    if event.title.strip() != appointment.title.strip():
        changed.append("title")
    if _text(event.description) != _text(appointment.description):
        changed.append("description")
    return tuple(changed)


def pending_edits(
    connection: ConnectionState, appointments: Sequence[AppointmentState], events: Sequence[Event]
) -> list[CalendarEdit]:
    """Our events on this calendar edited after SalesPartner last read or wrote them, oldest edit first.

    An event that differs but was last written by us, or whose appointment changed in SalesPartner
    after the event did, is a push still to come (the sync check's business), not a calendar edit.
    """
    by_id = {appointment.id: appointment for appointment in appointments}
    edits = []
    for event in events:
        if event.status == "cancelled" or not event.appointment_id:
            continue
        appointment = by_id.get(event.appointment_id)
        if appointment is None or appointment.status != "booked":
            continue
        link = appointment.link_for(connection.id)
        if link is None or (link.event_id is not None and link.event_id != event.id):
            continue  # a stray copy: the duplicates check's business
        changed = what_changed(appointment, event)
        if not changed:
            continue
        marks = [m for m in (link.last_pulled_at, link.last_pushed_at) if m is not None]
        since = max(marks) if marks else None
        if event.updated is not None:
            newer_than = [*marks, appointment.updated_at]
            if any(event.updated <= mark for mark in newer_than):
                continue
        edits.append(CalendarEdit(appointment, event, changed, since))
    edits.sort(key=lambda edit: edit.event.updated or datetime.max.replace(tzinfo=UTC))
    return edits


async def _run_connection(context: CheckContext, connection: ConnectionState) -> Sequence[Finding]:
    events = await context.live.events(connection)
    now = context.now
    edits = pending_edits(connection, context.rep.appointments, events)
    late = [e for e in edits if e.event.updated is not None and now - e.event.updated > PICKUP_DEADLINE]
    waiting = [e for e in edits if e not in late]
    findings = []
    if late:
        findings.append(_not_picked_up(context, connection, late))
    if waiting:
        findings.append(_pending(context, connection, waiting))
    if not edits:
        findings.append(_picked_up(context, connection, len(events)))
    if context.question and is_about_direct_events(context.question):
        findings.append(_direct_events(context, connection, events))
    return findings


def _describe(edit: CalendarEdit, now: datetime) -> str:
    """What the rep did, e.g. "moved 'Demo with Aperture' to 3:00 PM tomorrow and renamed it 'X'"."""
    appointment, event = edit.appointment, edit.event
    zone = _zone(appointment.time_zone)
    parts: list[str] = []
    if "time" in edit.changed:
        parts.append(f"moved '{appointment.title}' to {clock_time(event.start, now, zone)}")
    if "title" in edit.changed:
        parts.append(
            f"renamed it '{event.title}'" if parts else f"renamed '{appointment.title}' to '{event.title}'"
        )
    if "description" in edit.changed:
        parts.append(
            "edited its description" if parts else f"edited the description of '{appointment.title}'"
        )
    return _and(parts)


def _when_edited(edit: CalendarEdit, now: datetime) -> str:
    return f" {_ago(edit.event.updated, now)}" if edit.event.updated else ""


def _edit_finding(
    connection: ConnectionState,
    code: str,
    severity: Severity,
    summary: str,
    hint: str,
    edits: Sequence[CalendarEdit],
    context: CheckContext,
) -> Finding:
    pulls = context.rep.runs_for(connection.id, "pull")
    evidence = {
        "connection": connection.label,
        "edits": [edit.to_evidence() for edit in edits[:10]],
        "count": len(edits),
        "last_pull_run": _run_evidence(pulls[0]) if pulls else None,
    }
    return Finding.of(NAME, code, severity, summary, hint, evidence, connection)


def _pending(context: CheckContext, connection: ConnectionState, edits: Sequence[CalendarEdit]) -> Finding:
    now = context.now
    if len(edits) == 1:
        (edit,) = edits
        summary = f"You {_describe(edit, now)}{_when_edited(edit, now)}; {TIMING}."
    else:
        titles = _and([f"'{e.appointment.title}'" for e in edits[:MAX_LISTED]])
        summary = (
            f"You changed {len(edits)} appointments in {labels.product(connection.provider)} ({titles}) "
            f"in the last {_minutes(edits[0], now)}; {TIMING}."
        )
    return _edit_finding(
        connection,
        "changes.pending",
        Severity.INFO,
        summary,
        "Nothing to do yet: changes are detected within 15-30 minutes, more often during business "
        "hours. Check SalesPartner again in a little while.",
        edits,
        context,
    )


def _not_picked_up(
    context: CheckContext, connection: ConnectionState, edits: Sequence[CalendarEdit]
) -> Finding:
    now = context.now
    if len(edits) == 1:
        (edit,) = edits
        summary = (
            f"You {_describe(edit, now)}{_when_edited(edit, now)}, and SalesPartner still shows the old "
            "version: it should have been picked up by now (calendar edits sync within 15–30 minutes)."
        )
    else:
        titles = _and([f"'{e.appointment.title}'" for e in edits[:MAX_LISTED]])
        summary = (
            f"{len(edits)} changes you made in {labels.product(connection.provider)} ({titles}) should have been "
            "picked up by now (calendar edits sync within 15–30 minutes), but SalesPartner still shows "
            "the old versions."
        )
    return _edit_finding(
        connection,
        "changes.not_picked_up",
        Severity.WARNING,
        summary,
        "Check that your calendar is still connected (Settings > Calendar Connections): a "
        "disconnected calendar won't receive updates. If it is connected, contact support — our team "
        "can look at your account.",
        edits,
        context,
    )


def _picked_up(context: CheckContext, connection: ConnectionState, checked: int) -> Finding:
    last = _last_pickup(context, connection)
    product = labels.product(connection.provider)
    if last is not None:
        summary = f"SalesPartner is up to date with your edits in {product} (last picked up {_ago(last, context.now)})."
    else:
        summary = f"No edits in {product} are waiting to be picked up by SalesPartner."
    return Finding(
        check=NAME,
        code="changes.picked_up",
        severity=Severity.OK,
        summary=summary,
        evidence={
            "connection": connection.label,
            "events_checked": checked,
            "last_pickup": evidence_time(last),
        },
        provider=connection.provider,
        connection_id=connection.id,
    )


def _last_pickup(context: CheckContext, connection: ConnectionState) -> datetime | None:
    marks = [
        run.finished_at or run.started_at
        for run in context.rep.runs_for(connection.id, "pull")
        if run.status == "ok"
    ]
    marks += [
        link.last_pulled_at
        for appointment in context.rep.appointments
        for link in appointment.links
        if link.connection_id == connection.id and link.last_pulled_at is not None
    ]
    return max(marks) if marks else None


# -- events the rep added in the calendar ---------------------------------------------------------

_ADD_WORDS = frozenset(
    [
        "add",
        "added",
        "adding",
        "adds",
        "create",
        "created",
        "creating",
        "creates",
        "make",
        "made",
        "making",
        "put",
        "putting",
        "enter",
        "entered",
        "new",
    ]
)
_INTO = frozenset({"in", "into", "to", "on", "onto"})
_FILLER = frozenset({"my", "the", "our", "own", "work", "personal", "a"})
_CALENDAR_WORDS = frozenset(
    [
        "calendar",
        "calender",
        "cal",
        "gcal",
        "google",
        "outlook",
        "o365",
        "office",
        "office365",
        "ical",
        "icloud",
        "exchange",
        "teams",
    ]
)
_OURS = frozenset({"salespartner", "sp", "salespartners", "salespartner's"})


def is_about_direct_events(question: str) -> bool:
    """Whether the rep asks about an event they added in the calendar itself ("I added a meeting in
    my calendar but it's not in SalesPartner"): an add-word followed within a few words by "in/to
    (my) calendar|Outlook|Google", with no mention of SalesPartner in between."""
    words = re.findall(r"[a-z0-9']+", question.casefold())
    for start, word in enumerate(words):
        if word not in _ADD_WORDS:
            continue
        for at in range(start + 1, min(start + 8, len(words))):
            if words[at] in _OURS:
                break
            if words[at] not in _INTO:
                continue
            rest = [w for w in words[at + 1 : at + 4] if w not in _FILLER]
            if rest and rest[0] in _CALENDAR_WORDS:
                return True
    return False


def _direct_events(context: CheckContext, connection: ConnectionState, events: Sequence[Event]) -> Finding:
    own = [e for e in events if not e.appointment_id and e.status != "cancelled"]
    calendar = labels.calendar_noun(connection.provider)
    summary = DIRECT_EVENTS
    if len(own) == 1:
        first = own[0]
        summary += (
            f" '{first.title}' ({clock_time(first.start, context.now)}) on your {calendar} was "
            "added there directly, so it stays there only."
        )
    elif own:
        first = own[0]
        summary += (
            f" {len(own)} events on your {calendar}, like '{first.title}' "
            f"({clock_time(first.start, context.now)}), were added there directly, so they stay "
            "there only."
        )
    return Finding(
        check=NAME,
        code="changes.direct_event_ignored",
        severity=Severity.INFO,
        summary=summary,
        hint=(
            "That's by design: adding appointments directly to your calendar won't create them in "
            "SalesPartner. Book the appointment through a conversation in SalesPartner and it will be "
            "added to your calendar."
        ),
        evidence={
            "connection": connection.label,
            "count": len(own),
            "events": [
                {
                    "event_id": e.id,
                    "calendar_id": e.calendar_id,
                    "title": e.title,
                    "start": evidence_time(e.start),
                }
                for e in own[:MAX_LISTED]
            ],
        },
        provider=connection.provider,
        connection_id=connection.id,
    )


# -- words ----------------------------------------------------------------------------------------


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _ago(when: datetime | None, now: datetime) -> str:
    return ago(now - when) if when is not None else "at an unknown time"


def _minutes(edit: CalendarEdit, now: datetime) -> str:
    return duration(now - edit.event.updated, round_up=True) if edit.event.updated else "little while"


def _label(connection: ConnectionState | None) -> str | None:
    return connection.label if connection else None


def _run_evidence(run: SyncRunState) -> dict[str, Any]:
    return {
        "started_at": evidence_time(run.started_at),
        "status": run.status,
        "error_code": run.error_code,
    }


CHANGES = Check(name=NAME, title=TITLE, run_rep=_run_rep, run_connection=_run_connection)
