"""The product's names for things, defined once (calsync.render.labels) and the sync line built on them."""

from __future__ import annotations

import pytest

from calsync.render import labels
from calsync.render.words import cycle_summary
from calsync.syncbackend.engine import CycleResult
from calsync.syncbackend.models import CalendarConnection


@pytest.mark.parametrize(
    ("provider", "label"),
    [
        ("google", "Google Calendar (ann@acme.com)"),
        ("microsoft", "Outlook (ann@acme.com)"),
        ("zoho", "zoho (ann@acme.com)"),
    ],
    ids=["google", "microsoft", "unknown"],
)
def test_connection_label(provider: str, label: str) -> None:
    connection = CalendarConnection(provider=provider, account_email="Ann@acme.com")
    assert labels.connection_label(connection.provider, connection.account_email) == label


@pytest.mark.parametrize(
    ("provider", "product", "noun", "company"),
    [
        ("google", "Google Calendar", "Google Calendar", "Google"),
        ("microsoft", "Outlook", "Outlook calendar", "Microsoft"),
        ("zoho", "zoho", "zoho", "zoho"),
    ],
)
def test_names(provider: str, product: str, noun: str, company: str) -> None:
    assert (labels.product(provider), labels.calendar_noun(provider), labels.provider_name(provider)) == (
        product,
        noun,
        company,
    )


def _result(**fields: object) -> CycleResult:
    base: dict[str, object] = {
        "connection_id": 1,
        "provider": "google",
        "account_email": "ann@acme.com",
        "status": "ok",
    }
    return CycleResult(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({}, "Google Calendar (ann@acme.com): synced just now — already up to date."),
        (
            {"pushed": {"created": 2, "updated": 1}, "pulled": {"cancelled": 1}},
            "Google Calendar (ann@acme.com): synced just now — 2 appointments sent to the calendar; "
            "1 change sent to the calendar; 1 appointment cancelled (deleted in the calendar).",
        ),
        (
            {"status": "error", "provider": "microsoft", "error_code": "rate_limited"},
            "Outlook (ann@acme.com): the sync did not get through — Outlook asked us to slow down; "
            "the next try is in a few minutes.",
        ),
        (
            {"status": "error", "error_code": "weird", "error_message": "boom"},
            "Google Calendar (ann@acme.com): the sync did not get through — boom.",
        ),
        (
            {"status": "skipped", "error_code": "inactive"},
            "Google Calendar (ann@acme.com): not synced — this connection is switched off.",
        ),
        (
            {"status": "busy", "account_email": ""},
            "Google Calendar: a sync is already running; it will be done in a moment.",
        ),
        (
            {"status": "held", "pulled": {"held": 4}},
            "Google Calendar (ann@acme.com): 4 appointments deleted in the calendar at once — none cancelled; "
            "a support agent decides whether to cancel them or put them back.",
        ),
    ],
    ids=["up-to-date", "counts", "error-known", "error-unknown", "skipped", "busy", "held"],
)
def test_cycle_summary(fields: dict[str, object], line: str) -> None:
    assert cycle_summary(_result(**fields)) == line
