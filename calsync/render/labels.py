"""What the product calls things, defined once: calendar products, providers, sync words.

A leaf: it imports nothing of calsync, so diagnostics, render, flows and the surfaces all name a
connection, a provider or a sync outcome the same way. The backend never imports it (it stores
codes; the words are chosen here).
"""

from __future__ import annotations

# How the calendar products are called in the help center and in answers.
CALENDAR_PRODUCTS: dict[str, str] = {"google": "Google Calendar", "microsoft": "Outlook"}
# The companies whose sign-in and servers they are ("Google says …", "Microsoft is having trouble").
PROVIDER_NAMES: dict[str, str] = {"google": "Google", "microsoft": "Microsoft"}


def product(provider: str | None, default: str | None = None) -> str:
    """ "Google Calendar" / "Outlook"; `default` (else the code itself) for an unknown provider."""
    return CALENDAR_PRODUCTS.get(provider or "", default if default is not None else provider or "calendar")


def provider_name(provider: str) -> str:
    """ "Google" / "Microsoft"."""
    return PROVIDER_NAMES.get(provider, provider)


def calendar_noun(provider: str) -> str:
    """What follows "your" or "on your": "Google Calendar", "Outlook calendar"."""
    return "Outlook calendar" if provider == "microsoft" else product(provider)


def connection_label(provider: str, account_email: str) -> str:
    """How an answer names a connection: "Google Calendar (ann@acme.com)"."""
    name = CALENDAR_PRODUCTS.get(provider) or PROVIDER_NAMES.get(provider, provider)
    return f"{name} ({account_email})"


# -- what a sync cycle did (`CycleResult`'s counters and codes) ---------------------------------------

PUSH_WORDS = (
    ("created", "{n} appointment{s} sent to the calendar"),
    ("recovered", "{n} appointment{s} found already in the calendar"),
    ("updated", "{n} change{s} sent to the calendar"),
    ("deleted", "{n} cancelled appointment{s} removed from the calendar"),
    ("cancelled", "{n} appointment{s} cancelled (deleted in the calendar)"),
    ("moved", "{n} appointment{s} to go on the selected calendar (gone from the one before)"),
)
PULL_WORDS = (
    ("recovered", "{n} appointment{s} found already in the calendar"),
    ("updated", "{n} calendar edit{s} brought back to SalesPartner"),
    ("cancelled", "{n} appointment{s} cancelled (deleted in the calendar)"),
)
SKIP_WORDS = {
    "inactive": "this connection is switched off",
    "disconnected": "the calendar is disconnected; reconnect it first",
    "no_calendar_selected": "no calendar is selected",
    "provider_not_configured": "this calendar provider is not configured here",
    "no_such_connection": "the connection no longer exists",
}
FAILURE_WORDS = {
    "invalid_grant": "the calendar's authorization no longer works; reconnect it",
    "rate_limited": "{provider} asked us to slow down; the next try is in a few minutes",
    "provider_unavailable": "{provider} is having trouble right now; the next try is in a few minutes",
    "timeout": "{provider} did not answer in time; the next try is in a few minutes",
    "malformed_response": "{provider} sent an answer we could not read; the next try is in a few minutes",
    "not_found": "the selected calendar was not found; select the calendar you use",
    "permission_denied": "we may not write to the selected calendar; select one you can edit",
}
