"""Slack notices outside an answer: held cancellations asked about in the support channel, and
their decision."""

from __future__ import annotations

from calsync.render import kit, labels
from calsync.render.kit import (
    ACTION_HOLD_CANCEL,
    ACTION_HOLD_KEEP,
    MAX_FALLBACK_TEXT,
    Message,
    escape_mrkdwn,
)
from calsync.syncbackend.holds import Decided, Hold

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
