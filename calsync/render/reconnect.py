"""What the reconnect says to the rep: the problem pages' words, the "connected" page's lines, and
the status reason of a connection a switch turned off. Products are named by `render/labels.py`."""

from __future__ import annotations

from calsync.render.labels import product
from calsync.syncbackend.reconnect import Connected, Failure, Problem

# What each problem page says: (title, what happened, what to do next).
ASK_AGAIN = "Ask @calsync in Slack for a new link (type `/calsync reconnect`)."
_ASK_AGAIN_LOWER = ASK_AGAIN[0].lower() + ASK_AGAIN[1:]
MESSAGES: dict[Problem, tuple[str, str, str]] = {
    Problem.LINK_INVALID: (
        "This link doesn't work",
        "This reconnect link is not valid: it may have been cut off when it was copied, or changed.",
        ASK_AGAIN,
    ),
    Problem.LINK_EXPIRED: (
        "This link has expired",
        "Reconnect links work for 30 minutes, and this one is older than that.",
        ASK_AGAIN,
    ),
    Problem.LINK_USED: (
        "This link was already used",
        "Each reconnect link works once, and this one has been opened before.",
        ASK_AGAIN,
    ),
    Problem.UNKNOWN_USER: (
        "This link doesn't work",
        "The SalesPartner account this link was made for no longer exists.",
        "Ask SalesPartner support for help.",
    ),
    Problem.UNKNOWN_STATE: (
        "This sign-in can't be finished",
        "calsync doesn't recognise this sign-in: it may have been started somewhere else, or the page was reloaded.",
        ASK_AGAIN,
    ),
    Problem.STATE_EXPIRED: (
        "This sign-in took too long",
        "The sign-in was started more than 20 minutes ago, so it can't be finished any more.",
        ASK_AGAIN,
    ),
    Problem.STATE_USED: (
        "This sign-in is already finished",
        "This sign-in has been completed (or tried) before; reloading the page can't repeat it.",
        "If your calendar still isn't connected, " + _ASK_AGAIN_LOWER,
    ),
    Problem.PROVIDER_MISMATCH: (
        "This sign-in can't be finished",
        "The answer came back from a different calendar service than the one the sign-in was started with.",
        ASK_AGAIN,
    ),
    Problem.DENIED: (
        "Nothing was connected",
        "You chose not to allow access on the sign-in page, so SalesPartner still can't reach your calendar.",
        "When you're ready, ask @calsync in Slack for a new link and choose Allow.",
    ),
    Problem.PROVIDER_ERROR: (
        "The sign-in didn't work",
        "The calendar service answered with an error, so nothing was connected.",
        "Try again in a few minutes: " + _ASK_AGAIN_LOWER,
    ),
    Problem.WRONG_ACCOUNT: (
        "That's a different account",
        "",  # made per case
        "",
    ),
    Problem.NOT_CONFIGURED: (
        "This calendar service isn't set up",
        "calsync isn't configured for this calendar service.",
        "Ask SalesPartner support for help.",
    ),
}


def _first_name(name: str, email: str | None) -> str:
    return (name.split()[0] if name.strip() else (email or "").split("@")[0]) or "someone else"


def problem_texts(failure: Failure) -> tuple[str, str, str]:
    """The problem page's (title, what happened, what to do next)."""
    title, what, next_step = MESSAGES[failure.problem]
    if failure.problem is Problem.WRONG_ACCOUNT:
        owner = _first_name(failure.rep_name, failure.rep_email)
        what = (
            f"This link is for {owner}'s calendar ({failure.rep_email}), but you signed in as "
            f"{failure.account_email}. Nothing was changed."
        )
        next_step = (
            f"If you are {owner}, ask @calsync for a new link and sign in with {failure.rep_email}. "
            "Otherwise, ask @calsync in Slack for your own link."
        )
    return title, what, next_step


def headline(connected: Connected) -> str:
    if connected.switched_from:
        return f"{product(connected.provider)} is connected — new appointments go there from now on."
    return f"Your {product(connected.provider)} is connected again."


def switch_note(connected: Connected) -> str | None:
    """The help center's words on switching provider."""
    if not connected.switched_from:
        return None
    return (
        f"Appointments already synced to {product(connected.switched_from)} stay where they were: switching "
        f"doesn't move them. New appointments will go to {product(connected.provider)}."
    )


def calendar_note(connected: Connected) -> str | None:
    if not connected.calendars_checked:
        return "I couldn't read your calendar list just now; the calendar you picked before is kept."
    if not connected.calendar_changed:
        return None
    if connected.previous_calendar_name:
        return (
            f'The calendar you picked before ("{connected.previous_calendar_name}") no longer exists, so '
            f'appointments now go to your main calendar, "{connected.calendar_name}".'
        )
    return f'Appointments go to your main calendar, "{connected.calendar_name}".'


def switched_reason(provider: str) -> str:
    """The status reason stored on a connection turned off by a switch to `provider`."""
    return f"switched to {product(provider)}"


__all__ = [
    "ASK_AGAIN",
    "MESSAGES",
    "calendar_note",
    "headline",
    "problem_texts",
    "switch_note",
    "switched_reason",
]
