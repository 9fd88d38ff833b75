"""The fleet view in headless Chromium: opened from an agent's `/calsync status` reply, its states,
filters, chart, report links and stats; the CSV export; refusals for anyone but the agent's browser."""

from __future__ import annotations

import asyncio
import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from calsync.app import build_sync_engine
from calsync.syncbackend.incidents import open_incidents
from calsync.syncbackend.models import AuditEntry
from tests.bot.conftest import wait_for
from tests.browser.conftest import PHONE, SAM, Site, no_horizontal_scroll
from tests.incidents.helpers import SCENARIOS

pytestmark = pytest.mark.browser

ANA = "U0DEMOANA"
CARLA_SLACK = "U0DEMOCARLA"


def fleet_link(site: Site, agent: str = SAM) -> str:
    """The fleet-page link of the agent's `/calsync status` reply, as Slack shows it."""
    slack = site.slack
    _, channel = slack.command(agent, "status")

    def url() -> str | None:
        for message in slack.ephemeral_for(agent, channel):
            for block in message.blocks or []:
                for element in block.get("elements", []):
                    if element.get("action_id") == "open_fleet":
                        return str(element["url"])
        return None

    return wait_for(url, what="the status reply with its fleet link")


def signed(site: Site, kind: str, subject: dict[str, Any], ttl: timedelta = timedelta(minutes=15)) -> str:
    return f"{site.url}/fleet/{site.signer.make(kind, subject, ttl)}"


def expired_link(site: Site) -> str:
    url = signed(site, "fleet", {"agent": SAM}, timedelta(minutes=15))
    site.sandbox.clock.now += timedelta(minutes=15)
    return url


def test_the_fleet_page_opens_from_the_agents_status_reply(site: Site, page: Page) -> None:
    # A diagnosis first, so the stats have an answer to count.
    _, channel = site.slack.command(SAM, f"diagnose <@{CARLA_SLACK}|carla>")
    wait_for(
        lambda: [m for m in site.slack.ephemeral_for(SAM, channel) if "revoked" in m.text + str(m.blocks)]
    )
    url = fleet_link(site)
    assert url.startswith(f"{site.url}/fleet/")
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else None)
    response = page.goto(url)
    assert response is not None and response.status == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"

    expect(page.locator("h1")).to_contain_text("Calendar sync across the team")
    states = page.locator("#states")
    for label in ("Healthy", "Needs reconnect", "Failing", "Duplicates", "No connection"):
        expect(states).to_contain_text(label)
    expect(page.locator('#states li[data-state="failing"] .count')).not_to_have_text("0")
    # The chart: inline SVG, a bar per 6 hours of the week, drawn without any script.
    chart = page.locator("#chart svg.chart")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar")).to_have_count(28)
    assert page.evaluate("document.scripts.length") == 0
    assert violations == []  # the chart's colours are SVG attributes, not inline styles
    # No incidents known: no incidents section at all.
    expect(page.locator("#incidents")).to_have_count(0)

    # Reps, broken first, each linked to their report.
    gina = page.locator('tr.rep[data-email="gina@northwind.example"]')
    expect(gina).to_contain_text("Failing")
    expect(gina).to_contain_text("not_found")
    dev = page.locator('tr.rep[data-email="dev@northwind.example"]')
    expect(dev).to_contain_text("Needs reconnect")
    link = dev.get_by_role("link").first
    assert (link.get_attribute("href") or "").startswith(f"{site.url}/reports/")

    # The stats count the diagnosis made above, by cause and by article.
    expect(page.locator("#stats-cause")).to_contain_text("connection.revoked")
    expect(page.locator("#stats-article")).to_contain_text("not-connected")

    # Filter by state with the form (no JavaScript: a GET form), then clear.
    page.select_option("select[name=state]", "needs_reconnect")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tr.rep")
    expect(rows.first).to_be_visible()
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.state)")) == {"needs_reconnect"}
    page.get_by_role("link", name="Clear filters").click()
    expect(page.locator('tr.rep[data-state="healthy"]').first).to_be_visible()

    # Filter by organisation: the demo's one personal Gmail rep is its own organisation.
    page.select_option("select[name=org]", "northwind.example")
    page.get_by_role("button", name="Filter").click()
    emails = page.locator("tr.rep").evaluate_all("rows => rows.map(r => r.dataset.email)")
    assert emails and all(email.endswith("@northwind.example") for email in emails)

    # A cause nobody has (typed into the URL): nothing listed, the filter still shown as chosen.
    page.goto(f"{url}?cause=made_up%3Cb%3E&state=bogus")
    expect(page.locator("#reps")).to_contain_text("No rep matches.")
    expect(page.locator("select[name=cause]")).to_have_value("made_up<b>")
    expect(page.locator("select[name=state]")).to_have_value("")

    # Opening a rep's report from the fleet works in this browser.
    page.goto(f"{url}?state=needs_reconnect")
    page.locator('tr.rep[data-email="dev@northwind.example"] a').first.click()
    expect(page.locator("h1")).to_contain_text("Dev")

    with site.sandbox.sessions() as session:
        opened = session.scalars(select(AuditEntry.result).where(AuditEntry.action == "fleet_open")).all()
    assert opened[0] == "opened" and len(opened) >= 4


def test_the_fleet_page_reads_on_a_phone(site: Site, browser: Browser) -> None:
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        assert (response := page.goto(fleet_link(site))) is not None and response.status == 200
        expect(page.locator("#chart svg.chart")).to_be_visible()
        assert no_horizontal_scroll(page)
    finally:
        context.close()


def test_the_csv_has_one_row_per_cause_and_article(site: Site) -> None:
    _, channel = site.slack.command(SAM, f"diagnose <@{CARLA_SLACK}|carla>")
    wait_for(
        lambda: [m for m in site.slack.ephemeral_for(SAM, channel) if "revoked" in m.text + str(m.blocks)]
    )
    url = fleet_link(site)
    with httpx.Client() as client:  # one browser: the claim cookie rides along
        assert client.get(url).status_code == 200
        response = client.get(f"{url}/stats.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "cause",
        "article",
        "answered",
        "helped",
        "not_helped",
        "reconnects_started",
        "reconnects_completed",
        "fixed_within_24h",
    ]
    assert {"cause": "connection.revoked", "article": "not-connected", "answered": "1"}.items() <= next(
        row for row in rows if row["cause"] == "connection.revoked"
    ).items()
    # Another client (no claim cookie) gets no CSV.
    refused = httpx.get(f"{url}/stats.csv")
    assert refused.status_code == 403 and "connection.revoked" not in refused.text


@pytest.mark.parametrize(
    ("make", "status", "title"),
    [
        pytest.param(
            lambda site: f"{site.url}/fleet/not-a-token", 403, "This fleet link isn't valid", id="unsigned"
        ),
        pytest.param(
            lambda site: signed(site, "report", {"agent": SAM, "rep": "dev@northwind.example"}),
            403,
            "This fleet link isn't valid",
            id="a-report-link",
        ),
        pytest.param(
            lambda site: signed(site, "reconnect", {"rep": "ana@northwind.example", "provider": "google"}),
            403,
            "This fleet link isn't valid",
            id="a-reps-reconnect-link",
        ),
        pytest.param(
            lambda site: signed(site, "fleet", {}), 403, "This fleet link isn't valid", id="no-agent"
        ),
        pytest.param(
            lambda site: expired_link(site),
            410,
            "This fleet link has expired",
            id="expired",
        ),
    ],
)
def test_anything_but_an_agents_fleet_link_is_refused(
    site: Site, page: Page, make: Any, status: int, title: str
) -> None:
    response = page.goto(make(site))
    assert response is not None and response.status == status
    expect(page.locator("h1")).to_have_text(title)
    expect(page.locator("body")).not_to_contain_text("northwind.example")
    csv_response = httpx.get(f"{make(site)}/stats.csv")
    assert csv_response.status_code == status and "," not in csv_response.text.split("\n")[0]


def test_a_rep_gets_no_link_and_another_browser_is_refused(site: Site, browser: Browser) -> None:
    _, channel = site.slack.command(ANA, "status")
    refusal = wait_for(lambda: next(iter(site.slack.ephemeral_for(ANA, channel)), None))
    assert "/fleet/" not in str(refusal.blocks)

    url = fleet_link(site)
    first, second = browser.new_context(), browser.new_context()
    try:
        mine = first.new_page()
        assert (response := mine.goto(url)) is not None and response.status == 200
        cookies = [c for c in first.cookies() if c["name"].startswith("calsync_fleet_")]
        assert len(cookies) == 1 and cookies[0]["httpOnly"] and cookies[0]["path"] == "/fleet/"
        assert cookies[0]["sameSite"] == "Strict"
        other = second.new_page()
        refused = other.goto(url)
        assert refused is not None and refused.status == 403
        expect(other.locator("h1")).to_have_text("This fleet view is already open in another browser")
        expect(other.locator("body")).not_to_contain_text("northwind.example")
        assert (again := mine.goto(url)) is not None and again.status == 200
    finally:
        first.close()
        second.close()
    with site.sandbox.sessions() as session:
        results = session.scalars(select(AuditEntry.result).where(AuditEntry.action == "fleet_open")).all()
    assert "refused: opened in another browser" in results


def test_the_fleet_page_shows_a_tenant_wide_consent_removal_as_one_open_incident(
    site: Site, page: Page
) -> None:
    """The consent-removal scenario driven through the sync engine against the Microsoft emulator:
    the agent's fleet page lists one open incident for the organisation and its reps as needing a
    reconnect."""
    site.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    engine = build_sync_engine(site.services)
    reps = [f"{name}@tallgrass.example" for name in ("tess", "umar", "vera", "wes", "xia")]
    with ThreadPoolExecutor(1) as thread:  # Playwright's own loop runs in this one
        for email in reps:
            (result,) = thread.submit(asyncio.run, engine.sync_user(email)).result()
            assert result.status == "error", result
            site.sandbox.clock.now += timedelta(minutes=2)
    (incident,) = open_incidents(site.sandbox.sessions, site.sandbox.clock())

    page.goto(fleet_link(site, agent="U0INCSAM"))
    incidents = page.locator("#incidents")
    expect(incidents.locator("h2")).to_have_text("Open incidents (1)")
    expect(incidents).to_contain_text(
        "tallgrass.example: the Microsoft admin removed consent for SalesPartner"
    )
    expect(incidents).to_contain_text(f"{incident.affected} people affected since")
    for email in reps:
        expect(page.locator(f'tr.rep[data-email="{email}"]')).to_have_attribute(
            "data-state", "needs_reconnect"
        )
