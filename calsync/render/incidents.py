"""The support channel's one message about an incident: what it is, since when, who is affected,
what fixes it — updated in place as it grows and when it ends (`calsync/flows/incidents.py`)."""

from __future__ import annotations

from datetime import UTC

from calsync.render import kit
from calsync.render.kit import MAX_FALLBACK_TEXT, Message, escape_mrkdwn
from calsync.render.words import incident_what, people
from calsync.syncbackend.incidents import IncidentNotice, IncidentView

# What an agent can tell the IT admin or the reps, per incident kind.
AGENT_FIX: dict[str, str] = {
    "org_consent_removed": (
        "The organisation's Microsoft admin must grant admin consent for SalesPartner again (Entra ID "
        "> Enterprise applications). Reconnecting cannot work until then; afterwards each rep reconnects."
    ),
    "org_access_revoked": (
        "The organisation's Google Workspace admin must allow SalesPartner again (Admin console > "
        "Security > API controls). Reconnecting cannot work until then; afterwards each rep reconnects."
    ),
    "provider_outage": "Nothing to do for the reps: syncs catch up by themselves once the provider recovers.",
}


def agent_title(kind: str, provider: str, scope: str) -> str:
    """What the incident is, for support agents: "tallgrass.example: the Microsoft admin removed
    consent for SalesPartner"."""
    if kind == "provider_outage":
        return incident_what(kind, provider)
    return f"{scope}: {incident_what(kind, provider, 'the')}"


def incident_line(incident: IncidentView) -> str:
    """One line of a list for agents (the fleet page, `/calsync status`): "tallgrass.example: the
    Microsoft admin removed consent for SalesPartner — 5 affected since 09:12 UTC, Dec 4"."""
    since = incident.started_at.astimezone(UTC).strftime("%H:%M UTC, %b %-d")
    title = agent_title(incident.kind, incident.provider, incident.scope)
    return f"{title} — {people(incident.affected)} affected since {since}"


def _who(notice: IncidentNotice) -> str:
    names = [
        f"<@{rep.slack_user_id}>" if rep.slack_user_id else escape_mrkdwn(rep.name or rep.email)
        for rep in notice.reps
    ]
    more = notice.incident.affected - len(names)
    if more > 0:
        names.append(f"and {more} more")
    return ", ".join(names)


def incident_message(notice: IncidentNotice) -> Message:
    """The message for `notice`'s incident as it stands now (open or over)."""
    incident = notice.incident
    what = agent_title(incident.kind, incident.provider, incident.scope)
    since = kit.slack_date(incident.started_at, "{date_short_pretty} {time}", "")
    if incident.ended_at is not None:
        total = incident.affected + notice.recovered
        over = kit.slack_date(incident.ended_at, "{date_short_pretty} {time}", "")
        text = f"Over: {what} — {people(total)} were affected."
        blocks = [
            kit.section(f"✅ *Over: {escape_mrkdwn(what)}*"),
            kit.context(
                f"Started {since} · over {over} · {people(total)} affected, all healthy again or no "
                f"failures since · incident {incident.id} · `{incident.cause_code}`"
            ),
        ]
        return Message(text=kit.truncate(escape_mrkdwn(text), MAX_FALLBACK_TEXT), blocks=blocks)
    text = f"Incident: {what} — {people(incident.affected)} affected."
    recovered = f" · {notice.recovered} healthy again" if notice.recovered else ""
    blocks = [
        kit.section(f"🚨 *{escape_mrkdwn(what)}*"),
        kit.section(f"*{people(incident.affected)} affected:* {_who(notice)}"),
        kit.section(f"*Fix:* {escape_mrkdwn(AGENT_FIX[incident.kind])}"),
        kit.context(
            f"Since {since}{recovered} · reps who ask are told so, without a Reconnect that cannot work "
            f"· incident {incident.id} · `{incident.cause_code}`"
        ),
    ]
    return Message(text=kit.truncate(escape_mrkdwn(text), MAX_FALLBACK_TEXT), blocks=blocks)
