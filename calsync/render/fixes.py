"""The fixes beyond Reconnect in words and Block Kit: the buttons an answer offers from its causes'
fix kinds (choose a calendar, turn the old connection off, the agent's duplicate clean-up), the
calendar menu, what each fix did and how to undo it, every refusal, and the clean-up as text for
the command line. Pure functions over the outcomes of `calsync.flows.fixes` (duck-typed here: the
render layer does not import flows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from calsync.diagnostics.answer import Answer
from calsync.diagnostics.causes import DUPLICATE_ROOTS
from calsync.render import kit, labels
from calsync.render.kit import (
    ACTION_CALENDAR_PICKED,
    ACTION_CALENDAR_UNDO,
    ACTION_CHOOSE_CALENDAR,
    ACTION_CLEANUP_APPLY,
    ACTION_CLEANUP_DRY_RUN,
    ACTION_TURN_OFF,
    ACTION_TURN_ON,
    Message,
    escape_mrkdwn,
)
from calsync.render.words import cycle_summary

MAX_LISTED_COPIES = 20
# The selected calendar is missing: Reconnect picks the rep's own, the menu lets them pick any.
MISSING_CALENDAR = frozenset({"calendar.not_found", "calendar.none_selected"})

SWITCH_KEEPS_EVENTS = (
    "Appointments already synced stay where they are; new appointments go to the calendar you pick."
)
OFF_KEEPS_EVENTS = (
    "Events already synced there stay where they are — nothing is deleted and no appointment is "
    "cancelled. New appointments go only to your other calendar."
)

REFUSALS: dict[str, str] = {
    "not_owner": "That button belongs to someone else's answer, so I changed nothing. Ask me about your own calendar.",
    "gone": "That calendar connection no longer exists, so I changed nothing.",
    "inactive": "That calendar connection isn't active any more, so I changed nothing. Check again for the current state.",
    "not_writable": "SalesPartner can't add appointments to that calendar (it isn't one you can edit, or it's gone), so I kept the one you have.",
    "already_selected": "That calendar is already the one your appointments go to.",
    "only_one": "You have only one active calendar connection, so there is nothing to turn off.",
    "already_off": "That connection is already turned off.",
    "already_on": "That connection is already on.",
    "not_turned_off": "That connection wasn't turned off from here; reconnect it instead.",
    "already_connected": "That account is already connected on another connection, so I left this one off.",
    "grant_invalid": "The calendar's sign-in no longer works, so I changed nothing — reconnect it first.",
    "provider_unreachable": "I couldn't reach your calendar provider just now, so I changed nothing. Please try again in a minute.",
    "not_an_agent": "Only support agents can clean up duplicates.",
    "nothing_to_clean": "Nothing to clean: no calendar copies made by a second connection.",
    "unknown_user": "There is no SalesPartner user with that email.",
}


def refusal_text(reason: str) -> str:
    return REFUSALS.get(reason, "I couldn't do that, so I changed nothing.")


def refusal_message(reason: str) -> Message:
    return kit.error_message(refusal_text(reason))


# -- the buttons an answer offers, from its causes' fix kinds ----------------------------------------


def rep_fix_buttons(answer: Answer, ids: kit.ActionIds) -> list[dict[str, Any]]:
    """Choose a calendar (a `choose_calendar` cause of one connection, or its calendar missing) and turn off the old
    connection (a `turn_off` cause), each carrying the answer's diagnosis (its owner)."""
    buttons: list[dict[str, Any]] = []
    for cause in answer.shown_causes:
        choose = cause.fix.kind == "choose_calendar" or cause.code in MISSING_CALENDAR
        if choose and cause.connection_id is not None:
            value = kit.json_value({"diagnosis": answer.diagnosis_id, "connection": cause.connection_id})
            buttons.append(kit.button("📅 Choose a calendar", ids(ACTION_CHOOSE_CALENDAR), value=value))
        elif cause.fix.kind == "turn_off":
            which = labels.product(cause.provider, "connection")
            value = kit.json_value({"diagnosis": answer.diagnosis_id, "connection": cause.connection_id})
            dialog = kit.confirm(
                f"Turn off the old {which}?"[:100],
                OFF_KEEPS_EVENTS + " You can turn it back on.",
                "Turn it off",
            )
            buttons.append(
                kit.button(
                    f"Turn off the old {which}", ids(ACTION_TURN_OFF), value=value, confirm_dialog=dialog
                )
            )
    return buttons


def agent_fix_buttons(answer: Answer, ids: kit.ActionIds) -> list[dict[str, Any]]:
    """The duplicate clean-up's dry run, where the diagnosis found a doubled connection."""
    if not any(cause.code in DUPLICATE_ROOTS for cause in answer.causes):
        return []
    value = kit.json_value({"rep": answer.user})
    return [kit.button("🧹 Duplicate clean-up (dry run)", ids(ACTION_CLEANUP_DRY_RUN), value=value)]


# -- choose the selected calendar ---------------------------------------------------------------------


def calendar_menu_message(menu: Any) -> Message:
    """The writable calendars to choose from, in a menu Slack confirms before sending."""
    product = labels.product(menu.provider)
    if not menu.choices:
        return kit.error_message(
            f"{product} lists no other calendar you can edit for {menu.account_email}, so there is "
            "nothing to switch to. Create or share one there, then check again."
        )
    options = [
        (
            f"{choice.name}{' (your own)' if choice.primary else ''}",
            kit.json_value(
                {"diagnosis": menu.diagnosis, "connection": menu.connection_id, "calendar": choice.key}
            ),
        )
        for choice in menu.choices
    ]
    current = f" Now they go to *{escape_mrkdwn(menu.current_name)}*." if menu.current_name else ""
    text = (
        f"📅 Which {product} calendar should your appointments go to ({escape_mrkdwn(menu.account_email)})?"
        f"{current} Only calendars you can edit are listed."
    )
    dialog = kit.confirm("Switch calendar?", SWITCH_KEEPS_EVENTS, "Switch")
    menu_block = {
        "type": "actions",
        "elements": [
            kit.static_select("Choose a calendar", ACTION_CALENDAR_PICKED, options, confirm_dialog=dialog)
        ],
    }
    return Message(
        text=f"Which {product} calendar should your appointments go to?",
        blocks=[kit.section(text), menu_block],
    )


def calendar_chosen_message(chosen: Any) -> Message:
    name = escape_mrkdwn(chosen.name)
    lines = [
        f"✅ {'Back to' if chosen.undone else 'Done: new appointments now go to'} *{name}*."
        + (" New appointments go there again." if chosen.undone else ""),
        escape_mrkdwn(
            "Appointments already synced stay where they are"
            + (f", on {chosen.old_name}." if chosen.old_name else ".")
        ),
    ]
    if chosen.synced is not None:
        lines.append(f"⚡ {escape_mrkdwn(cycle_summary(chosen.synced))}")
    else:
        lines.append("The next sync runs within a few minutes.")
    blocks: list[dict[str, Any]] = [kit.section("\n".join(lines))]
    if chosen.undo_key and chosen.old_name:
        value = kit.json_value(
            {"diagnosis": chosen.diagnosis, "connection": chosen.connection_id, "calendar": chosen.undo_key}
        )
        blocks.extend(
            kit.actions([kit.button(f"↩️ Undo: back to {chosen.old_name}", ACTION_CALENDAR_UNDO, value=value)])
        )
    return Message(text=f"New appointments now go to {name}.", blocks=blocks)


# -- turn the old connection off, and back on ---------------------------------------------------------


def turned_off_message(off: Any) -> Message:
    what = escape_mrkdwn(labels.connection_label(off.provider, off.account_email))
    left = ", ".join(escape_mrkdwn(labels.connection_label(p, a)) for p, a in off.still_active)
    text = f"✅ Turned off {what}. {escape_mrkdwn(OFF_KEEPS_EVENTS)}"
    if left:
        text += f"\nStill on: {left}."
    value = kit.json_value({"diagnosis": off.diagnosis, "connection": off.connection_id})
    blocks = [kit.section(text), *kit.actions([kit.button("Turn it back on", ACTION_TURN_ON, value=value)])]
    return Message(text=f"Turned off {what}.", blocks=blocks)


def turned_on_message(on: Any) -> Message:
    what = labels.connection_label(on.provider, on.account_email)
    lines = [f"✅ {escape_mrkdwn(what)} is on again: new appointments go to it too."]
    if on.synced is not None:
        lines.append(f"⚡ {escape_mrkdwn(cycle_summary(on.synced))}")
    return Message(text=f"{escape_mrkdwn(what)} is on again.", blocks=[kit.section("\n".join(lines))])


# -- the agent's duplicate clean-up ----------------------------------------------------------------------


def cleanup_lines(cleanup: Any) -> list[str]:
    """The clean-up (or its dry run) for an agent, one line each: plain text (the CLI prints it)."""
    plan = cleanup.plan
    kept = plan.kept
    keep = labels.connection_label(kept.provider, kept.account_email) if kept else "none"
    who = f"{plan.name} ({plan.email})" if plan.name else plan.email
    copies: Sequence[Any] = cleanup.removed if cleanup.applied else plan.copies
    if cleanup.applied:
        head = f"{who}: removed {len(copies)} calendar cop{'y' if len(copies) == 1 else 'ies'}; kept {keep}."
    else:
        head = (
            f"{who}: would remove {len(copies)} calendar cop{'y' if len(copies) == 1 else 'ies'} "
            f"made by a second connection, keeping one event per appointment on {keep}."
        )
    lines = [head]
    for copy in copies[:MAX_LISTED_COPIES]:
        where = labels.connection_label(copy.provider, copy.account_email)
        lines.append(f"- {copy.title} ({copy.start:%Y-%m-%d %H:%M} UTC) on {where}, event {copy.event_id}")
    if len(copies) > MAX_LISTED_COPIES:
        lines.append(f"- … and {len(copies) - MAX_LISTED_COPIES} more")
    for copy, error in cleanup.failed:
        lines.append(
            f"! not removed: {copy.title} on {labels.connection_label(copy.provider, copy.account_email)} ({error})"
        )
    off = ", ".join(labels.connection_label(c.provider, c.account_email) for c in plan.turn_off)
    if off:
        lines.append(f"{'Turned off' if cleanup.applied else 'Would turn off'}: {off} (its sign-in is kept).")
    lines.append("No appointment is cancelled: each keeps exactly one event.")
    return lines


def cleanup_message(cleanup: Any) -> Message:
    """The dry run with the button that applies it (confirmed), or what the clean-up did."""
    lines = cleanup_lines(cleanup)
    blocks: list[dict[str, Any]] = [
        kit.section(text) for text in kit.pack(escape_mrkdwn(line) for line in lines)
    ][: kit.MAX_MESSAGE_BLOCKS - 1]
    if not cleanup.applied:
        count = len(cleanup.plan.copies)
        dialog = kit.confirm(
            "Remove the copies?",
            f"{count} calendar events will be deleted at the provider (not recoverable from here); "
            "the appointments stay booked with one event each.",
            "Remove them",
            danger=True,
        )
        value = kit.json_value({"rep": cleanup.plan.email})
        button = kit.button(
            f"Remove {count} cop{'y' if count == 1 else 'ies'}",
            ACTION_CLEANUP_APPLY,
            value=value,
            style="danger",
            confirm_dialog=dialog,
        )
        blocks.extend(kit.actions([button]))
    return Message(text=kit.truncate(escape_mrkdwn(lines[0]), kit.MAX_FALLBACK_TEXT), blocks=blocks)
