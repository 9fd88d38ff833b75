"""No secret ever shows: not in logs, output, Slack messages, web pages or exception messages.

Every secret in play is a KNOWN string: the encryption key, the link secret, the Slack bot token
and signing secret, the emulators' client secrets, and every refresh and access token the sandbox
issues (the sandbox modules get a stand-in for `secrets` that hands out known values for the token
sizes they use, and the test checks afterwards that every token in the world is one of them). Then:

- `calsync demo` runs (its stdout and stderr);
- a small soak goes to the app over HTTP (DMs with Slack's retries, some at once, with 429s and 503s
  injected; revoked grants among the reps), plus agents' diagnoses, commands, App Home, buttons;
- the web pages are fetched: agents' reports, the playground, a full reconnect (new tokens issued),
  and /connect and /oauth error pages (tampered, used, foreign links, bad state, denied consent);
- the providers are called directly for every connection, under faults, to collect the exceptions
  (messages, reprs, their causes and tracebacks).

All of it is searched for every known value and its obvious encodings (base64 and url-safe base64
at each alignment, hex, URL-quoted), with every logger at DEBUG (caplog) and stdout/stderr captured.
SQL echo of the sandbox's own tables is left out: they are the emulated providers' storage, which
holds their tokens as Google's database does (the product's tables are searched at rest instead).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import itertools
import json
import logging
import re
import secrets
import ssl
import threading
import traceback
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

import calsync.sandbox.runtime
import calsync.sandbox.scenario
import calsync.sandbox.world.accounts
from calsync.app import Services, build_bolt_app, build_slack_bot, build_troubleshooter, build_web_app
from calsync.cli import cli
from calsync.db import make_engine
from calsync.flows.reconnect import ReconnectLinks
from calsync.links import LinkSigner
from calsync.sandbox.runtime import SandboxRuntime
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.world import (
    FaultKind,
    SandboxAccessToken,
    SandboxGrant,
    SandboxSlackHomeView,
    World,
)
from calsync.settings import Settings
from calsync.syncbackend import migrate
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.models import Base, CalendarConnection
from tests.bot.conftest import SlackHarness, wait_for
from tests.harness import LateApp, MutableClock, Sandbox
from tests.web.conftest import WebHarness

DEMO = Path(__file__).parents[1] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
# 32 known bytes, as the Fernet key CALSYNC_ENCRYPTION_KEY holds (url-safe base64).
KEY_BYTES = b"calsync-test-known-fernet-key-32"
ENCRYPTION_KEY = base64.urlsafe_b64encode(KEY_BYTES).decode()
LINK_SECRET = "Kn0wnLinkSecretZq8Vt3pLm9vW4xRb7Ty2Nc5"
AGENT, SUPPORT_CHANNEL, HELP_CHANNEL = "U0DEMOSAM", "C0SUPPORT", "C0HELP"
REPS = ["U0DEMOANA", "U0DEMOBEN", "U0DEMOCARLA", "U0DEMODEV", "U0DEMOERIN", "U0DEMOJACK", "U0DEMOPIA"]
QUESTIONS = [
    "why isnt my apointment showing in my calender??",
    "my o365 calendar says not connected",
    "every appt shows up twice",
    "how do i reset my salespartner password",
]


# -- known secrets -----------------------------------------------------------------------------------


@dataclass
class Known:
    """Every secret value handed out so far, by name."""

    values: dict[str, str] = field(default_factory=dict)
    _count: Iterator[int] = field(default_factory=itertools.count)

    def add(self, name: str, value: str) -> str:
        self.values[f"{name}#{len(self.values)}"] = value
        return value

    def next(self) -> int:
        return next(self._count)


class KnownSecrets:
    """Stands in for the `secrets` module inside one sandbox module: the token sizes listed come out
    as known strings (recorded in `known`), anything else is as random as usual."""

    def __init__(
        self, label: str, known: Known, *, urlsafe: Iterable[int] = (), hex: Iterable[int] = ()
    ) -> None:
        self.label, self.known = label, known
        self.urlsafe, self.hex = set(urlsafe), set(hex)

    def token_urlsafe(self, nbytes: int | None = None) -> str:
        if nbytes not in self.urlsafe:
            return secrets.token_urlsafe(nbytes)
        value = f"Kn0wn{self.label}{self.known.next():04d}Zq8Vt3pLm9vW4xRb7Ty2"[:32]
        return self.known.add(self.label, value)

    def token_hex(self, nbytes: int | None = None) -> str:
        if nbytes not in self.hex:
            return secrets.token_hex(nbytes)
        size = 2 * (nbytes or 32)
        value = (f"5ec{self.known.next():05x}" + "a5e7c0de" * 8)[:size]
        return self.known.add(self.label, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(secrets, name)


@pytest.fixture(scope="module")
def known() -> Iterator[Known]:
    """Known secrets for this module's sandboxes: client secrets, the Slack bot token and signing
    secret (runtime), refresh tokens (scenario loader), new grants and access tokens (the world)."""
    registry = Known()
    registry.add("encryption key", ENCRYPTION_KEY)
    registry.add("link secret", LINK_SECRET)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            calsync.sandbox.runtime, "secrets", KnownSecrets("Client", registry, urlsafe=[24], hex=[12, 16])
        )
        patch.setattr(calsync.sandbox.scenario, "secrets", KnownSecrets("Refresh", registry, urlsafe=[24]))
        # The world mints grants and access tokens in its accounts part.
        patch.setattr(
            calsync.sandbox.world.accounts, "secrets", KnownSecrets("Token", registry, urlsafe=[24])
        )
        yield registry


def needles(value: str) -> set[str]:
    """`value` and its obvious encodings. Base64 of a value inside a longer encoded text depends on
    where it starts (mod 3 bytes), so each alignment's part that only the value decides is looked for."""
    raw = value.encode()
    found = {value, quote(value, safe=""), quote_plus(value), binascii.hexlify(raw).decode()}
    if value == ENCRYPTION_KEY:
        found |= {KEY_BYTES.decode(), binascii.hexlify(KEY_BYTES).decode()}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode()
            start = -(-offset * 4 // 3)  # characters touched by the padding bytes
            tail = (((offset + len(raw)) % 3) and 4) or 0  # the last group may mix in what follows
            middle = encoded[start : len(encoded) - tail] if tail else encoded[start:].rstrip("=")
            if len(middle) >= 12:
                found.add(middle)
    return found


def leaks(known: Known, haystacks: Iterable[tuple[str, str]]) -> list[str]:
    """Where any known value (in any of its encodings) shows, as readable lines (the first few hits of
    each). One joined text, searched once per needle: tens of thousands of log records stay fast."""
    texts = list(haystacks)
    starts, position = [], 0
    for _where, text in texts:
        starts.append(position)
        position += len(text) + 1
    joined = "\0".join(text for _where, text in texts)
    found = []
    for name, value in known.values.items():
        for needle in needles(value):
            at, hits = joined.find(needle), 0
            while at >= 0 and hits < 3:
                where, text = texts[bisect.bisect_right(starts, at) - 1]
                found.append(f"{name} in {where}: …{joined[max(0, at - 60) : at + len(needle) + 20]!r}…")
                at, hits = joined.find(needle, at + 1), hits + 1
    return found


# -- capture -----------------------------------------------------------------------------------------


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG for every logger: levels lowered and propagation turned on (uvicorn's loggers
    do not propagate), put back afterwards."""
    saved = []
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            saved.append((logger, logger.level, logger.propagate, logger.disabled))
            logger.setLevel(logging.DEBUG)
            logger.propagate, logger.disabled = True, False
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


# What SQLAlchemy's echo logs after a statement: its parameters, the columns and rows it returned.
SQL_DATA = ("[", "Row ", "Col ")


def log_texts(records: Iterable[logging.LogRecord]) -> Iterator[tuple[str, str]]:
    """Each record fully formatted (message, exception and stack), except the parameters of SQL on
    the sandbox's own tables (the emulated providers' storage)."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    last_sql: dict[int | None, str] = {}
    for record in records:
        text = formatter.format(record)
        if record.name.startswith("sqlalchemy.engine"):
            message = record.getMessage()
            if not message.startswith(SQL_DATA):
                last_sql[record.thread] = message
            elif "sandbox_" in last_sql.get(record.thread, ""):
                continue
        yield f"log {record.name}", text


def exception_texts(error: BaseException) -> list[str]:
    """An exception's message, repr and traceback, and the same for its causes and contexts."""
    texts, seen = [], set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *map(repr, current.args)]
        texts.append("".join(traceback.format_exception(current)))
        stack += [current.__cause__, current.__context__]
    return texts


# -- the app ------------------------------------------------------------------------------------------


@dataclass
class App:
    sandbox: Sandbox
    url: str
    slack: SlackHarness
    web: WebHarness
    http: httpx.Client
    signer: LinkSigner


@pytest.fixture(scope="module")
def app(known: Known, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app built by the composition root's factories with the known secrets, serving on an
    ephemeral port, over its own emulators and a fresh SQLite database with the demo world."""
    directory = tmp_path_factory.mktemp("secrets")
    url = f"sqlite:///{directory / 'calsync.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    world = World(engine)
    clock = MutableClock()
    cipher = TokenCipher.from_setting(ENCRYPTION_KEY)
    with SandboxRuntime(world, directory, clock) as endpoints:
        sandbox = Sandbox.build(engine, world, cipher, clock, endpoints, directory)
        late = LateApp()
        server = BackgroundServer(late, lifespan=True)  # bound (its URL known) now, started below
        settings = endpoints.apply(
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                CALSYNC_STATE_DIR=directory,
                CALSYNC_ENCRYPTION_KEY=SecretStr(ENCRYPTION_KEY),
                CALSYNC_LINK_SECRET=SecretStr(LINK_SECRET),
                CALSYNC_AGENT_SLACK_IDS=AGENT,
                CALSYNC_SUPPORT_CHANNEL=SUPPORT_CHANNEL,
                CALSYNC_PUBLIC_URL=server.url,
            )
        )
        services = Services(
            settings=settings,
            engine=engine,
            sessions=sandbox.sessions,
            cipher=cipher,
            clock=clock,
            providers=sandbox.providers,
            world=world,
            sandbox=endpoints,
        )
        troubleshooter = build_troubleshooter(services)
        bot = build_slack_bot(services, troubleshooter)
        late.app = build_web_app(services, build_bolt_app(services, bot), troubleshooter, bot=bot)
        with server:
            sandbox.load_file(DEMO)
            world.slack_add_channel(SUPPORT_CHANNEL, "calendar-support")
            if world.slack_channel(HELP_CHANNEL) is None:
                world.slack_add_channel(HELP_CHANNEL, "calendar-help")
            signer = LinkSigner(LINK_SECRET.encode(), clock)
            with httpx.Client(
                timeout=30, verify=ssl.create_default_context(cafile=str(endpoints.ca_path)), trust_env=False
            ) as http:
                yield App(
                    sandbox,
                    server.url,
                    SlackHarness(sandbox, server.url, endpoints.slack_signing_secret),
                    WebHarness(sandbox, server.url, ReconnectLinks(signer, server.url), troubleshooter, http),
                    http,
                    signer,
                )
    engine.dispose()


def every_token_is_known(sandbox: Sandbox, known: Known) -> None:
    """The stand-in really covered every token the world issued (else the search would miss some)."""
    values = set(known.values.values())
    with sandbox.sessions() as session:
        tokens = [
            *session.scalars(select(SandboxGrant.refresh_token)),
            *session.scalars(select(SandboxAccessToken.token)),
        ]
    assert tokens
    unknown = [token for token in tokens if token.removeprefix("rt-").removeprefix("at-") not in values]
    assert not unknown, f"tokens the test does not know: {unknown}"


def product_tables(sandbox: Sandbox) -> Iterator[tuple[str, str]]:
    """Every row of the product's tables, as text: tokens there are encrypted (and never plain)."""
    with sandbox.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(table.select()):
                yield f"table {table.name}", repr(tuple(row))


def slack_record(sandbox: Sandbox) -> Iterator[tuple[str, str]]:
    """Everything the bot said to Slack: every call's parameters, every message, every App Home."""
    world = sandbox.world
    for call in world.slack_calls():
        yield f"slack call {call.method}", json.dumps(call.params, ensure_ascii=False, default=str)
    for message in world.slack_messages():
        payload = {"text": message.text, "blocks": message.blocks, "attachments": message.attachments}
        yield f"slack message {message.channel}/{message.ts}", json.dumps(payload, ensure_ascii=False)
    with world.sessions() as session:
        for home in session.scalars(select(SandboxSlackHomeView)):
            yield f"app home {home.user_id}", json.dumps(home.view, ensure_ascii=False)


# -- the tests ----------------------------------------------------------------------------------------


def test_the_demo_shows_no_secret(
    known: Known, all_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {
        "CALSYNC_STATE_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "CALSYNC_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "CALSYNC_LINK_SECRET": LINK_SECRET,
        "CALSYNC_PROVIDER_RETRY_BUDGET": "0.5",  # the demo's outage (Quinn) is retried for real: briefly
        "SLACK_BOT_TOKEN": None,
        "SLACK_SIGNING_SECRET": None,
        "GOOGLE_CLIENT_ID": None,
        "MICROSOFT_CLIENT_ID": None,
    }
    result = CliRunner().invoke(cli, ["demo"], env=env)
    assert result.exit_code == 0, result.output
    assert "connection.revoked" in result.output or "revoked" in result.output.lower()
    out, err = capfd.readouterr()
    haystacks = [
        ("demo output", result.output),
        ("stdout", out),
        ("stderr", err),
        *log_texts(all_logs.records),
    ]
    assert sum(name.startswith("Refresh") for name in known.values) >= 17  # the demo's grants were known
    found = leaks(known, haystacks)
    assert not found, "\n".join(found)


def test_the_bot_the_pages_and_the_errors_show_no_secret(
    app: App, known: Known, all_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    sandbox, slack, world = app.sandbox, app.slack, app.sandbox.world
    haystacks: list[tuple[str, str]] = []

    def fetch(label: str, response: httpx.Response) -> httpx.Response:
        haystacks.append((f"{label} {response.status_code} {response.url.path}", response.text))
        haystacks.append((f"{label} headers", json.dumps(dict(response.headers))))
        return response

    # A small soak: 20 questions in DM threads, each delivered 1-4 times as Slack retries (some of the
    # deliveries at the same moment), while the providers throttle and fail now and then.
    faults: list[tuple[str, FaultKind, dict[str, Any]]] = [
        ("google", "rate_limit", {"retry_after": 1}),
        ("microsoft", "unavailable", {"status": 503}),
        ("google", "unavailable", {"status": 503}),
        ("microsoft", "rate_limit", {"retry_after": 1}),
    ]
    for provider, kind, params in faults:
        world.add_fault(provider, kind, params=params, remaining=3)
    threads: list[tuple[str, str]] = []
    events: list[dict[str, Any]] = []
    for index in range(20):  # each question in a DM thread of its own, made before the bot posts
        rep = REPS[index % len(REPS)]
        channel = slack.dm_channel(rep)
        parent = world.slack_post_message(
            channel=channel,
            user="U0CALSYNC",
            text="earlier",
            blocks=None,
            attachments=None,
            now=sandbox.clock(),
        )
        threads.append((channel, parent.ts))
        events.append(
            {
                "type": "message",
                "channel_type": "im",
                "user": rep,
                "channel": channel,
                "text": QUESTIONS[index % len(QUESTIONS)],
                "ts": f"1764001000.{index:06d}",
                "thread_ts": parent.ts,
            }
        )
    sends: list[threading.Thread] = []
    for index, event in enumerate(events):
        for retry in range(1 + index % 4):
            send = threading.Thread(
                target=slack.event,
                args=(event,),
                kwargs={"event_id": f"EvSecrets{index:04d}", "retry": retry},
            )
            send.start()
            sends.append(send)
            if retry % 2:  # every other delivery waits for the ones before it; the rest go at once
                send.join(10)
    for send in sends:
        send.join(30)

    def answered() -> bool:
        return all(
            any(m.thread_ts == ts and "Checking" not in m.text for m in world.slack_messages(channel))
            for channel, ts in threads
        )

    def one_answer_each() -> None:
        for channel, ts in threads:
            assert len([m for m in world.slack_messages(channel) if m.thread_ts == ts]) == 1

    wait_for(answered, timeout=30, what="an answer to every question")
    one_answer_each()

    # Agents and commands: a diagnosis of each rep with its report link, reconnect links, help.
    world.clear_faults()
    for rep in REPS:
        response, _ = slack.command(AGENT, f"diagnose <@{rep}>")
        assert response.status_code == 200
    slack.command("U0DEMOCARLA", "reconnect")
    slack.command("U0DEMOANA", "help")
    slack.command("U0DEMOGHOST", "diagnose")
    slack.event({"type": "app_home_opened", "user": "U0DEMODEV", "tab": "home"})

    def report_links() -> list[str]:
        found = set(re.findall(r"https?://[^\s\"'>|]+/reports/[A-Za-z0-9_.\-]+", _said(sandbox)))
        return sorted(found) if len(found) >= len(REPS) else []

    reports = wait_for(report_links, what="a report link per diagnosis")
    for link in reports:
        fetch("report", app.http.get(link))
    fetch("report (tampered)", app.http.get(reports[0][:-4] + "AAAA"))
    wait_for(lambda: world.slack_home("U0DEMODEV"), what="the App Home")

    # The playground.
    fetch("playground", app.http.get(f"{app.url}/playground"))
    for email in ("carla@northwind.example", "dev@northwind.example", "pia@northwind.example"):
        fetch(
            "playground ask",
            app.http.post(f"{app.url}/playground/ask", data={"rep": email, "q": "not showing"}),
        )

    # Reconnect: a full one for Carla (new tokens issued), then the error pages.
    carla = app.web.link("carla@northwind.example", "google", channel="D0DEMOCARLA")
    done = fetch("reconnect", app.web.consent(carla, account="carla@northwind.example"))
    assert done.status_code == 200, done.text
    fetch("reconnect (used link)", app.http.get(carla))
    fetch("reconnect (tampered)", app.http.get(carla[:-3] + "abc"))
    fetch("reconnect (garbage)", app.http.get(f"{app.url}/connect/google?t=not-a-link"))
    fetch(
        "reconnect (denied)",
        app.web.consent(app.web.link("gina@northwind.example", "google"), decision="deny"),
    )
    fetch(
        "reconnect (someone else)",
        app.web.consent(app.web.link("gina@northwind.example", "google"), account="carla@northwind.example"),
    )
    fetch("callback (bad state)", app.http.get(f"{app.url}/oauth/google/callback?code=4/abc&state=nope"))
    fetch("callback (error)", app.http.get(f"{app.url}/oauth/microsoft/callback?error=access_denied&state=x"))
    an_hour_ago = LinkSigner(LINK_SECRET.encode(), lambda: sandbox.clock() - timedelta(hours=1))
    expired = an_hour_ago.make(
        "reconnect", {"rep": "dev@northwind.example", "provider": "microsoft"}, timedelta(minutes=1)
    )
    fetch("reconnect (expired)", app.http.get(f"{app.url}/connect/microsoft?t={expired}"))

    # The providers called directly for every connection, healthy, revoked and under faults.
    errors: list[BaseException] = []

    async def attempt(call: Awaitable[Any]) -> None:
        try:
            await call
        except Exception as error:
            errors.append(error)

    async def call_providers(emails: set[str] | None = None) -> None:
        """check_grant, list_calendars and list_events for every connection (of `emails`), at once."""
        with sandbox.sessions() as session:
            connections = list(session.scalars(select(CalendarConnection)))
        now, calls = sandbox.clock(), []
        for connection in connections:
            if emails is not None and connection.account_email not in emails:
                continue
            provider = sandbox.providers[connection.provider]
            try:
                auth = connection.authorization(sandbox.cipher)
            except Exception as error:
                errors.append(error)
                continue
            calendar = connection.selected_calendar_id or "primary"
            calls += [
                provider.check_grant(auth),
                provider.list_calendars(auth),
                provider.list_events(auth, calendar, now, now + timedelta(days=1)),
            ]
        await asyncio.gather(*map(attempt, calls))

    asyncio.run(call_providers())  # healthy ones and the demo's revoked and expired grants
    kinds: list[FaultKind] = ["rate_limit", "unavailable", "malformed", "invalid_grant"]
    for kind in kinds:  # then each fault once, on a healthy Google and a healthy Microsoft account
        params = {"retry_after": 30} if kind == "rate_limit" else {}
        for provider in ("google", "microsoft"):
            world.add_fault(provider, kind, params=params, remaining=3)
        asyncio.run(call_providers({"ana@northwind.example", "ben@northwind.example"}))
    refresh_token = "rt-" + next(v for n, v in known.values.items() if n.startswith("Refresh"))
    other_key = TokenCipher.from_setting(
        base64.urlsafe_b64encode(b"another-key-of-thirty-two-bytes!").decode()
    )
    before = len(errors)
    for fails in (
        lambda: other_key.decrypt(sandbox.cipher.encrypt(refresh_token)),  # the wrong key
        lambda: TokenCipher.from_setting(known.add("damaged key", ENCRYPTION_KEY[:-4])),
        lambda: app.signer.read(carla[carla.index("t=") + 2 :][:-3] + "abc", "reconnect"),  # tampered
        lambda: app.signer.read(expired, "reconnect"),  # expired
    ):
        try:
            fails()
        except Exception as error:
            errors.append(error)
    assert len(errors) == before + 4
    assert any("revoked" in str(error).lower() or "AADSTS" in str(error) for error in errors)
    haystacks += [
        (f"exception {type(error).__name__}", text) for error in errors for text in exception_texts(error)
    ]

    one_answer_each()  # still, a while later: no retry answered late
    every_token_is_known(sandbox, known)
    out, err = capfd.readouterr()
    haystacks += [("stdout", out), ("stderr", err), *log_texts(all_logs.records)]
    haystacks += [*slack_record(sandbox), *product_tables(sandbox)]
    assert len(all_logs.records) > 100  # DEBUG really was on
    found = leaks(known, haystacks)
    assert not found, "\n".join(found)


def _said(sandbox: Sandbox) -> str:
    return json.dumps([call.params for call in sandbox.world.slack_calls()], ensure_ascii=False, default=str)
