"""The pages in a real headless Chromium: Debian's `chromium` driven by Playwright (never Playwright's
own browser download), against the app built by the composition root's factories over the sandbox,
served by uvicorn on a loopback port, in sandbox mode (so the playground exists)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright
from pydantic import SecretStr

from calsync.app import (
    Services,
    build_bolt_app,
    build_link_signer,
    build_slack_bot,
    build_troubleshooter,
    build_web_app,
)
from calsync.links import LinkSigner
from calsync.sandbox.server import BackgroundServer
from calsync.settings import Settings
from tests.bot.conftest import SlackHarness
from tests.harness import LateApp, Sandbox

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-dev-shm-usage",
]
DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
PHONE: ViewportSize = {"width": 390, "height": 844}
SAM = "U0DEMOSAM"  # the demo's support agent


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module. Not longer: while Playwright's sync API is running it holds an
    asyncio loop on the main thread, and every later test calling `asyncio.run` would fail."""
    executable = shutil.which("chromium") or CHROMIUM
    if not Path(executable).exists():
        pytest.fail("Chromium is not installed: `make chromium` installs Debian's package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Site:
    url: str
    sandbox: Sandbox
    services: Services
    signer: LinkSigner
    slack: SlackHarness

    def report_link(self, rep: str, *, agent: str = SAM, ttl: timedelta = timedelta(minutes=15)) -> str:
        token = self.signer.make("report", {"agent": agent, "rep": rep}, ttl)
        return f"{self.url}/reports/{token}"


@pytest.fixture(scope="session")
def site_server(sandbox_session: Sandbox) -> Iterator[Site]:
    endpoints = sandbox_session.endpoints
    holder = LateApp()
    with BackgroundServer(holder) as server:
        settings = endpoints.apply(
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                CALSYNC_PUBLIC_URL=server.url,
                CALSYNC_LINK_SECRET=SecretStr("browser-tests-link-secret-0123456789"),
                CALSYNC_STATE_DIR=sandbox_session.tmp_dir,
            )
        )
        services = sandbox_session.services(settings)
        troubleshooter = build_troubleshooter(services)
        bot = build_slack_bot(services, troubleshooter)
        holder.app = build_web_app(
            services, build_bolt_app(services, bot), troubleshooter, sandbox=True, bot=bot
        )
        yield Site(
            url=server.url,
            sandbox=sandbox_session,
            services=services,
            signer=build_link_signer(services),
            slack=SlackHarness(sandbox_session, server.url, endpoints.slack_signing_secret),
        )


@pytest.fixture
def site(site_server: Site, sandbox: Sandbox) -> Site:
    """The app with the demo world loaded afresh (the `sandbox` fixture empties it and resets the clock)."""
    sandbox.load_file(DEMO)
    return site_server


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context()
    made.set_default_timeout(20_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))
