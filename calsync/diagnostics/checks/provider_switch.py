"""The `provider_switch` check: did the rep switch calendar providers, and what stayed behind?

Database only (no live call, so it answers during an outage and with a dead grant). The help
center: "Switching providers doesn't move your existing appointments to the new calendar. They'll
remain where they were originally synced." So we say when the rep switched, and how many upcoming
appointments stay on the old calendar.

Two connections active at once (the old one left on after a switch) is the `duplicates` check's
finding (`duplicates.old_provider_still_active`); this check says nothing about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.state import AppointmentState, ConnectionState, RepState, evidence_time
from calsync.render import labels

NAME = "provider_switch"
TITLE = "Calendar provider switch"

SWITCHED_CODE = "switched"  # the status_code of a connection disconnected to switch providers
MAX_LISTED = 10

STAY_WHERE_SYNCED = (
    "Switching providers doesn't move your existing appointments to the new calendar. They'll "
    "remain where they were originally synced. Your appointments all stay in SalesPartner, and new "
    "ones go to your new calendar."
)


def old_connections(rep: RepState) -> list[ConnectionState]:
    """Inactive connections left behind by a switch, most recently left first: another provider than
    the active one(s), or disconnected with the status code "switched"."""
    active_providers = {c.provider for c in rep.active_connections}
    left = [
        c
        for c in rep.connections
        if not c.active
        and (c.status_code == SWITCHED_CODE or (active_providers and c.provider not in active_providers))
    ]
    return sorted(left, key=_left_at, reverse=True)


def staying_behind(rep: RepState, connection: ConnectionState, now: datetime) -> list[AppointmentState]:
    """Booked, upcoming appointments whose event is synced to this (old) connection's calendar."""
    return [
        appointment
        for appointment in rep.appointments
        if appointment.status == "booked"
        and appointment.start > now
        and any(link.connection_id == connection.id and link.state == "synced" for link in appointment.links)
    ]


async def _run(context: CheckContext) -> Sequence[Finding]:
    rep, now = context.rep, context.now
    if not rep.connections:
        return []  # nothing connected ever: the connection check's finding
    old = old_connections(rep)
    if old:
        return [_switched(context, old)]
    providers = {c.provider for c in rep.connections}
    if len(providers) == 1:
        (provider,) = providers
        return [
            Finding(
                check=NAME,
                code="provider_switch.none",
                severity=Severity.OK,
                summary=f"You've only used {labels.product(provider)}.",
                evidence={"connections": [_connection_evidence(c, rep, now) for c in rep.connections]},
                provider=provider,
            )
        ]
    return []  # two providers, both active: the duplicates check's finding


def _switched(context: CheckContext, old: Sequence[ConnectionState]) -> Finding:
    rep, now = context.rep, context.now
    source = old[0]
    active = sorted(rep.active_connections, key=_connected_at, reverse=True)
    target = active[0] if active else None
    staying = staying_behind(rep, source, now)
    was = _calendar(source, target)
    when = _switch_time(source, target)
    on = f" on {_date(when, now)}" if when else ""
    count = "1 appointment stays" if len(staying) == 1 else f"{len(staying)} appointments stay"
    if target is None:
        summary = (
            f"You disconnected {was} to switch providers{on}, and no new calendar is connected yet. "
            f"{count} on your {was}."
        )
    else:
        summary = (
            f"You switched from {was} to {_calendar(target, source)}{on}. {count} on your {was}; "
            f"new ones go to {_calendar(target, source)}."
        )
    return Finding(
        check=NAME,
        code="provider_switch.switched",
        severity=Severity.INFO,
        summary=summary,
        hint=STAY_WHERE_SYNCED,
        evidence={
            "switched_at": evidence_time(when),
            "from": _connection_evidence(source, rep, now),
            "to": _connection_evidence(target, rep, now) if target else None,
            "appointments_on_old_calendar": len(staying),
            "appointments": [
                {"id": a.id, "title": a.title, "start": evidence_time(a.start)} for a in staying[:MAX_LISTED]
            ],
            "older_connections": [_connection_evidence(c, rep, now) for c in old[1:]],
        },
        provider=source.provider,
        connection_id=source.id,
    )


# -- words ----------------------------------------------------------------------------------------


def _calendar(connection: ConnectionState, other: ConnectionState | None) -> str:
    """The product name ("Google Calendar"), with the account when both sides are one provider."""
    if other is not None and other.provider == connection.provider:
        return f"{labels.product(connection.provider)} ({connection.account_email})"
    return labels.product(connection.provider)


def _connected_at(connection: ConnectionState) -> datetime:
    return connection.authorized_at or connection.created_at


def _left_at(connection: ConnectionState) -> datetime:
    return connection.disconnected_at or _connected_at(connection)


def _switch_time(source: ConnectionState, target: ConnectionState | None) -> datetime | None:
    if source.disconnected_at is not None:
        return source.disconnected_at
    return _connected_at(target) if target else None


def _date(value: datetime, now: datetime) -> str:
    """A date ("Nov 17", with the year when it is not this year): "on last Tuesday" (what
    `humanize.day_word` says for a few days ago) doesn't read after "switched ... on"."""
    local = value.astimezone(now.tzinfo)
    text = f"{local.strftime('%b')} {local.day}"
    return text if local.year == now.astimezone(now.tzinfo).year else f"{text}, {local.year}"


def _connection_evidence(connection: ConnectionState, rep: RepState, now: datetime) -> dict[str, Any]:
    return {
        "id": connection.id,
        "label": connection.label,
        "provider": connection.provider,
        "account_email": connection.account_email,
        "active": connection.active,
        "status": connection.status,
        "status_code": connection.status_code,
        "connected_at": evidence_time(_connected_at(connection)),
        "disconnected_at": evidence_time(connection.disconnected_at),
        "upcoming_synced_appointments": len(staying_behind(rep, connection, now)),
    }


PROVIDER_SWITCH = Check(name=NAME, title=TITLE, run_rep=_run, needs_grant=False)
