"""The playground and the agent's report page, in headless Chromium."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect
from sqlalchemy import select

from calsync.render.blocks import ACTION_OPEN_REPORT
from calsync.syncbackend.models import AuditEntry
from tests.bot.conftest import wait_for
from tests.browser.conftest import PHONE, SAM, Site, no_horizontal_scroll

pytestmark = pytest.mark.browser

CARLA = "carla@northwind.example"
CARLA_SLACK = "U0DEMOCARLA"
REVOKED = "Google says access to your Google Calendar (carla@northwind.example) was revoked"


def ask(page: Page, site: Site, rep: str, question: str) -> None:
    page.goto(f"{site.url}/playground")
    page.select_option("#rep", rep)
    page.fill("#q", question)
    page.get_by_role("button", name="Ask").click()


def test_the_playground_answers_a_demo_reps_question(site: Site, page: Page, tmp_path: Path) -> None:
    ask(page, site, CARLA, "why isnt my apointment showing in my calender??")

    answer = page.locator("#answer")
    expect(answer).to_contain_text(REVOKED)
    # The bold headline, the one fix and the steps of its help-center section; nothing else.
    expect(answer.locator("strong", has_text="was revoked").first).to_be_visible()
    expect(answer).to_contain_text("Fix: Reconnect Google Calendar")
    expect(answer).to_contain_text("How to reconnect")
    expect(answer).to_contain_text('From the help center: Calendar Shows "Not Connected"')
    expect(answer).not_to_contain_text("Why this happens")
    expect(answer).not_to_contain_text("❌ How")
    reconnect = answer.get_by_role("link", name="Reconnect Google Calendar")
    expect(reconnect).to_be_visible()
    assert "/connect/google" in (reconnect.get_attribute("href") or "")
    # The rep stays selected and the question stays in the box for the next try.
    expect(page.locator("#rep")).to_have_value(CARLA)

    shot = tmp_path / "playground-answer.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_check_again_and_example_links_re_ask(site: Site, page: Page) -> None:
    page.goto(f"{site.url}/playground")
    page.get_by_role("link", name="every appt shows up twice").click()
    expect(page.locator("#answer")).to_contain_text("Leo Schmidt")
    page.locator("#answer").get_by_role("button", name="Check again").click()
    expect(page.locator("#answer")).to_contain_text("Leo Schmidt")
    expect(page.locator("#rep")).to_have_value("leo@northwind.example")
    # Feedback works in Slack only: shown, but disabled.
    expect(page.locator("#answer").get_by_role("button", name="Helped")).to_be_disabled()


def test_an_off_topic_question_gets_what_i_can_help_with(site: Site, page: Page) -> None:
    ask(page, site, CARLA, "how do i reset my salespartner password")
    answer = page.locator("#answer")
    expect(answer).to_contain_text("That's not something I can help with")
    expect(answer).to_contain_text("I can help with calendar sync")
    expect(answer).to_contain_text("Duplicate Appointments")


def test_the_report_opens_from_the_agents_slack_reply(site: Site, page: Page) -> None:
    slack = site.slack
    _, channel = slack.command(SAM, f"diagnose <@{CARLA_SLACK}|carla>")
    reply = wait_for(
        lambda: next((m for m in slack.ephemeral_for(SAM, channel) if _report_url(m.blocks)), None),
        what="the agent's ephemeral report with its link",
    )
    url = _report_url(reply.blocks)
    assert url is not None and url.startswith(f"{site.url}/reports/")

    response = page.goto(url)
    assert response is not None and response.status == 200
    expect(page.locator("h1")).to_contain_text("Carla Diaz")
    expect(page.locator("#verdict")).to_contain_text("was revoked")
    revoked = page.locator('.finding[data-code="connection.revoked"]')
    expect(revoked).to_contain_text("error")
    expect(revoked).to_contain_text("connection.revoked")
    expect(revoked.locator("dl.evidence")).to_be_visible()
    expect(page.locator("#connections")).to_contain_text("carla@northwind.example")
    expect(page.locator("#sync-runs")).to_contain_text("invalid_grant")
    expect(page.locator('.cause[data-code="connection.revoked"]')).to_contain_text("sync.overdue")
    expect(page.locator('.article[data-article="not-connected"]')).to_contain_text("How to reconnect")
    # The claim cookie: HttpOnly and SameSite=Strict, scoped to the report pages.
    cookies = [c for c in page.context.cookies() if c["name"].startswith("calsync_report_")]
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict" and cookies[0]["path"] == "/reports/"
    # The same browser may reload (and the diagnosis runs again, live).
    page.reload()
    expect(page.locator("#verdict")).to_contain_text("was revoked")

    with site.sandbox.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.actor == SAM)).all()
    assert [(e.action, e.result) for e in entries] == [
        ("diagnose", "error"),  # /calsync diagnose in Slack
        ("report_open", "opened"),
        ("diagnose", "error"),
        ("report_open", "opened"),
        ("diagnose", "error"),
    ]


def test_the_same_report_link_in_another_browser_is_refused(site: Site, browser: Browser) -> None:
    url = site.report_link(CARLA)
    first = browser.new_context()
    second = browser.new_context()
    try:
        mine = first.new_page()
        assert (response := mine.goto(url)) is not None and response.status == 200
        other = second.new_page()
        refused = other.goto(url)
        assert refused is not None and refused.status == 403
        expect(other.locator("h1")).to_have_text("This report is already open in another browser")
        expect(other.locator("body")).not_to_contain_text("Carla")
        # The first browser still has it.
        assert (again := mine.goto(url)) is not None and again.status == 200
    finally:
        first.close()
        second.close()
    with site.sandbox.sessions() as session:
        results = session.scalars(select(AuditEntry.result).where(AuditEntry.action == "report_open")).all()
    assert "refused: opened in another browser" in results


def test_expired_and_tampered_report_links_get_clear_pages(site: Site, page: Page) -> None:
    url = site.report_link(CARLA)
    site.sandbox.clock.now += timedelta(minutes=15)
    response = page.goto(url)
    assert response is not None and response.status == 410
    expect(page.locator("h1")).to_have_text("This report link has expired")
    expect(page.locator("body")).not_to_contain_text("Carla")

    site.sandbox.clock.now -= timedelta(minutes=15)
    token = url.rsplit("/", 1)[1]
    body, signature = token.split(".")
    forged = f"{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{signature}"
    for bad in (forged, "not-a-link", f"{body}.{signature[::-1]}"):
        response = page.goto(f"{site.url}/reports/{bad}")
        assert response is not None and response.status == 403, bad
        expect(page.locator("h1")).to_have_text("This report link isn't valid")
    # A link of another kind (a reconnect link) never opens a report.
    other_kind = site.signer.make("reconnect", {"agent": SAM, "rep": CARLA}, timedelta(minutes=15))
    response = page.goto(f"{site.url}/reports/{other_kind}")
    assert response is not None and response.status == 403


@pytest.mark.parametrize("path", ["playground", "report"])
def test_pages_read_well_on_a_phone_without_javascript(site: Site, browser: Browser, path: str) -> None:
    context = browser.new_context(viewport=PHONE, java_script_enabled=False, is_mobile=True)
    try:
        page = context.new_page()
        if path == "playground":
            ask(page, site, CARLA, "why isnt my appointment showing")
            expect(page.locator("#answer")).to_contain_text("was revoked")
        else:
            assert (response := page.goto(site.report_link(CARLA))) is not None and response.status == 200
            expect(page.locator("#findings")).to_contain_text("connection.revoked")
        assert no_horizontal_scroll(page)
    finally:
        context.close()


def _report_url(message_blocks: list[dict[str, Any]]) -> str | None:
    for block in message_blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == ACTION_OPEN_REPORT:
                url = element.get("url")
                return url if isinstance(url, str) else None
    return None


def test_a_hostile_question_is_shown_as_text(site: Site, page: Page) -> None:
    hostile = '"><img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(f"{site.url}/playground/ask?{urlencode({'rep': CARLA, 'q': hostile})}")
    expect(page.locator("#answer")).to_be_visible()
    expect(page.locator("#q")).to_have_value(hostile)
    assert page.title() != "pwned" and dialogs == []
    assert page.locator("main img").count() == 0


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(lambda site: "/playground", id="playground"),
        pytest.param(lambda site: site.report_link(CARLA).removeprefix(site.url), id="report"),
    ],
)
def test_pages_keep_to_their_content_security_policy_and_refuse_frames(
    site: Site, page: Page, path: Any
) -> None:
    """No CSP violation on our own pages (styles load, nothing inline is blocked), and a page framed by
    another origin is not shown (frame-ancestors 'none')."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security" in message.text else None,
    )
    page.goto(f"{site.url}{path(site)}")
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != ""
    assert page.evaluate("document.styleSheets.length") >= 1
    assert violations == []

    page.set_content(f'<iframe id="f" src="{site.url}/playground" width="400" height="300"></iframe>')
    page.wait_for_timeout(500)
    frame = page.frame_locator("#f")
    expect(frame.locator("#rep")).to_have_count(0)


# A word split over two lines: more than one line box for the range of one word of a cell.
SPLIT_WORDS = """() => {
  const split = [];
  for (const cell of document.querySelectorAll('main td, main th')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
        if (tops.size > 1) split.push(match[0]);
      }
    }
  }
  return split;
}"""


@pytest.mark.parametrize("rep", [CARLA, "leo@northwind.example", "hugo@northwind.example"])
def test_report_tables_never_split_a_word_at_desktop_width(site: Site, browser: Browser, rep: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        assert (response := page.goto(site.report_link(rep))) is not None and response.status == 200
        expect(page.locator("#connections table")).to_be_visible()
        assert page.evaluate("document.querySelector('main').getBoundingClientRect().width") > 736
        assert page.evaluate(SPLIT_WORDS) == []
        assert no_horizontal_scroll(page)
    finally:
        context.close()
