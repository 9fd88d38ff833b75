"""Reconnect in one click, end to end over HTTP: calsync -> the emulator's consent page -> callback ->
connected, told in Slack; and every way it must refuse, changing nothing.

Plus the service's own tables: the state checks, PKCE, and single use across two instances sharing
a database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import make_engine, make_session_factory, transaction
from calsync.flows.reconnect import Begun, Failure, Outcome, Problem, ReconnectLinks, ReconnectService
from calsync.links import LinkSigner
from calsync.render.words import first_sync_note
from calsync.sandbox.microsoft_common import SANDBOX_TENANT_ID
from calsync.syncbackend import migrate
from calsync.syncbackend.crypto import TokenCipher, generate_key
from calsync.syncbackend.engine import CycleResult
from calsync.syncbackend.models import AuditEntry, CalendarConnection, OAuthSession, User
from calsync.syncbackend.providers.base import Authorization, Calendar, ProviderName
from tests.conftest import FrozenClock
from tests.harness import Sandbox
from tests.web.conftest import HELP_CHANNEL, WebHarness

CARLA = "carla@northwind.example"
DEV = "dev@northwind.example"
GINA = "gina@northwind.example"
THREAD = "1764000000.000100"


# -- helpers ----------------------------------------------------------------------------------------


def connections(sandbox: Sandbox, email: str) -> list[dict[str, Any]]:
    """Every column of the rep's connections (ciphertext included), to prove nothing changed."""
    with sandbox.sessions() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        return [
            {column.name: getattr(c, column.name) for column in CalendarConnection.__table__.columns}
            for c in session.scalars(select(CalendarConnection).where(CalendarConnection.user_id == user.id))
        ]


def connection(sandbox: Sandbox, email: str, provider: str) -> CalendarConnection:
    with sandbox.sessions() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        return session.scalars(
            select(CalendarConnection).where(
                CalendarConnection.user_id == user.id, CalendarConnection.provider == provider
            )
        ).one()


def audit(sandbox: Sandbox, action: str) -> list[AuditEntry]:
    with sandbox.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def dm_texts(sandbox: Sandbox, slack_user: str) -> str:
    channel = sandbox.world.slack_dm_channel(slack_user)
    assert channel is not None, "no DM was opened"
    return "\n".join(json.dumps(m.blocks) + m.text for m in sandbox.world.slack_messages(channel))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# -- the happy paths --------------------------------------------------------------------------------


def test_carla_reconnects_google(web: WebHarness) -> None:
    sandbox = web.sandbox
    before = connection(sandbox, CARLA, "google")
    link = web.link(CARLA, "google", channel=HELP_CHANNEL, thread_ts=THREAD)

    page = web.consent(link)

    assert page.status_code == 200, page.text
    assert "connected again" in page.text and "close this tab" in page.text
    # The first cycle ran (through the engine) before the page: what was waiting is on the calendar.
    shown = html.unescape(page.text)
    assert "‘Tasting demo for Wonka’ is on your calendar now." in shown, re.findall(
        r"[^<>]*sync[^<>]*", shown
    )
    assert [e.title for e in sandbox.world.find_events(appointment_id="carla-wonka")] == [
        "Tasting demo for Wonka"
    ]
    assert page.headers["cache-control"] == "no-store"
    after = connection(sandbox, CARLA, "google")
    assert (after.status, after.status_code, after.status_reason) == ("connected", None, None)
    assert after.active and after.disconnected_at is None
    assert after.authorized_at == after.last_refreshed_at == sandbox.clock()
    assert after.refresh_token_encrypted != before.refresh_token_encrypted
    refresh_token = sandbox.cipher.decrypt(after.refresh_token_encrypted or b"")
    assert refresh_token.encode() not in (after.refresh_token_encrypted or b"")  # encrypted at rest
    found = sandbox.world.grant_by_refresh_token(refresh_token)
    assert found is not None and found[0].status == "valid" and found[1].email == CARLA
    assert after.selected_calendar_id == CARLA  # still there: kept

    # PKCE: the consent page got an S256 challenge, and the token endpoint a verifier that matched it.
    google = sandbox.world.requests("google")
    consent = next(r for r in google if r.path == "/o/oauth2/auth")
    query = parse_qs(consent.query)
    assert query["code_challenge_method"] == ["S256"] and query["access_type"] == ["offline"]
    token = next(
        r for r in google if r.path == "/token" and (r.body or {}).get("grant_type") == "authorization_code"
    )
    assert token.status == 200 and token.body is not None and token.body["code_verifier"] == "[redacted]"
    with sandbox.sessions() as session:
        stored = session.scalars(select(OAuthSession)).one()
    secrets_stored = json.loads(sandbox.cipher.decrypt(stored.flow_encrypted))
    assert s256(secrets_stored["code_verifier"]) == query["code_challenge"][0]
    assert query["state"] == [stored.state] and stored.outcome == "connected"

    # The next diagnosis is clean, and the rep heard about it in a DM and in the thread.
    answer = asyncio.run(web.troubleshooter.diagnose(CARLA))
    assert "connection.ok" in [finding.code for finding in answer.findings]
    dm = dm_texts(sandbox, "U0DEMOCARLA")
    assert "Your Google Calendar is connected again." in dm
    thread = sandbox.world.slack_messages(HELP_CHANNEL, thread_ts=THREAD)
    assert any("connected again" in m.text for m in thread)
    assert [e.result for e in audit(sandbox, "reconnect_started")] == ["started"]
    assert [e.result for e in audit(sandbox, "reconnect_completed")] == ["connected"]


def test_dev_reconnects_outlook_over_msal_and_tls(web: WebHarness) -> None:
    sandbox = web.sandbox
    page = web.consent(web.link(DEV, "microsoft"))

    assert page.status_code == 200, page.text
    assert "Your Outlook is connected again." in page.text
    after = connection(sandbox, DEV, "microsoft")
    assert (after.status, after.status_code) == ("connected", None)
    assert after.selected_calendar_id == "AAMkAGI-dev-calendar"
    assert after.tenant_id == SANDBOX_TENANT_ID, "the tenant, from the sign-in's id token"
    grant = sandbox.world.grant_by_refresh_token(sandbox.cipher.decrypt(after.refresh_token_encrypted or b""))
    assert grant is not None and grant[0].status == "valid"
    microsoft = sandbox.world.requests("microsoft")
    authorize = next(r for r in microsoft if r.path.endswith("/oauth2/v2.0/authorize"))
    assert parse_qs(authorize.query)["code_challenge_method"] == ["S256"]
    redeem = next(
        r
        for r in microsoft
        if r.path.endswith("/token") and (r.body or {}).get("grant_type") == "authorization_code"
    )
    assert redeem.status == 200 and (redeem.body or {}).get("code_verifier") == "[redacted]"
    answer = asyncio.run(web.troubleshooter.diagnose(DEV))
    assert "connection.ok" in [finding.code for finding in answer.findings]
    assert "Your Outlook is connected again." in dm_texts(sandbox, "U0DEMODEV")


def test_gina_gets_her_primary_calendar_when_the_selected_one_is_gone(web: WebHarness) -> None:
    page = web.consent(web.link(GINA, "google"))

    assert page.status_code == 200, page.text
    assert "Q3 Pipeline" in page.text and "no longer exists" in page.text
    after = connection(web.sandbox, GINA, "google")
    assert (after.selected_calendar_id, after.selected_calendar_name) == (GINA, "Gina Rossi")
    assert "no longer exists" in dm_texts(web.sandbox, "U0DEMOGINA")


SWITCH_SCENARIO = """
accounts:
  - provider: google
    email: sam@northwind.example
    name: Sam Lee
    calendars:
      - id: sam@northwind.example
        name: Sam Lee
        primary: true
        events:
          - {id: sam-ev-1, title: Call with Acme, start: "+1d", appointment: sam-acme}
  - provider: microsoft
    email: sam@northwind.example
    name: Sam Lee
    calendars:
      - {id: AAMkAGI-sam-calendar, name: Calendar, primary: true}
users:
  - email: sam@northwind.example
    name: Sam Lee
    slack_user_id: U0SAM
    connections:
      - {provider: google, account: sam@northwind.example, selected_calendar: sam@northwind.example, last_refreshed: "-10m"}
    appointments:
      - id: sam-acme
        title: Call with Acme
        start: "+1d"
        booked: "-2d"
        links: [{connection: sam@northwind.example, event: sam-ev-1, last_pushed: "-2d"}]
"""


def test_switching_from_google_to_outlook(web: WebHarness) -> None:
    sandbox = web.sandbox
    sandbox.load(SWITCH_SCENARIO)
    sam = "sam@northwind.example"

    page = web.consent(web.link(sam, "microsoft"))

    assert page.status_code == 200, page.text
    assert "Outlook is connected" in page.text
    assert "Appointments already synced to Google Calendar stay where they were" in page.text
    rows = {row["provider"]: row for row in connections(sandbox, sam)}
    assert [p for p, row in rows.items() if row["active"]] == ["microsoft"]
    assert rows["microsoft"]["status"] == "connected"
    assert rows["microsoft"]["selected_calendar_id"] == "AAMkAGI-sam-calendar"
    old = rows["google"]
    assert (old["status"], old["status_code"], old["status_reason"]) == (
        "disconnected",
        "switched",
        "switched to Outlook",
    )
    assert old["refresh_token_encrypted"] is None and old["disconnected_at"] == sandbox.clock()
    account = sandbox.world.account("google", sam)
    assert account is not None
    calendar = sandbox.world.google_calendars(account.id)[0]
    assert sandbox.world.google_event(calendar.pk, "sam-ev-1") is not None  # old events stay where they were
    assert "stay where they were" in dm_texts(sandbox, "U0SAM")
    assert [e.result for e in audit(sandbox, "reconnect_completed")] == ["switched"]


# -- refusals: a clear page, the right status, nothing changed --------------------------------------


def test_deny_at_the_consent_screen(web: WebHarness) -> None:
    before = connections(web.sandbox, CARLA)
    page = web.consent(web.link(CARLA, "google"), decision="deny")
    assert page.status_code == 403
    assert "Nothing was connected" in page.text and "@calsync" in page.text
    assert connections(web.sandbox, CARLA) == before
    assert [e.result for e in audit(web.sandbox, "reconnect_failed")] == ["denied"]


def test_deny_at_microsoft(web: WebHarness) -> None:
    before = connections(web.sandbox, DEV)
    page = web.consent(web.link(DEV, "microsoft"), decision="deny")
    assert page.status_code == 403 and "Nothing was connected" in page.text
    assert connections(web.sandbox, DEV) == before


def test_an_expired_link(web: WebHarness) -> None:
    before = connections(web.sandbox, CARLA)
    link = web.link(CARLA, "google")
    web.sandbox.clock.now += timedelta(minutes=30)
    page = web.http.get(link)
    assert page.status_code == 410 and "expired" in page.text
    # The page renders its own markup: the command as code, no literal backticks.
    assert "<code>/calsync reconnect</code>" in page.text and "`" not in page.text
    assert connections(web.sandbox, CARLA) == before


def test_a_link_works_once(web: WebHarness) -> None:
    link = web.link(CARLA, "google")
    assert web.consent(link).status_code == 200
    after_first = connections(web.sandbox, CARLA)
    again = web.http.get(link)
    assert again.status_code == 410 and "already used" in again.text
    assert connections(web.sandbox, CARLA) == after_first


def test_a_link_opened_but_not_finished_is_used_up_too(web: WebHarness) -> None:
    link = web.link(CARLA, "google")
    assert web.http.get(link).status_code == 302
    assert web.http.get(link).status_code == 410


@pytest.mark.parametrize("how", ["payload", "signature", "garbage", "other-provider", "missing"])
def test_a_tampered_link(web: WebHarness, how: str) -> None:
    before = connections(web.sandbox, CARLA)
    link = web.link(CARLA, "google")
    base, _, token = link.partition("?t=")
    body, signature = token.split(".")
    tampered = {
        "payload": f"{base}?t={body[:-3]}xyz.{signature}",
        "signature": f"{base}?t={body}.{signature[::-1]}",
        "garbage": f"{base}?t=%3Cscript%3E",
        "other-provider": f"{base.replace('/google', '/microsoft')}?t={token}",
        "missing": base,
    }[how]
    page = web.http.get(tampered)
    assert page.status_code == 400
    assert "isn't valid" in page.text or "not valid" in page.text
    assert "<script>" not in page.text
    assert connections(web.sandbox, CARLA) == before


def test_someone_elses_account_at_the_consent_screen(web: WebHarness) -> None:
    before = connections(web.sandbox, CARLA)
    page = web.consent(web.link(CARLA, "google"), account="ana@northwind.example")
    assert page.status_code == 403
    text = page.text.replace("&#39;", "'")
    assert "This link is for Carla's calendar" in text
    assert "you signed in as ana@northwind.example" in text
    assert "your own link" in text
    assert connections(web.sandbox, CARLA) == before
    assert [e.result for e in audit(web.sandbox, "reconnect_failed")] == ["wrong_account"]


def test_callback_with_an_unknown_or_reused_state(web: WebHarness) -> None:
    unknown = web.http.get(f"{web.url}/oauth/google/callback", params={"state": "nope", "code": "x"})
    assert unknown.status_code == 400 and "doesn't recognise" in unknown.text.replace("&#39;", "'")
    missing = web.http.get(f"{web.url}/oauth/google/callback")
    assert missing.status_code == 400
    # A finished callback replayed (reload, or someone else with the URL) changes nothing.
    start = web.http.get(web.link(CARLA, "google"))
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    first = web.http.get(
        f"{web.url}/oauth/google/callback", params={"state": state, "error": "access_denied"}
    )
    assert first.status_code == 403
    replay = web.http.get(f"{web.url}/oauth/google/callback", params={"state": state, "code": "x"})
    assert replay.status_code == 410 and "already finished" in replay.text


def test_the_bots_reconnect_buttons_carry_signed_links(web: WebHarness) -> None:
    answer = asyncio.run(web.troubleshooter.answer(CARLA, "my calendar says not connected"))
    urls = [action.url for action in answer.actions if action.kind == "reconnect"]
    assert urls and all(u and u.startswith(f"{web.url}/connect/google?t=") for u in urls)
    assert urls[0] is not None and web.consent(urls[0]).status_code == 200


# -- the service's tables, on SQLite and PostgreSQL -------------------------------------------------


class FakeFlow:
    """Stands in for the provider in the table tests only (the HTTP tests above use the real flows)."""

    def __init__(self, provider: ProviderName, account: str = CARLA) -> None:
        self.provider = provider
        self.redirect_uri = f"https://calsync.test/oauth/{provider}/callback"
        self.account = account

    async def authorize_url(self, *, state: str, login_hint: str | None) -> tuple[str, dict[str, Any]]:
        return f"https://idp.test/auth?state={state}", {"code_verifier": "v" * 64}

    async def exchange(
        self, secrets: Mapping[str, Any], query_params: Mapping[str, str]
    ) -> tuple[Authorization, str]:
        return Authorization(refresh_token="rt-new", access_token="at-new"), self.account


class FakeProvider:
    name = "google"

    async def list_calendars(self, auth: Authorization) -> list[Calendar]:
        return [Calendar(id=CARLA, name="Carla Diaz", primary=True, access_role="owner")]


@pytest.fixture
def tables(database_url: str, clock: FrozenClock) -> tuple[str, TokenCipher, LinkSigner]:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            user = User(email=CARLA, name="Carla Diaz")
            session.add(user)
            session.flush()
            session.add(
                CalendarConnection(
                    user_id=user.id,
                    provider="google",
                    account_email=CARLA,
                    status="error",
                    status_code="revoked",
                    selected_calendar_id=CARLA,
                    created_at=clock(),
                )
            )
    finally:
        engine.dispose()
    return database_url, TokenCipher([generate_key()]), LinkSigner(b"s" * 32, clock)


def service(
    url: str, cipher: TokenCipher, signer: LinkSigner, clock: FrozenClock, account: str = CARLA
) -> tuple[ReconnectService, Engine, sessionmaker[Session]]:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    built = ReconnectService(
        sessions=sessions,
        cipher=cipher,
        signer=signer,
        flows={"google": FakeFlow("google", account), "microsoft": FakeFlow("microsoft", account)},
        providers={"google": FakeProvider()},  # type: ignore[dict-item]
        clock=clock,
    )
    return built, engine, sessions


def _begin(svc: ReconnectService, link: str, provider: str = "google") -> Begun | Failure:
    return asyncio.run(svc.begin(link.partition("?t=")[2], provider))


def test_single_use_across_two_instances_sharing_the_database(
    tables: tuple[str, TokenCipher, LinkSigner], clock: FrozenClock
) -> None:
    url, cipher, signer = tables
    one, engine_one, _ = service(url, cipher, signer, clock)
    two, engine_two, sessions = service(url, cipher, signer, clock)
    try:
        link = ReconnectLinks(signer, "https://calsync.test")(CARLA, "google")
        first = _begin(one, link)
        second = _begin(two, link)
        assert isinstance(first, Begun)
        assert isinstance(second, Failure) and second.problem is Problem.LINK_USED
        assert second.status_code == 410
        with sessions() as session:
            assert len(session.scalars(select(OAuthSession)).all()) == 1
    finally:
        engine_one.dispose()
        engine_two.dispose()


def test_the_claim_itself_is_the_unique_nonce(
    tables: tuple[str, TokenCipher, LinkSigner], clock: FrozenClock
) -> None:
    """Two processes that both passed the "used?" read: the database lets only one insert win."""
    url, cipher, signer = tables
    svc, engine, _ = service(url, cipher, signer, clock)
    try:
        link = signer.read(
            signer.make("reconnect", {"rep": CARLA, "provider": "google"}, timedelta(minutes=30)), "reconnect"
        )
        found = svc.store.rep_and_hint(CARLA, "google", link.nonce)
        assert not isinstance(found, Failure)
        assert svc.store.claim("state-one", found[0], "google", link, {}) is True
        assert svc.store.claim("state-two", found[0], "google", link, {}) is False
    finally:
        engine.dispose()


def _state_of(begun: Begun | Failure) -> str:
    assert isinstance(begun, Begun)
    return parse_qs(urlsplit(begun.redirect_url).query)["state"][0]


@pytest.mark.parametrize(
    ("case", "problem", "status"),
    [
        ("unknown", Problem.UNKNOWN_STATE, 400),
        ("expired", Problem.STATE_EXPIRED, 410),
        ("completed", Problem.STATE_USED, 410),
        ("provider-mismatch", Problem.PROVIDER_MISMATCH, 400),
    ],
)
def test_state_checks(
    tables: tuple[str, TokenCipher, LinkSigner], clock: FrozenClock, case: str, problem: Problem, status: int
) -> None:
    url, cipher, signer = tables
    svc, engine, sessions = service(url, cipher, signer, clock)
    try:
        state = _state_of(_begin(svc, ReconnectLinks(signer, "https://calsync.test")(CARLA, "google")))
        with sessions() as session:
            before = session.scalars(select(CalendarConnection)).one().refresh_token_encrypted
        provider = "google"
        if case == "unknown":
            state = "not-a-state"
        elif case == "expired":
            clock.advance(minutes=21)
        elif case == "completed":
            assert isinstance(asyncio.run(svc.complete("google", {"state": state, "code": "c"})), Outcome)
            with sessions() as session:
                before = session.scalars(select(CalendarConnection)).one().refresh_token_encrypted
        else:
            provider = "microsoft"
        result = asyncio.run(svc.complete(provider, {"state": state, "code": "c"}))
        assert isinstance(result, Failure) and result.problem is problem and result.status_code == status
        with sessions() as session:
            assert session.scalars(select(CalendarConnection)).one().refresh_token_encrypted == before
    finally:
        engine.dispose()


def test_complete_connects_and_stores_tokens_encrypted(
    tables: tuple[str, TokenCipher, LinkSigner], clock: FrozenClock
) -> None:
    url, cipher, signer = tables
    svc, engine, sessions = service(url, cipher, signer, clock)
    try:
        state = _state_of(_begin(svc, ReconnectLinks(signer, "https://calsync.test")(CARLA, "google")))
        outcome = asyncio.run(svc.complete("google", {"state": state, "code": "c"}))
        assert isinstance(outcome, Outcome) and not outcome.calendar_changed
        with sessions() as session:
            row = session.scalars(select(CalendarConnection)).one()
            assert (row.status, row.status_code, row.authorized_at) == ("connected", None, clock())
            assert row.refresh_token_encrypted is not None and b"rt-new" not in row.refresh_token_encrypted
            assert cipher.decrypt(row.refresh_token_encrypted) == "rt-new"
            stored = session.get(OAuthSession, state)
            assert stored is not None and b"vvvv" not in stored.flow_encrypted
    finally:
        engine.dispose()


def test_wrong_account_changes_nothing(
    tables: tuple[str, TokenCipher, LinkSigner], clock: FrozenClock
) -> None:
    url, cipher, signer = tables
    svc, engine, sessions = service(url, cipher, signer, clock, account="ana@northwind.example")
    try:
        state = _state_of(_begin(svc, ReconnectLinks(signer, "https://calsync.test")(CARLA, "google")))
        result = asyncio.run(svc.complete("google", {"state": state, "code": "c"}))
        assert isinstance(result, Failure) and result.problem is Problem.WRONG_ACCOUNT
        assert result.account_email == "ana@northwind.example" and result.rep_name == "Carla Diaz"
        with sessions() as session:
            row = session.scalars(select(CalendarConnection)).one()
            assert (row.status, row.refresh_token_encrypted) == ("error", None)
    finally:
        engine.dispose()


def cycle(titles: tuple[str, ...] = (), status: str = "ok") -> CycleResult:
    return CycleResult(1, "google", CARLA, status, pushed_titles=titles)  # type: ignore[arg-type]


# (what the first cycle did, what the rep reads)
FIRST_SYNC = [
    pytest.param(
        cycle(("Tasting demo for Wonka",)),
        "\u2018Tasting demo for Wonka\u2019 is on your calendar now.",
        id="one",
    ),
    pytest.param(cycle(("A", "B", "C")), "\u2018A\u2019 and 2 others are on your calendar now.", id="three"),
    pytest.param(
        cycle(), "Everything is in sync: your calendar has all your upcoming appointments.", id="nothing"
    ),
    pytest.param(cycle(status="error"), "The first sync didn't get through just now", id="error"),
    pytest.param(cycle(status="busy"), "The first sync is running", id="busy"),
]


@pytest.mark.parametrize(("result", "says"), FIRST_SYNC)
async def test_the_first_sync_runs_before_the_page_and_the_page_says_what_it_did(
    tables: tuple[str, TokenCipher, LinkSigner], clock: FrozenClock, result: CycleResult, says: str
) -> None:
    url, cipher, signer = tables
    svc, engine, _ = service(url, cipher, signer, clock)
    ran: list[int] = []

    async def first_sync(connection_id: int) -> CycleResult:
        ran.append(connection_id)
        return result

    svc.sync = first_sync
    try:
        begun = await svc.begin(
            ReconnectLinks(signer, "https://calsync.test")(CARLA, "google").partition("?t=")[2], "google"
        )
        outcome = await svc.complete("google", {"state": _state_of(begun), "code": "c"})
        assert isinstance(outcome, Outcome) and ran == [outcome.connection_id]
        assert first_sync_note(outcome.first_sync).startswith(says)
    finally:
        engine.dispose()


async def test_a_slow_first_sync_goes_on_after_the_page_which_says_it_is_running(
    tables: tuple[str, TokenCipher, LinkSigner], clock: FrozenClock
) -> None:
    url, cipher, signer = tables
    svc, engine, _ = service(url, cipher, signer, clock)
    release, finished = asyncio.Event(), asyncio.Event()

    async def first_sync(connection_id: int) -> CycleResult:
        await release.wait()
        finished.set()
        return cycle(("Late one",))

    svc.sync, svc.first_sync_wait = first_sync, 0.05
    try:
        begun = await svc.begin(
            ReconnectLinks(signer, "https://calsync.test")(CARLA, "google").partition("?t=")[2], "google"
        )
        outcome = await svc.complete("google", {"state": _state_of(begun), "code": "c"})
        assert isinstance(outcome, Outcome) and outcome.first_sync is None
        assert first_sync_note(outcome.first_sync).startswith(
            "The first sync is running — expect your upcoming"
        )
        release.set()
        await asyncio.wait_for(finished.wait(), 5)  # not cancelled with the request: it finished
    finally:
        engine.dispose()


class RacingFlow(FakeFlow):
    """Redeems the code only once every racer has got this far, so the completions that follow
    reach the database at the same moment."""

    def __init__(self, provider: ProviderName, barrier: threading.Barrier) -> None:
        super().__init__(provider)
        self.barrier = barrier

    async def exchange(
        self, secrets: Mapping[str, Any], query_params: Mapping[str, str]
    ) -> tuple[Authorization, str]:
        await asyncio.to_thread(self.barrier.wait, 20)
        return await super().exchange(secrets, query_params)


@pytest.mark.parametrize("trial", range(4))
@pytest.mark.parametrize(
    "backstop",
    [pytest.param(True, id="lock-and-index"), pytest.param(False, id="lock-alone")],
)
@pytest.mark.parametrize(
    "provider",
    [pytest.param("microsoft", id="switch-to-outlook"), pytest.param("google", id="reconnect-google")],
)
def test_sign_ins_completing_at_the_same_moment_leave_one_active_connection(
    tables: tuple[str, TokenCipher, LinkSigner],
    clock: FrozenClock,
    provider: ProviderName,
    backstop: bool,
    trial: int,
) -> None:
    """The issue's race: on PostgreSQL, 3 of 4 trials left two active Outlook connections. Each racer
    is its own instance (service, engine, connection pool) in its own thread. `lock-alone` drops
    the unique index (migration 0005's; later migrations keep their columns, which the models
    need): the rep's row lock by itself keeps one connection."""
    url, cipher, signer = tables
    if not backstop:
        dropping = make_engine(url)
        with transaction(make_session_factory(dropping)) as session:
            session.execute(text("DROP INDEX uq_calendar_connections_active_account"))
        dropping.dispose()
    racers = 3
    barrier = threading.Barrier(racers)
    engines = [make_engine(url) for _ in range(racers)]
    try:
        instances = [
            ReconnectService(
                sessions=make_session_factory(engine),
                cipher=cipher,
                signer=signer,
                flows={provider: RacingFlow(provider, barrier)},
                providers={"google": FakeProvider()},  # type: ignore[dict-item]
                clock=clock,
            )
            for engine in engines
        ]
        links = ReconnectLinks(signer, "https://calsync.test")
        states = [_state_of(_begin(svc, links(CARLA, provider), provider)) for svc in instances]

        def complete(n: int) -> Outcome | Failure:
            return asyncio.run(instances[n].complete(provider, {"state": states[n], "code": f"code-{n}"}))

        with ThreadPoolExecutor(racers) as pool:
            outcomes = list(pool.map(complete, range(racers)))

        assert all(isinstance(outcome, Outcome) for outcome in outcomes), outcomes
        with make_session_factory(engines[0])() as session:
            active = session.scalars(select(CalendarConnection).where(CalendarConnection.active)).all()
            everything = session.scalars(select(CalendarConnection)).all()
        assert [(c.provider, c.account_email) for c in active] == [(provider, CARLA)]
        assert len([c for c in everything if c.provider == provider]) == 1, "the racers found one another's"
    finally:
        for engine in engines:
            engine.dispose()
