"""Reconnect from the playground's button, in a real browser: calsync's signed link -> the sandbox's
Google consent page -> back to calsync's success page; the database and the Slack DM after it; and
Deny, an expired link, a reused link, and someone else signing in at the consent page."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from calsync.syncbackend.models import CalendarConnection, User
from tests.browser.conftest import Site
from tests.browser.test_pages import CARLA, ask

pytestmark = pytest.mark.browser

CARLA_SLACK = "U0DEMOCARLA"
WONKA = "carla-wonka"  # booked an hour before, waiting for the revoked grant


def google_connection(site: Site) -> tuple[str, str | None, bytes | None]:
    with site.sandbox.sessions() as session:
        row = session.scalars(
            select(CalendarConnection)
            .join(User, User.id == CalendarConnection.user_id)
            .where(User.email == CARLA, CalendarConnection.provider == "google")
        ).one()
        return row.status, row.status_code, row.refresh_token_encrypted


def reconnect_link(page: Page, site: Site) -> str:
    ask(page, site, CARLA, "my calendar says not connected")
    link = page.locator("#answer").get_by_role("link", name="Reconnect Google Calendar")
    href = link.get_attribute("href") or ""
    assert href.startswith(f"{site.url}/connect/google?t=")
    return href


def at_consent(page: Page, site: Site) -> None:
    expect(page.locator("h1")).to_have_text("Choose an account")
    assert page.url.startswith(site.sandbox.endpoints.google_url)


def test_reconnect_from_the_playground_through_the_consent_page(site: Site, page: Page) -> None:
    before = google_connection(site)
    href = reconnect_link(page, site)
    page.locator("#answer").get_by_role("link", name="Reconnect Google Calendar").click()

    at_consent(page, site)
    expect(page.get_by_label(CARLA)).to_be_checked()
    page.get_by_role("button", name="Allow").click()

    done = page.locator("#reconnect-done")
    expect(done).to_contain_text("connected again")
    expect(done).to_contain_text(CARLA)
    assert page.url.startswith(f"{site.url}/oauth/google/callback")
    status, code, token = google_connection(site)
    assert (status, code) == ("connected", None) and token != before[2]
    # The first sync ran before the page was shown: the waiting appointment is on the calendar, and
    # the page says so instead of the error from before the reconnect.
    expect(page.locator("#first-sync")).to_have_text(
        "\u2018Tasting demo for Wonka\u2019 is on your calendar now."
    )
    expect(page.locator("#fresh-check")).to_have_count(0)
    expect(done).not_to_contain_text("3 hours")
    (event,) = site.sandbox.world.find_events(appointment_id=WONKA)
    assert event.title == "Tasting demo for Wonka"

    dm = site.sandbox.world.slack_dm_channel(CARLA_SLACK)
    assert dm is not None
    texts = "\n".join(m.text + json.dumps(m.blocks) for m in site.sandbox.world.slack_messages(dm))
    assert "Your Google Calendar is connected again." in texts
    assert "Tasting demo for Wonka\u2019 is on your calendar now." in texts and "revoked" not in texts

    # The same link again: used up, and it says so.
    response = page.goto(href)
    assert response is not None and response.status == 410
    expect(page.locator("#reconnect-problem")).to_contain_text("already used")
    assert google_connection(site)[:2] == ("connected", None)

    # The playground now sees a healthy, synced connection: no Reconnect, no stale sync error.
    ask(page, site, CARLA, "my calendar says not connected")
    expect(page.locator("#answer").get_by_role("link", name="Reconnect Google Calendar")).to_have_count(0)
    expect(page.locator("#answer")).to_contain_text("looks healthy")


def test_deny_at_the_consent_page_changes_nothing(site: Site, page: Page) -> None:
    before = google_connection(site)
    reconnect_link(page, site)
    page.locator("#answer").get_by_role("link", name="Reconnect Google Calendar").click()
    at_consent(page, site)
    page.get_by_role("button", name="Deny").click()
    expect(page.locator("#reconnect-problem")).to_contain_text("Nothing was connected")
    assert google_connection(site) == before


def test_an_expired_reconnect_link(site: Site, page: Page) -> None:
    before = google_connection(site)
    href = reconnect_link(page, site)
    site.sandbox.clock.now += timedelta(minutes=30)
    response = page.goto(href)
    assert response is not None and response.status == 410
    expect(page.locator("#reconnect-problem")).to_contain_text("expired")
    assert google_connection(site) == before


def test_someone_else_signing_in_at_the_consent_page_is_refused(site: Site, page: Page) -> None:
    before = google_connection(site)
    reconnect_link(page, site)
    page.locator("#answer").get_by_role("link", name="Reconnect Google Calendar").click()
    at_consent(page, site)
    page.get_by_label("ana@northwind.example").check()
    page.get_by_role("button", name="Allow").click()
    problem = page.locator("#reconnect-problem")
    expect(problem).to_contain_text("This link is for Carla's calendar")
    expect(problem).to_contain_text("you signed in as ana@northwind.example")
    assert google_connection(site) == before
