"""The `sync` check: is the sync keeping the help center's promises, and where is the appointment
the rep asks about?

The help center's rules: a new appointment reaches the calendar within ~15 minutes; a change made
in the calendar is picked up within 15–30 minutes. A few minutes of grace on top before a run is
called late.

Two parts, so that what the database knows survives a provider outage:
- rep part (database only, never fails on a provider), per active connection: when the last
  successful sync each way was (`sync.ok`, `sync.push_late`, `sync.pull_late`), whether the newest
  run failed (`sync.last_run_failed`), and booked appointments that have not reached the calendar
  yet (`sync.pending`) or should have by now (`sync.overdue`). When the question names an
  appointment: which one (`sync.appointment_not_identified` when none fits), whether it was
  cancelled, and, when our records already say it never got there, why (`sync.appointment_missing`).
- connection part (live), per active connection holding an event for the traced appointment: look
  the event up by our private property and say whether it is there (`sync.appointment_found`),
  deleted (`sync.appointment_cancelled`) or gone (`sync.appointment_missing`). A rate limit or
  outage there is left to the runner: an `unknown` finding, never a false "missing".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.humanize import ago, clock_time, within
from calsync.diagnostics.mentions import Mention, find_appointment, parse_mention, score_appointments
from calsync.diagnostics.state import (
    AppointmentState,
    ConnectionState,
    LinkState,
    SyncRunState,
    evidence_time,
)
from calsync.render import labels
from calsync.syncbackend.providers.base import Event

NAME = "sync"
TITLE = "Recent syncs"

PUSH_WINDOW = timedelta(minutes=15)  # a new appointment reaches the calendar within this
PULL_WINDOW = timedelta(minutes=30)  # a calendar edit is picked up within this
GRACE = timedelta(minutes=5)
PUSH_LATE = PUSH_WINDOW + GRACE
PULL_LATE = PULL_WINDOW + GRACE
VERY_LATE = timedelta(hours=2)  # late turns from a warning into an error
UPCOMING_LISTED = 5
MESSAGE_CHARS = 200

DIRECTION_WORDS = {"push": "to your calendar", "pull": "from your calendar"}

RECONNECT_HINT = (
    "Reconnect: Settings > Calendar Connections > Reconnect, sign in and allow the permissions. "
    "Your appointments sync on the next cycle."
)
CALENDAR_HINT = (
    "Select the calendar you use for appointments (one you can edit) in Settings > Calendar "
    "Connections; your appointments sync on the next cycle."
)
TRANSIENT_HINT = (
    "This usually clears up by itself — nothing needs reconnecting. Check again in a few minutes."
)
SUPPORT_HINT = (
    "If your calendar shows as connected, this is on our side: contact support and mention this "
    "message — nothing for you to fix."
)
WAIT_HINT = "Nothing to do: give it a few minutes, then refresh your calendar."
EDIT_WINDOW_HINT = (
    "Changes you make in your calendar (time, date, title, description) reach SalesPartner within "
    "15–30 minutes; nothing to do."
)
CANCELLED_HINT = (
    "Deleting an event in your calendar cancels the appointment in SalesPartner. To keep the "
    "meeting, book it again from the conversation."
)
HELD_HINT = (
    "Nothing to do now: they stay booked until support checks with you. If you deleted them on "
    "purpose, tell support and they will cancel them."
)
NOT_IDENTIFIED_HINT = (
    "Name the appointment by company, day and time, e.g. \u201cmy 2pm with Acme tomorrow\u201d."
)

# Consecutive transient failures after which they are an error after all (about an hour of cycles).
TRANSIENT_STREAK_IS_ERROR = 4

# error_code of a failed sync run -> (what happened, in the rep's words; what to do)
_FAILURES: dict[str, tuple[str, str]] = {
    "invalid_grant": ("your calendar access was refused", RECONNECT_HINT),
    "rate_limited": ("{provider} was rate limiting us", TRANSIENT_HINT),
    "not_found": ("the selected calendar was not found", CALENDAR_HINT),
    "permission_denied": ("we aren't allowed to write to the selected calendar", CALENDAR_HINT),
    "provider_unavailable": ("{provider} was down", TRANSIENT_HINT),
    "timeout": ("{provider} did not answer in time", TRANSIENT_HINT),
}


# -- small helpers -------------------------------------------------------------------------------------


def _when(run: SyncRunState) -> datetime:
    """When a run happened: its start (what was booked before it started, it carried)."""
    return run.started_at


def _last_ok(runs: Sequence[SyncRunState]) -> SyncRunState | None:
    return next((run for run in runs if run.status == "ok"), None)


def _finished_runs(runs: Sequence[SyncRunState]) -> list[SyncRunState]:
    return [run for run in runs if run.status != "running"]


def _failure_words(run: SyncRunState, connection: ConnectionState) -> str:
    """What went wrong in a failed run, in plain words."""
    known = _FAILURES.get(run.error_code or "")
    if known:
        return known[0].format(provider=labels.provider_name(connection.provider))
    message = (run.error_message or run.error_code or "an unknown error").strip()
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return f"the error was \u201c{message}\u201d"


def _fix_hint(context: CheckContext, connection: ConnectionState, direction: str = "push") -> str:
    """What to do when a direction is not getting through: the cause we know of, else support."""
    if connection.status != "connected":
        return RECONNECT_HINT
    newest = next(iter(_finished_runs(context.rep.runs_for(connection.id, direction))), None)
    if newest is not None and newest.status == "error":
        known = _FAILURES.get(newest.error_code or "")
        if known:
            return known[1]
    return SUPPORT_HINT


def _push_cause(context: CheckContext, connection: ConnectionState) -> str:
    """ " The last sync to your calendar failed 40 minutes ago: ..." when it did, else ""."""
    if connection.status != "connected":
        reason = f" ({connection.status_reason})" if connection.status_reason else ""
        return f" Your {labels.product(connection.provider)} connection is {connection.status}{reason}."
    newest = next(iter(_finished_runs(context.rep.runs_for(connection.id, "push"))), None)
    if newest is not None and newest.status == "error":
        return (
            f" The last sync to your calendar failed {ago(context.now - _when(newest))}: "
            f"{_failure_words(newest, connection)}."
        )
    return ""


def _run_evidence(run: SyncRunState | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "direction": run.direction,
        "status": run.status,
        "started_at": evidence_time(run.started_at),
        "finished_at": evidence_time(run.finished_at),
        "error_code": run.error_code,
        "error_message": run.error_message,
        "counts": dict(run.counts),
    }


def _link_evidence(link: LinkState | None) -> dict[str, Any] | None:
    if link is None:
        return None
    return {
        "connection_id": link.connection_id,
        "calendar_id": link.calendar_id,
        "event_id": link.event_id,
        "state": link.state,
        "last_pushed_at": evidence_time(link.last_pushed_at),
        "last_pulled_at": evidence_time(link.last_pulled_at),
        "error": link.error,
    }


def _appointment_evidence(appointment: AppointmentState) -> dict[str, Any]:
    return {
        "id": appointment.id,
        "title": appointment.title,
        "start": evidence_time(appointment.start),
        "end": evidence_time(appointment.end),
        "time_zone": appointment.time_zone,
        "status": appointment.status,
        "cancellation_reason": appointment.cancellation_reason,
        "booked_at": evidence_time(appointment.booked_at),
        "updated_at": evidence_time(appointment.updated_at),
        "links": [_link_evidence(link) for link in appointment.links],
    }


def _event_evidence(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "calendar_id": event.calendar_id,
        "title": event.title,
        "start": evidence_time(event.start),
        "end": evidence_time(event.end),
        "status": event.status,
        "updated": evidence_time(event.updated),
    }


_finding = partial(Finding.of, NAME)


# -- timings and failed runs ---------------------------------------------------------------------------


def timing_findings(context: CheckContext, connection: ConnectionState) -> list[Finding]:
    """`sync.ok`, or `sync.push_late` / `sync.pull_late` / `sync.last_run_failed`, for one connection."""
    now = context.now
    rep = context.rep
    push_runs = rep.runs_for(connection.id, "push")
    pull_runs = rep.runs_for(connection.id, "pull")
    last_push, last_pull = _last_ok(push_runs), _last_ok(pull_runs)
    connected_at = connection.authorized_at or connection.created_at
    base: dict[str, Any] = {
        "last_push_at": evidence_time(_when(last_push)) if last_push else None,
        "last_pull_at": evidence_time(_when(last_pull)) if last_pull else None,
        "connected_at": evidence_time(connected_at),
        "push_late_after_minutes": int(PUSH_LATE.total_seconds() // 60),
        "pull_late_after_minutes": int(PULL_LATE.total_seconds() // 60),
    }
    findings: list[Finding] = []

    # To the calendar: late when the last success is old, or when there never was one.
    push_age = now - _when(last_push) if last_push else None
    since_connected = now - connected_at
    if push_age is not None and push_age > PUSH_LATE:
        findings.append(
            _finding(
                "sync.push_late",
                Severity.ERROR if push_age > VERY_LATE else Severity.WARNING,
                f"The last successful sync to your calendar was {ago(push_age)}; "
                "new appointments normally arrive within 15 minutes.",
                _fix_hint(context, connection),
                {**base, "late_by_minutes": int((push_age - PUSH_WINDOW).total_seconds() // 60)},
                connection,
            )
        )
    elif push_age is None and since_connected > PUSH_LATE:
        findings.append(
            _finding(
                "sync.push_late",
                Severity.ERROR if since_connected > VERY_LATE else Severity.WARNING,
                "We have no record of a successful sync to your calendar since you connected it "
                f"{ago(since_connected)}; new appointments normally arrive within 15 minutes.",
                _fix_hint(context, connection),
                {**base, "never": True},
                connection,
            )
        )

    # From the calendar: late when the last pickup is old. No pickup on record says nothing.
    pull_age = now - _when(last_pull) if last_pull else None
    if pull_age is not None and pull_age > PULL_LATE:
        findings.append(
            _finding(
                "sync.pull_late",
                Severity.ERROR if pull_age > VERY_LATE else Severity.WARNING,
                "Changes you make in your calendar are picked up within 15–30 minutes; "
                f"the last pickup was {ago(pull_age)}.",
                _fix_hint(context, connection, "pull"),
                {**base, "late_by_minutes": int((pull_age - PULL_WINDOW).total_seconds() // 60)},
                connection,
            )
        )

    for direction, runs in (("push", push_runs), ("pull", pull_runs)):
        failed = _failed_run_finding(context, connection, direction, runs)
        if failed is not None:
            findings.append(failed)

    if not findings and push_age is not None:
        summary = f"Last synced {ago(push_age)} (to your calendar)"
        summary += f" and {ago(pull_age)} (from it)." if pull_age is not None else "."
        findings.append(
            _finding(
                "sync.ok",
                Severity.OK,
                summary,
                "",
                {**base, "last_push": _run_evidence(last_push), "last_pull": _run_evidence(last_pull)},
                connection,
            )
        )
    return findings


def _failed_run_finding(
    context: CheckContext, connection: ConnectionState, direction: str, runs: Sequence[SyncRunState]
) -> Finding | None:
    finished = _finished_runs(runs)
    if not finished or finished[0].status != "error":
        return None
    newest = finished[0]
    streak = 0
    for run in finished:
        if run.status != "error":
            break
        streak += 1
    last_ok = _last_ok(finished)
    summary = (
        f"The last sync {DIRECTION_WORDS[direction]} failed {ago(context.now - _when(newest))}: "
        f"{_failure_words(newest, connection)}."
    )
    if streak > 1 and last_ok is not None:
        summary += (
            f" That's {streak} failed attempts in a row since the last success "
            f"{ago(context.now - _when(last_ok))}."
        )
    elif streak > 1:
        summary += f" None of the last {streak} attempts succeeded."
    known = _FAILURES.get(newest.error_code or "")
    hint = known[1] if known else SUPPORT_HINT
    if connection.status != "connected" and not known:
        hint = RECONNECT_HINT
    # A provider that was rate limiting or down clears by itself: worth saying, not an error.
    transient = known is not None and known[1] == TRANSIENT_HINT and streak < TRANSIENT_STREAK_IS_ERROR
    return _finding(
        "sync.last_run_failed",
        Severity.WARNING if transient else Severity.ERROR,
        summary,
        hint,
        {
            "direction": direction,
            "code": newest.error_code,
            "message": newest.error_message,
            "started_at": evidence_time(newest.started_at),
            "finished_at": evidence_time(newest.finished_at),
            "failures_in_a_row": streak,
            "last_success_at": evidence_time(_when(last_ok)) if last_ok else None,
        },
        connection,
    )


# -- appointments not on the calendar yet ------------------------------------------------------------


@dataclass(frozen=True)
class Unsynced:
    appointment: AppointmentState
    link: LinkState | None
    age: timedelta  # since booking

    @property
    def failed(self) -> bool:
        return self.link is not None and self.link.state == "failed"

    @property
    def overdue(self) -> bool:
        return self.failed or self.age >= PUSH_WINDOW


def unsynced_link(
    appointment: AppointmentState, connection: ConnectionState
) -> tuple[bool, LinkState | None]:
    """Whether a booked appointment still has to reach this connection's calendar, and its link.

    An appointment booked before the connection existed stays where it was synced (switching
    providers doesn't move appointments), so a missing link then is not a problem.
    """
    link = appointment.link_for(connection.id)
    if link is None:
        return appointment.booked_at >= connection.created_at, None
    if link.state in ("pending", "failed"):
        return True, link
    return link.event_id is None and link.state != "deleted", link


def unsynced_appointments(context: CheckContext, connection: ConnectionState) -> list[Unsynced]:
    """Booked, not yet over, and not on this connection's calendar; most recently booked first."""
    found = []
    for appointment in context.rep.appointments:
        if appointment.status != "booked" or appointment.end <= context.now:
            continue
        missing, link = unsynced_link(appointment, connection)
        if missing:
            found.append(Unsynced(appointment, link, context.now - appointment.booked_at))
    found.sort(key=lambda item: item.age)
    return found


def _unsynced_evidence(item: Unsynced) -> dict[str, Any]:
    return {
        "id": item.appointment.id,
        "title": item.appointment.title,
        "start": evidence_time(item.appointment.start),
        "booked_at": evidence_time(item.appointment.booked_at),
        "link_state": item.link.state if item.link else None,
        "error": item.link.error if item.link else None,
    }


def _more(count: int) -> str:
    return f" (and {count} more)" if count else ""


def pending_findings(context: CheckContext, connection: ConnectionState) -> list[Finding]:
    """`sync.pending` and `sync.overdue` for one connection."""
    items = unsynced_appointments(context, connection)
    pending = [item for item in items if not item.overdue]
    overdue = [item for item in items if item.overdue]
    findings: list[Finding] = []
    if pending:
        newest = pending[0]
        findings.append(
            _finding(
                "sync.pending",
                Severity.INFO,
                f"'{newest.appointment.title}' was booked {ago(newest.age)} — expect it on your "
                f"calendar {within(PUSH_WINDOW - newest.age)}{_more(len(pending) - 1)}.",
                WAIT_HINT,
                {"appointments": [_unsynced_evidence(item) for item in pending]},
                connection,
            )
        )
    if overdue:
        newest = overdue[0]
        title = newest.appointment.title
        if newest.failed:
            error = f" ({newest.link.error})" if newest.link and newest.link.error else ""
            summary = (
                f"'{title}', booked {ago(newest.age)}, couldn't be added to your calendar{error}"
                f"{_more(len(overdue) - 1)}."
            )
        else:
            summary = (
                f"'{title}', booked {ago(newest.age)}, hasn't reached your calendar yet "
                f"(it should have within 15 minutes){_more(len(overdue) - 1)}."
            )
        findings.append(
            _finding(
                "sync.overdue",
                Severity.ERROR,
                summary + _push_cause(context, connection),
                _fix_hint(context, connection),
                {"appointments": [_unsynced_evidence(item) for item in overdue]},
                connection,
            )
        )
    return findings


# -- tracing the appointment the rep names -----------------------------------------------------------


def traced_appointment(context: CheckContext) -> tuple[Mention | None, AppointmentState | None]:
    mention = parse_mention(context.question)
    return mention, find_appointment(mention, context.rep.appointments, context.now)


def _live_link(appointment: AppointmentState, connection: ConnectionState) -> LinkState | None:
    """The link whose event the live part looks up on this connection's calendar, if any."""
    link = appointment.link_for(connection.id)
    if link is None or not link.event_id or link.state not in ("synced", "deleted"):
        return None
    if not (link.calendar_id or connection.selected_calendar_id):
        return None
    return link


def _trace_evidence(mention: Mention, appointment: AppointmentState, **extra: Any) -> dict[str, Any]:
    return {"mention": mention.describe(), "appointment": _appointment_evidence(appointment), **extra}


def _not_identified(context: CheckContext, mention: Mention) -> Finding:
    upcoming = [
        appointment
        for appointment in context.rep.appointments
        if appointment.status == "booked" and appointment.end > context.now
    ][:UPCOMING_LISTED]
    # The name is not the rep's, but the time may be: say what is then (the rep may call the
    # client something else), without claiming it is the one they mean.
    at_that_time = (
        next(
            (
                match.appointment
                for match in score_appointments(replace(mention, words=(), pointed=()), upcoming, context.now)
                if match.time_match
            ),
            None,
        )
        if mention.has_time
        else None
    )
    if at_that_time is not None:
        summary = (
            f"I couldn't find an appointment matching \u201c{mention.describe()}\u201d; at "
            f"{clock_time(at_that_time.start, context.now)} you have '{at_that_time.title}'."
        )
    elif upcoming:
        first = upcoming[0]
        summary = (
            f"I couldn't find an appointment matching \u201c{mention.describe()}\u201d; your next one is "
            f"'{first.title}' at {clock_time(first.start, context.now)}."
        )
    else:
        summary = (
            f"I couldn't find an appointment matching \u201c{mention.describe()}\u201d, "
            "and you have no upcoming appointments."
        )
    return _finding(
        "sync.appointment_not_identified",
        Severity.INFO,
        summary,
        NOT_IDENTIFIED_HINT,
        {
            "mention": mention.describe(),
            "upcoming": [
                {"id": item.id, "title": item.title, "start": evidence_time(item.start)} for item in upcoming
            ],
        },
    )


def _cancelled_in_salespartner(
    context: CheckContext, mention: Mention, appointment: AppointmentState
) -> Finding:
    reason = appointment.cancellation_reason or ""
    when = ago(context.now - appointment.updated_at)
    deleted_link = next((link for link in appointment.links if link.state == "deleted"), None)
    connection = (
        next((c for c in context.rep.connections if c.id == deleted_link.connection_id), None)
        if deleted_link
        else None
    )
    if "delete" in reason.lower():
        summary = (
            f"'{appointment.title}' was cancelled {when} because its event was deleted in your calendar."
        )
    elif reason:
        summary = f"'{appointment.title}' was cancelled in SalesPartner {when} ({reason})."
    else:
        summary = f"'{appointment.title}' was cancelled in SalesPartner {when}."
    return _finding(
        "sync.appointment_cancelled",
        Severity.WARNING,
        summary,
        CANCELLED_HINT,
        _trace_evidence(mention, appointment, source="salespartner"),
        connection,
    )


def _missing_from_records(
    context: CheckContext,
    mention: Mention,
    appointment: AppointmentState,
    connection: ConnectionState,
    link: LinkState | None,
) -> Finding:
    """The appointment never reached this calendar, by our own records (no live call needed)."""
    age = context.now - appointment.booked_at
    title, when = appointment.title, clock_time(appointment.start, context.now)
    evidence = _trace_evidence(mention, appointment, reason="", calendar_checked=False)
    if link is not None and link.state == "failed":
        error = f" ({link.error})" if link.error else ""
        summary = f"'{title}' ({when}) isn't on your calendar: adding it failed{error}."
        summary += _push_cause(context, connection)
        severity, hint, evidence["reason"] = Severity.ERROR, _fix_hint(context, connection), "failed"
    elif age < PUSH_WINDOW:
        summary = (
            f"'{title}' isn't on your calendar yet: it was booked {ago(age)} and should arrive "
            f"{within(PUSH_WINDOW - age)}."
        )
        severity, hint, evidence["reason"] = Severity.INFO, WAIT_HINT, "pending"
    else:
        summary = (
            f"'{title}' ({when}) isn't on your calendar: it was booked {ago(age)} and should have "
            "arrived within 15 minutes."
        )
        summary += _push_cause(context, connection)
        severity, hint, evidence["reason"] = Severity.ERROR, _fix_hint(context, connection), "overdue"
    return _finding("sync.appointment_missing", severity, summary, hint, evidence, connection)


def trace_from_records(context: CheckContext) -> list[Finding]:
    """What the database alone says about the appointment the question names."""
    mention, appointment = traced_appointment(context)
    if mention is None:
        return []
    if appointment is None:
        return [_not_identified(context, mention)] if mention.specific else []
    if appointment.status == "cancelled":
        return [_cancelled_in_salespartner(context, mention, appointment)]
    findings: list[Finding] = []
    looked_up_live = False
    active = context.rep.active_connections
    for connection in active:
        if _live_link(appointment, connection) is not None:
            looked_up_live = True
            continue
        missing, link = unsynced_link(appointment, connection)
        if missing:
            findings.append(_missing_from_records(context, mention, appointment, connection, link))
    if findings or looked_up_live:
        return findings
    # Not meant for any active calendar: booked before the current connection, or none is connected.
    active_ids = {connection.id for connection in active}
    old = next(
        (link for link in appointment.links if link.connection_id not in active_ids and link.event_id),
        None,
    )
    if old is not None:
        previous = context.rep.connection(old.connection_id)
        summary = (
            f"'{appointment.title}' was synced to your previous calendar, {previous.label}, before you "
            "switched; switching providers doesn't move existing appointments."
        )
        return [
            _finding(
                "sync.appointment_missing",
                Severity.INFO,
                summary,
                "Look for it in your previous calendar; new appointments go to your current one.",
                _trace_evidence(mention, appointment, reason="previous_connection", calendar_checked=False),
                previous,
            )
        ]
    if not active:
        summary = f"'{appointment.title}' can't reach a calendar: you have no calendar connected."
        return [
            _finding(
                "sync.appointment_missing",
                Severity.ERROR,
                summary,
                RECONNECT_HINT,
                _trace_evidence(mention, appointment, reason="no_connection", calendar_checked=False),
            )
        ]
    return []


async def trace_live(context: CheckContext, connection: ConnectionState) -> list[Finding]:
    """Look the traced appointment's event up on this connection's calendar, by our private property."""
    mention, appointment = traced_appointment(context)
    if mention is None or appointment is None or appointment.status != "booked":
        return []
    link = _live_link(appointment, connection)
    if link is None:
        return []
    calendar_id = link.calendar_id or connection.selected_calendar_id or ""
    events = await context.live.appointment_events(connection, calendar_id, appointment.id)
    now = context.now
    product = labels.product(connection.provider)
    selected = calendar_id == connection.selected_calendar_id
    name = (connection.selected_calendar_name if selected else None) or calendar_id
    where = f"your calendar '{name}' ({product})"
    if not selected and connection.selected_calendar_id:
        other = connection.selected_calendar_name or connection.selected_calendar_id
        where += f", not the one selected now ('{other}')"
    evidence = _trace_evidence(
        mention,
        appointment,
        calendar_id=calendar_id,
        calendar_checked=True,
        events=[_event_evidence(event) for event in events],
    )
    title = appointment.title
    present = [event for event in events if event.status != "cancelled"]
    if present:
        event = next((item for item in present if item.id == link.event_id), present[0])
        hint = f"If you don't see it, make sure the calendar '{name}' is shown in {product}, then refresh."
        if event.start != appointment.start:
            last_pull = _last_ok(context.rep.runs_for(connection.id, "pull"))
            pickup = f" (last pickup {ago(now - _when(last_pull))})" if last_pull else ""
            moved = f", changed {ago(now - event.updated)}" if event.updated else ""
            summary = (
                f"'{title}' is on {where} at {clock_time(event.start, now)}{moved}, while SalesPartner "
                f"still has {clock_time(appointment.start, now)}: calendar edits are picked up within "
                f"15–30 minutes{pickup}."
            )
            hint = EDIT_WINDOW_HINT
        else:
            summary = f"Your {clock_time(appointment.start, now)} '{title}' is on {where}."
        if len(present) > 1:
            summary += f" It's there {len(present)} times."
            hint = (
                "Delete only one copy: deleting both cancels the appointment in SalesPartner. "
                "Contact support if copies keep appearing."
            )
        evidence["time_differs"] = event.start != appointment.start
        return [_finding("sync.appointment_found", Severity.OK, summary, hint, evidence, connection)]
    if events:  # only cancelled copies: deleted in the calendar, not picked up yet
        summary = (
            f"'{title}' was deleted from {where}; deleting an event cancels the appointment in "
            "SalesPartner at the next pickup (within 15–30 minutes)."
        )
        return [
            _finding(
                "sync.appointment_cancelled", Severity.WARNING, summary, CANCELLED_HINT, evidence, connection
            )
        ]
    pushed = f" {ago(now - link.last_pushed_at)}" if link.last_pushed_at else ""
    summary = f"'{title}' ({clock_time(appointment.start, now)}) was added to {where}{pushed} but isn't there any more."
    evidence["reason"] = "gone_from_calendar"
    return [
        _finding(
            "sync.appointment_missing",
            Severity.ERROR,
            summary,
            "If you deleted it in your calendar, SalesPartner cancels the appointment at the next pickup "
            "(within 15–30 minutes). If you didn't, contact support: we can put it back.",
            evidence,
            connection,
        )
    ]


# -- cancellations held for an agent -----------------------------------------------------------------


def held_findings(context: CheckContext) -> list[Finding]:
    """`sync.cancellations_held`: one read found many appointments deleted at once; none cancelled."""
    findings = []
    titles = {appointment.id: appointment.title for appointment in context.rep.appointments}
    for hold in context.rep.holds:
        count = len(hold.appointment_ids)
        named = [titles[i] for i in hold.appointment_ids if i in titles][:2]
        which = f" (“{named[0]}”{' and others' if count > 1 else ''})" if named else ""
        connection = next((c for c in context.rep.connections if c.id == hold.connection_id), None)
        findings.append(
            _finding(
                "sync.cancellations_held",
                Severity.WARNING,
                f"{count} of your appointments{which} disappeared from your calendar at once "
                f"{ago(context.now - hold.detected_at)}, so I didn't cancel them.",
                HELD_HINT,
                {
                    "hold": hold.id,
                    "appointments": list(hold.appointment_ids),
                    "detected_at": evidence_time(hold.detected_at),
                    "source": hold.source,
                },
                connection,
            )
        )
    return findings


# -- the check ---------------------------------------------------------------------------------------


async def run_rep(context: CheckContext) -> list[Finding]:
    """Everything the database knows — reported even when every provider is down."""
    findings: list[Finding] = []
    active = context.rep.active_connections
    for connection in active:
        own = timing_findings(context, connection) + pending_findings(context, connection)
        if len(active) > 1:  # say which calendar each line is about
            own = [replace(finding, summary=f"{connection.label}: {finding.summary}") for finding in own]
        findings.extend(own)
    findings.extend(held_findings(context))
    findings.extend(trace_from_records(context))
    return findings


async def run_connection(context: CheckContext, connection: ConnectionState) -> list[Finding]:
    """The live look-up of the appointment the question names (nothing to do without one)."""
    return await trace_live(context, connection)


SYNC = Check(name=NAME, title=TITLE, run_rep=run_rep, run_connection=run_connection, needs_grant=True)
