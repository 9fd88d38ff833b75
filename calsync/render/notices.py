"""Slack notices outside an answer: the DM to a rep whose calendar stopped syncing and its follow-ups
when an incident of their organisation is recognised or access is back, a reconnect link an agent
sent, the note after a reconnect, and the held cancellations asked about in the support channel with
their decision."""

from __future__ import annotations

from typing import TYPE_CHECKING

from calsync.render import kit, labels
from calsync.render import reconnect as reconnect_words
from calsync.render.answers import answer_message
from calsync.render.kit import (
    ACTION_HOLD_CANCEL,
    ACTION_HOLD_KEEP,
    MAX_FALLBACK_TEXT,
    Message,
    escape_mrkdwn,
    markup_message,
    notice_message,
    reconnect_message,
)
from calsync.render.words import first_sync_note, incident_fix, incident_summary, incident_what, people
from calsync.syncbackend.holds import Decided, Hold

if TYPE_CHECKING:
    from calsync.diagnostics.answer import Answer
    from calsync.syncbackend.engine import CycleResult, Disconnection
    from calsync.syncbackend.incidents import IncidentFollowUp
    from calsync.syncbackend.reconnect import Connected

# A disconnected grant's cause (`GrantCause`) in the rep's words: "... stopped syncing: {words}".
DISCONNECT_CAUSES = {
    "revoked": "its access was revoked",
    "password_changed": "the account's password was changed",
    "expired": "its sign-in expired",
    "inactive": "it wasn't used for a long time, so the sign-in expired",
    "consent_removed": "calsync's permission was removed (often by your IT team)",
    "mfa_required": "your organisation needs you to sign in again (multi-factor authentication)",
    "interaction_required": "you need to sign in again",
    "account_deleted": "the account no longer exists",
}


def _with_reconnect_button(intro: str, provider: str, url: str | None) -> Message:
    """`intro` (shown literally) above the Reconnect button of one provider."""
    link = reconnect_message({provider: url})
    return Message(text=intro, blocks=[*notice_message(intro).blocks, *link.blocks])


def disconnected_message(disconnection: Disconnection, url: str | None) -> Message:
    """The DM to a rep whose calendar just stopped syncing, with its Reconnect button — or, when it
    is part of an incident (their organisation's admin), what that is and no button that cannot work."""
    incident = disconnection.incident
    if incident is not None:
        since = kit.slack_date(incident.started_at, "{time}", "")
        summary = incident_summary(
            incident.kind, incident.provider, incident.scope, max(1, incident.affected), since
        )
        text = (
            f"Your {labels.product(disconnection.provider)} ({disconnection.account_email}) stopped "
            f"syncing. {summary}"
        )
        return Message(
            text=kit.truncate(escape_mrkdwn(text), MAX_FALLBACK_TEXT),
            blocks=[
                kit.section(f"⚠️ {escape_mrkdwn(text)}"),
                kit.section(f"*Fix:* {escape_mrkdwn(incident_fix(incident.kind, incident.provider))}"),
            ],
        )
    why = DISCONNECT_CAUSES.get(disconnection.cause, "its authorization stopped working")
    intro = (
        f"Your {labels.product(disconnection.provider)} ({disconnection.account_email}) stopped syncing: "
        f"{why}. New and changed appointments won't reach your calendar until you reconnect — it takes a "
        "minute."
    )
    return _with_reconnect_button(intro, disconnection.provider, url)


def incident_follow_up_message(follow_up: IncidentFollowUp, url: str | None) -> Message:
    """In the thread of the rep's disconnection DM: "it turns out this affects 3 people at
    tallgrass.example … reconnecting won't help until then" when they were told to reconnect before
    the incident was recognised; "access is back … reconnect now" (with the button) once it is."""
    incident, provider = follow_up.incident, follow_up.provider
    if follow_up.kind == "access_back":
        intro = f"{incident_fix(incident.kind, provider, max(1, follow_up.reconnected))} It takes a minute."
        return _with_reconnect_button(intro, provider, url)
    text = (
        f"Update: it turns out this isn't just you — it affects {people(max(1, incident.affected))} at "
        f"{incident.scope}: {incident_what(incident.kind, provider)}."
    )
    fix = incident_fix(incident.kind, provider)
    return Message(
        text=kit.truncate(escape_mrkdwn(f"{text} {fix}"), MAX_FALLBACK_TEXT),
        blocks=[
            kit.section(f"ℹ️ {escape_mrkdwn(text)}"),
            kit.section(f"*Fix:* {escape_mrkdwn(fix)}"),
            kit.context(
                "So the Reconnect button above won't work yet. I'll tell you here when access is back."
            ),
        ],
    )


def reconnect_link_message(provider: str, url: str | None) -> Message:
    """The DM with the reconnect link an agent sent the rep."""
    intro = f"Support sent you a link to reconnect {labels.product(provider)}. It opens in your browser."
    return _with_reconnect_button(intro, provider, url)


def reconnected_messages(
    connected: Connected, first_sync: CycleResult | None, answer: Answer | None
) -> tuple[Message, Message]:
    """After a reconnect: the rep's DM (with the fresh answer when the first sync ran and it still
    finds a problem; an error from before the reconnect never shows) and the note for the thread
    where the link was given."""
    sync_note = first_sync_note(first_sync)
    headline = reconnect_words.headline(connected)
    notes = (reconnect_words.calendar_note(connected), reconnect_words.switch_note(connected))
    lines = [f"✅ {escape_mrkdwn(headline)}", escape_mrkdwn(sync_note)]
    lines.extend(escape_mrkdwn(extra) for extra in notes if extra)
    preface = "\n".join(lines)
    note = markup_message(preface, fallback=f"{headline} {sync_note}")
    still = answer is not None and first_sync is not None and bool(answer.problems)
    dm = answer_message(answer, preface=preface) if still and answer is not None else note
    return dm, note


HELD_LISTED = 5


def _held_lines(hold: Hold) -> list[str]:
    lines = [
        f"• {escape_mrkdwn(item.title or 'Untitled')} — {kit.slack_date(item.start, '{date_short_pretty} {time}', '')}"
        for item in hold.appointments[:HELD_LISTED]
    ]
    if len(hold.appointments) > HELD_LISTED:
        lines.append(f"• …and {len(hold.appointments) - HELD_LISTED} more")
    return lines


def hold_message(hold: Hold) -> Message:
    """What the support channel is asked when a sync held back many cancellations at once."""
    count = len(hold.appointments)
    who = escape_mrkdwn(hold.user_name or hold.user_email)
    where = f"{labels.product(hold.provider)} ({escape_mrkdwn(hold.account_email)})"
    text = (
        f"Held {count} cancellation{'s' if count != 1 else ''} for {hold.user_name or hold.user_email}: "
        "their events disappeared from the calendar at once. Nothing was cancelled."
    )
    intro = (
        f"⚠️ *{count} of {who}'s {hold.upcoming} upcoming appointments disappeared from their {where} at "
        f"once* (one {escape_mrkdwn(hold.source or 'sync')}). Deleting an event cancels its "
        "appointment, but this many at once may be a wiped or swapped calendar, so *nothing was "
        "cancelled*: they stay booked until you decide."
    )
    value = kit.json_value({"hold": hold.id})
    confirm_cancel = {
        "title": kit.plain("Cancel them?", 100),
        "text": kit.plain(f"{count} appointments will be cancelled in SalesPartner.", 300),
        "confirm": kit.plain("Cancel them", 30),
        "deny": kit.plain("Back", 30),
        "style": "danger",
    }
    cancel = kit.button("Cancel them", ACTION_HOLD_CANCEL, value=value, style="danger")
    cancel["confirm"] = confirm_cancel
    keep = kit.button("Keep them booked", ACTION_HOLD_KEEP, value=value, style="primary")
    return Message(
        text=kit.truncate(escape_mrkdwn(text), MAX_FALLBACK_TEXT),
        blocks=[
            kit.section(intro),
            *[kit.section(chunk) for chunk in kit.pack(_held_lines(hold))],
            kit.context(
                "*Cancel them*: cancelled as if the rep had deleted each one. *Keep them booked*: they go "
                f"back on the calendar in the next sync. (Hold {hold.id}; also `calsync holds`.)"
            ),
            *kit.actions([cancel, keep]),
        ],
    )


def hold_decided_message(decided: Decided, actor: str) -> Message:
    """The hold's message once decided (`actor` is Slack markup, e.g. `<@U123>`, or a plain name)."""
    hold = decided.hold
    who = escape_mrkdwn(hold.user_name or hold.user_email)
    if decided.already:
        done = "cancelled" if hold.status == "cancelled" else "kept booked"
        by = escape_mrkdwn(hold.decided_by or "someone")
        line = f"Already decided: {by} {done} these appointments of {who}'s. Nothing changed now."
    elif decided.decision == "cancel":
        line = f"✅ {actor} cancelled {decided.changed} of {who}'s appointments (deleted in the calendar)."
    else:
        line = (
            f"✅ {actor} kept {decided.changed} of {who}'s appointments booked; they go back on the "
            "calendar in the next sync."
        )
    fallback = line.replace("✅ ", "")
    return Message(
        text=kit.truncate(fallback, MAX_FALLBACK_TEXT),
        blocks=[kit.section(line), *[kit.section(c) for c in kit.pack(_held_lines(hold))]],
    )
