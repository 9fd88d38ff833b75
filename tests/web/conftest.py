"""The web app as a browser sees it: the real FastAPI app (composition root's factories) under uvicorn
on a loopback port, wired to the sandbox emulators, and a small no-JavaScript "browser" that follows
redirects and submits the emulators' consent forms."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from pydantic import SecretStr

from calsync.app import build_bolt_app, build_slack_bot, build_troubleshooter, build_web_app
from calsync.diagnostics.troubleshooter import Troubleshooter
from calsync.flows.reconnect import ReconnectLinks
from calsync.links import LinkSigner
from calsync.sandbox.server import BackgroundServer
from calsync.settings import Settings
from tests.harness import LateApp, Sandbox

DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
HELP_CHANNEL = "C0HELP"


class _Forms(HTMLParser):
    """Every form of a page: its action and its fields (hidden inputs, checked radios, buttons)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "fields": {}, "radios": []})
        elif tag == "input" and self.forms:
            form = self.forms[-1]
            if values.get("type") == "hidden":
                form["fields"][values["name"]] = values.get("value", "")
            elif values.get("type") == "radio":
                form["radios"].append(values.get("value", ""))
                if "checked" in values:
                    form["checked"] = values.get("value", "")


@dataclass
class WebHarness:
    sandbox: Sandbox
    url: str
    links: ReconnectLinks
    troubleshooter: Troubleshooter
    http: httpx.Client

    def link(self, email: str, provider: str, **where: str) -> str:
        return self.links(email, provider, **where)

    def consent(self, link: str, *, account: str | None = None, decision: str = "allow") -> httpx.Response:
        """Open `link`, follow it to the provider's consent page, choose `account` and `decision`
        there, and follow the redirect back to calsync: the page calsync answers."""
        start = self.http.get(link)
        if start.status_code != 302:
            return start
        consent_url = start.headers["location"]
        page = self.http.get(consent_url)
        assert page.status_code == 200, page.text
        parser = _Forms()
        parser.feed(page.text)
        form = parser.forms[0]
        fields = dict(form["fields"])
        fields["account"] = account or form.get("checked") or (form["radios"][0] if form["radios"] else "")
        fields["decision"] = decision
        back = self.http.post(urljoin(consent_url, form["action"]), data=fields)
        assert back.status_code == 302, back.text
        callback = back.headers["location"]
        assert callback.startswith(self.url + "/oauth/")
        return self.http.get(callback)


@pytest.fixture(scope="module")
def web_server(sandbox_session: Sandbox) -> Iterator[WebHarness]:
    endpoints = sandbox_session.endpoints
    late = LateApp()
    server = BackgroundServer(late, lifespan=True)  # bound (its URL known) now, started below
    settings = endpoints.apply(
        Settings(_env_file=None).model_copy(  # type: ignore[call-arg]
            update={
                "public_url": server.url,
                "link_secret": SecretStr(secrets.token_urlsafe(32)),
                "state_dir": sandbox_session.tmp_dir,
            }
        )
    )
    services = sandbox_session.services(settings)
    troubleshooter = build_troubleshooter(services)
    bot = build_slack_bot(services, troubleshooter)
    late.app = build_web_app(services, build_bolt_app(services, bot), bot=bot)
    with server:
        assert settings.link_secret is not None
        links = ReconnectLinks(
            LinkSigner(settings.link_secret.get_secret_value().encode(), sandbox_session.clock), server.url
        )
        with httpx.Client(
            timeout=30, verify=ssl.create_default_context(cafile=str(endpoints.ca_path)), trust_env=False
        ) as http:
            yield WebHarness(sandbox_session, server.url, links, troubleshooter, http)


@pytest.fixture
def web(web_server: WebHarness, sandbox: Sandbox) -> WebHarness:
    """The app with the demo world loaded afresh (the `sandbox` fixture empties it first)."""
    sandbox.load_file(DEMO)
    if sandbox.world.slack_channel(HELP_CHANNEL) is None:
        sandbox.world.slack_add_channel(HELP_CHANNEL, "calendar-help")
    return web_server


@dataclass
class Pages:
    """The pages (sandbox mode: the playground too) under uvicorn, without Slack."""

    url: str
    signer: LinkSigner
    links: ReconnectLinks


@pytest.fixture(scope="module")
def pages_server(sandbox_session: Sandbox) -> Iterator[Pages]:
    late = LateApp()
    secret = secrets.token_urlsafe(32)
    with BackgroundServer(late) as server:
        settings = sandbox_session.endpoints.apply(
            Settings(_env_file=None).model_copy(  # type: ignore[call-arg]
                update={
                    "public_url": server.url,
                    "link_secret": SecretStr(secret),
                    "state_dir": sandbox_session.tmp_dir,
                }
            )
        )
        services = sandbox_session.services(settings)
        late.app = build_web_app(services, None, build_troubleshooter(services), sandbox=True)
        signer = LinkSigner(secret.encode(), sandbox_session.clock)
        yield Pages(server.url, signer, ReconnectLinks(signer, server.url))


@pytest.fixture
def pages(pages_server: Pages, sandbox: Sandbox) -> Pages:
    sandbox.load_file(DEMO)
    return pages_server
