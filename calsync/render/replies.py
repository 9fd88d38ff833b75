"""The bot's short replies in Slack: apologies, refusals, confirmations and the prefaces put above an
answer. Every word a person reads from the Slack surface outside an answer is chosen here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from calsync.render import labels
from calsync.render.kit import Message, error_message, escape_mrkdwn, markup_message, notice_message
from calsync.render.words import cycle_summary

if TYPE_CHECKING:
    from calsync.syncbackend.engine import CycleResult

SOMETHING_WENT_WRONG = (
    "Something went wrong on our side and I couldn't check just now. Please try again in a minute."
)


# Past a backlog limit (`bot/work.py`): the work is shed — it never runs — and the person is told so.
TOO_BUSY_TO_ANSWER = (
    "I'm getting more questions than I can check right now, so I haven't looked at this one. "
    "Please ask me again in a minute."
)
TOO_BUSY_TO_ACT = (
    "I'm getting more requests than I can handle right now, so I haven't done that. "
    "Please try again in a minute."
)


def mention(slack_user_id: str | None, otherwise: str) -> str:
    """`<@U123>`, or `otherwise` for someone with no Slack id."""
    return f"<@{slack_user_id}>" if slack_user_id else otherwise


def something_went_wrong() -> Message:
    return error_message(SOMETHING_WENT_WRONG)


def too_busy_to_answer() -> Message:
    """A question that was shed: nothing was checked, and no answer will follow."""
    return error_message(TOO_BUSY_TO_ANSWER)


def too_busy_to_act() -> Message:
    """A command or a click that was shed: nothing was done."""
    return error_message(TOO_BUSY_TO_ACT)


def not_a_user(support_contact: str) -> Message:
    return error_message(
        "I couldn't find a SalesPartner account for your Slack profile's email, so I can't check a "
        f"calendar for you. If you use SalesPartner, ask {support_contact} to link your account."
    )


def agents_only(what: str) -> Message:
    """ "Only support agents can {what}." """
    return error_message(f"Only support agents can {what}.")


# -- `/calsync` ------------------------------------------------------------------------------------

ONE_AT_A_TIME = "Diagnose one person at a time: `/calsync diagnose @user`."


def takes_nothing(verb: str) -> str:
    return f"`/calsync {verb}` takes nothing after it."


def unknown_person(word: str) -> str:
    return f"I don't know who “{word[:60]}” is: mention them, like `/calsync diagnose @user`."


def unknown_command(verb: str) -> str:
    return f"I don't know the command “{verb[:40]}”. Try `/calsync help`."


# -- `/calsync diagnose` ---------------------------------------------------------------------------


def diagnose_someone_refused() -> Message:
    return error_message("Only support agents can diagnose someone else. Try `/calsync diagnose`.")


def nothing_to_diagnose(who: str) -> Message:
    """`who` is markup (a mention) or an email the rep typed."""
    return markup_message(
        f"{who} isn't a SalesPartner user, so there is nothing to diagnose.",
        fallback="That person isn't a SalesPartner user.",
    )


def not_a_salespartner_user(who: str) -> Message:
    return markup_message(f"{who} isn't a SalesPartner user.", fallback="Not a SalesPartner user.")


# -- buttons ---------------------------------------------------------------------------------------


def someone_elses_answer(owner_slack_id: str | None) -> str:
    """The preface of the clicker's own answer, put above it when they clicked another rep's."""
    whose = mention(owner_slack_id, "someone else")
    return f"That answer is for {whose}, so I left it alone. Here is what I found for you:"


def whose_calendar_unknown() -> Message:
    return error_message("I can't tell whose calendar that was.")


def someone_elses_reconnect(owner_slack_id: str | None) -> Message:
    whose = mention(owner_slack_id, "another rep")
    return markup_message(
        f"This Reconnect button is for {whose}'s calendar. Ask me about yours in a DM.",
        fallback="This Reconnect button is for another rep's calendar.",
    )


def feedback_thanks(helpful: bool) -> Message:
    return notice_message(
        "Thanks — glad that helped."
        if helpful
        else "Thanks for telling me. Use Talk to support if you need a person."
    )


def sync_unavailable() -> Message:
    return error_message("Syncing on request isn't available here.")


def synced_preface(results: Sequence[CycleResult]) -> str:
    """What *Sync now* did, one line a connection, put above the fresh answer."""
    return "\n".join(f"⚡ {escape_mrkdwn(cycle_summary(result))}" for result in results) or (
        "⚡ You have no calendar connected, so there is nothing to sync."
    )


# -- support ---------------------------------------------------------------------------------------


def contact_support(support_contact: str) -> Message:
    return error_message(f"Please contact {support_contact}; mention that calsync checked your calendar.")


def support_request_preface(slack_user_id: str, name: str) -> str:
    """Put above the agent view of the rep's answer in the support channel."""
    return f"🙋 Support request from <@{slack_user_id}> ({escape_mrkdwn(name)})."


def support_request_sent() -> Message:
    return notice_message(
        "I've sent this to the support team with what I found; they'll follow up with you here in Slack."
    )


def rep_unreachable() -> Message:
    return error_message("I can't reach that rep in Slack to send the link.")


def reconnect_link_sent(slack_user_id: str, provider: str) -> Message:
    product = labels.product(provider)
    return markup_message(
        f"Sent <@{slack_user_id}> a link to reconnect {product}.",
        fallback=f"Sent a link to reconnect {product}.",
    )


# -- held cancellations ----------------------------------------------------------------------------


def hold_gone() -> Message:
    return error_message("I can't find that hold any more.")
