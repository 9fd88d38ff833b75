"""Every way a provider can fail, end to end: a fault in the emulators (or the grant's state in the
sandbox world) -> the real Google/Microsoft clients -> a whole diagnosis by the `Troubleshooter` ->
the finding a rep and an agent see, and whether a Reconnect button is offered.

A dead grant is a `connection.*` error with its cause and a Reconnect action. Anything transient
(rate limit, 5xx, timeout, garbage, a certificate we do not trust) is an `unknown` `provider.*`
finding — never a disconnection and never a Reconnect button.

And calsync's own database being unreachable: `/healthz` fails and a rep who asks gets one plain
sentence in Slack, not a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from calsync.app import Services, build_bolt_app, build_slack_bot, build_web_app
from calsync.db import make_engine, make_session_factory
from calsync.diagnostics.answer import Answer
from calsync.diagnostics.checks import ALL_CHECKS
from calsync.diagnostics.findings import Finding
from calsync.diagnostics.troubleshooter import QuestionMatcher, Troubleshooter
from calsync.knowledge.loader import KnowledgeBase
from calsync.render.blocks import ACTION_CHECK_AGAIN
from calsync.sandbox.google_emulator import build_google_app
from calsync.sandbox.microsoft_emulator import build_microsoft_app
from calsync.sandbox.runtime import GOOGLE_CLIENT_ID, MICROSOFT_CLIENT_ID
from calsync.sandbox.server import BackgroundServer, TLSFiles
from calsync.settings import Settings
from calsync.syncbackend.providers.base import CalendarProvider
from calsync.syncbackend.providers.google import GoogleProvider
from calsync.syncbackend.providers.microsoft import MicrosoftProvider
from tests.bot.conftest import SlackHarness, wait_for
from tests.harness import DISCONNECTIONS, RecordingSleep, Sandbox
from tests.robustness.conftest import Robust, leaks

ANA = "ana@acme.example"  # Google
BEN = "ben@acme.example"  # Microsoft
_REPS = {
    "google": (ANA, "ana@acme.example", "Ana Alvarez"),
    "microsoft": (BEN, "AAMk-ben-calendar", "Calendar"),
}
# Short enough that the four hang rows stay cheap, long enough for a loopback TLS handshake.
TIMEOUT = 1.0
# Smaller than any backoff: each fault is seen once, not retried (retries have tests of their own).
RETRY_BUDGET = 0.2

Client = Literal["emulator", "front", "foreign_ca"]


@dataclass(frozen=True)
class Setup:
    """How a row breaks the provider: the grant in the sandbox world, emulator faults, or (where the
    emulator cannot say it) a token endpoint answer put in front of the emulator."""

    grant: str = "{status: valid}"
    faults: str = "[]"
    client: Client = "emulator"
    front: tuple[int, dict[str, Any]] | None = None


def grant(description: str) -> Setup:
    return Setup(grant=json.dumps({"status": "revoked", "description": description}))


def aadsts(code: int, suberror: str | None = None) -> Setup:
    spec: dict[str, Any] = {"status": "revoked", "aadsts": code}
    if suberror is not None:
        spec["suberror"] = suberror
    return Setup(grant=json.dumps(spec))


def fault(provider: str, endpoint: str, kind: str, **params: Any) -> Setup:
    spec = {"provider": provider, "endpoint": endpoint, "kind": kind, "params": params}
    return Setup(faults=json.dumps([spec]))


def front(status: int, body: dict[str, Any]) -> Setup:
    return Setup(client="front", front=(status, body))


class Has:
    """Equal to any string containing `part` (for evidence compared as a dict)."""

    def __init__(self, part: str) -> None:
        self.part = part

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.part in other

    def __hash__(self) -> int:
        return hash(self.part)

    def __repr__(self) -> str:
        return f"Has({self.part!r})"


OK = ("connection.ok", "ok")


def dead(code: str) -> list[tuple[str, str]]:
    return [(code, "error")]


def down(code: str, *, grant_ok: bool = False) -> list[tuple[str, str]]:
    return [(code, "unknown"), *([OK] if grant_ok else [])]


ENTRA_CA_BLOCKED = {
    "error": "interaction_required",
    "error_description": "AADSTS53003: Access has been blocked by Conditional Access policies.",
    "error_codes": [53003],
    "suberror": "",
}
ENTRA_LOGIN_REQUIRED = {
    "error": "login_required",
    "error_description": "AADSTS50058: A silent sign-in request was sent but no user is signed in.",
    "error_codes": [50058],
}
GOOGLE_REAUTH = {
    "error": "invalid_grant",
    "error_description": "reauth related error (invalid_rapt)",
    "error_uri": "https://support.google.com/a/answer/9368756",
    "error_subtype": "invalid_rapt",
}

# provider, what breaks, the connection.*/provider.* findings (code, severity), evidence they carry.
DEAD_GRANTS = [
    # Google's invalid_grant descriptions, as `grant_cause` reads them.
    pytest.param(
        "google", grant("Token has been expired or revoked."), dead("connection.revoked"), {"cause": "revoked"},
        id="google-expired-or-revoked",
    ),
    pytest.param(
        "google", grant("Token has been revoked."), dead("connection.revoked"), {"cause": "revoked"},
        id="google-revoked",
    ),
    pytest.param(
        "google", grant("Token has expired."), dead("connection.expired"), {"cause": "expired"},
        id="google-expired",
    ),
    pytest.param(
        "google", grant("Account has been deleted"), dead("connection.revoked"), {"cause": "account_deleted"},
        id="google-account-deleted",
    ),
    pytest.param(
        "google", grant("Bad Request"), dead("connection.revoked"), {"cause": "unknown"}, id="google-unknown",
    ),
    pytest.param(
        "google", fault("google", "token", "invalid_grant", description="Token has expired."),
        dead("connection.expired"), {"cause": "expired"}, id="google-expired-by-fault",
    ),
    pytest.param(
        "google", front(400, GOOGLE_REAUTH), dead("connection.sign_in_required"),
        {"cause": "interaction_required"}, id="google-invalid-rapt",
    ),
    # Microsoft's AADSTS codes, as `classify_token_error` reads them.
    pytest.param(
        "microsoft", aadsts(50173), dead("connection.revoked"),
        {"cause": "password_changed", "codes": ["AADSTS50173"]}, id="microsoft-50173-password-changed",
    ),
    pytest.param(
        "microsoft", aadsts(70008), dead("connection.expired"), {"cause": "expired", "codes": ["AADSTS70008"]},
        id="microsoft-70008-expired",
    ),
    pytest.param(
        "microsoft", aadsts(700082), dead("connection.expired"),
        {"cause": "inactive", "codes": ["AADSTS700082"]}, id="microsoft-700082-inactive",
    ),
    pytest.param(
        "microsoft", aadsts(65001), dead("connection.consent_removed"),
        {"cause": "consent_removed", "codes": ["AADSTS65001"]}, id="microsoft-65001-consent-removed",
    ),
    pytest.param(
        "microsoft", aadsts(50076), dead("connection.sign_in_required"),
        {"cause": "mfa_required", "error": "interaction_required"}, id="microsoft-50076-mfa",
    ),
    pytest.param(
        "microsoft", aadsts(50158), dead("connection.sign_in_required"),
        {"cause": "mfa_required", "error": "interaction_required"}, id="microsoft-50158-conditional-access",
    ),
    pytest.param(
        "microsoft", aadsts(50079), dead("connection.sign_in_required"), {"cause": "mfa_required"},
        id="microsoft-50079-mfa-enrollment",
    ),
    pytest.param(
        "microsoft", aadsts(50034), dead("connection.revoked"), {"cause": "account_deleted"},
        id="microsoft-50034-user-gone",
    ),
    pytest.param(
        "microsoft", aadsts(50057), dead("connection.revoked"), {"cause": "account_deleted"},
        id="microsoft-50057-user-disabled",
    ),
    pytest.param(
        "microsoft", aadsts(9002313), dead("connection.revoked"), {"cause": "unknown"},
        id="microsoft-unknown-code",
    ),
    pytest.param(
        "microsoft", aadsts(90094, suberror="consent_required"), dead("connection.consent_removed"),
        {"cause": "consent_removed"}, id="microsoft-unmapped-code-consent-required",
    ),
    pytest.param(
        "microsoft", front(400, ENTRA_CA_BLOCKED), dead("connection.sign_in_required"),
        {"cause": "interaction_required", "error": "interaction_required"},
        id="microsoft-interaction-required",
    ),
    pytest.param(
        "microsoft", front(400, ENTRA_LOGIN_REQUIRED), dead("connection.sign_in_required"),
        {"cause": "interaction_required", "error": "login_required"}, id="microsoft-login-required",
    ),
    pytest.param(
        "microsoft", fault("microsoft", "token", "invalid_grant", aadsts=700082), dead("connection.expired"),
        {"cause": "inactive"}, id="microsoft-700082-by-fault",
    ),
]  # fmt: skip


def _transient_row(
    provider: str, endpoint: str, setup: Setup, code: str, evidence: dict[str, Any], name: str
) -> Any:
    # A token endpoint failure hides the grant; a failure after it (calendars) leaves connection.ok.
    expected = down(code, grant_ok=endpoint != "token")
    return pytest.param(provider, setup, expected, evidence, id=f"{provider}-{endpoint}-{name}")


def _transient_rows() -> list[Any]:
    rows: list[Any] = []
    for provider in ("google", "microsoft"):
        styles = ("html", "truncated", "shape") if provider == "google" else ("truncated-json",)
        for endpoint in ("token", "calendars"):
            rows.append(
                _transient_row(
                    provider,
                    endpoint,
                    fault(provider, endpoint, "rate_limit", retry_after=30),
                    "provider.rate_limited",
                    {"retry_after_seconds": 30},
                    "429-retry-after",
                )
            )
            rows += [
                _transient_row(
                    provider,
                    endpoint,
                    fault(provider, endpoint, "unavailable", status=status),
                    "provider.unavailable",
                    {"status": status},
                    str(status),
                )
                for status in (500, 502, 503, 504)
            ]
            rows.append(
                _transient_row(
                    provider,
                    endpoint,
                    fault(provider, endpoint, "hang", seconds=2 * TIMEOUT),
                    "provider.timeout",
                    {},
                    "hang",
                )
            )
            rows += [
                _transient_row(
                    provider,
                    endpoint,
                    fault(
                        provider, endpoint, "malformed", **({"style": style} if provider == "google" else {})
                    ),
                    "provider.malformed",
                    {},
                    f"malformed-{style}",
                )
                for style in styles
            ]
    rows.append(
        pytest.param(
            "microsoft",
            Setup(client="foreign_ca"),
            down("provider.unavailable"),
            {"detail": Has("TLS certificate verification failed")},
            id="microsoft-tls-untrusted-certificate",
        )
    )
    return rows


TRANSIENT = _transient_rows()


# -- the clients ---------------------------------------------------------------------------------------


class TokenFront:
    """The real emulator, except that its token endpoint answers `answer` while one is set.

    Only for answers the emulator cannot give (a bare `interaction_required`, Google's `invalid_rapt`):
    the client libraries still do discovery, TLS and the token request for real."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.answer: tuple[int, dict[str, Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.answer is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/token")
        ):
            status, body = self.answer
            while (await receive()).get("more_body", False):
                pass  # read the form to the end, as the token endpoint would, before answering
            await JSONResponse(body, status_code=status)(scope, receive, send)
            return
        await self.inner(scope, receive, send)


@dataclass
class Clients:
    emulator: dict[str, CalendarProvider]
    front: dict[str, CalendarProvider]
    fronts: dict[str, TokenFront]
    foreign_ca: dict[str, CalendarProvider]
    sleep: RecordingSleep = field(default_factory=RecordingSleep)

    def for_row(self, provider: str, setup: Setup) -> dict[str, CalendarProvider]:
        for name, shim in self.fronts.items():
            shim.answer = setup.front if name == provider else None
        chosen = {"emulator": self.emulator, "front": self.front, "foreign_ca": self.foreign_ca}[setup.client]
        return {**self.emulator, provider: chosen[provider]}


def _providers(
    sandbox: Sandbox, google_url: str, microsoft_url: str, ca: Path, sleep: RecordingSleep
) -> dict[str, CalendarProvider]:
    endpoints = sandbox.endpoints
    return {
        "google": GoogleProvider(
            api_url=google_url,
            token_url=f"{google_url}/token",
            client_id=GOOGLE_CLIENT_ID,
            client_secret=endpoints.google_client_secret,
            timeout=TIMEOUT,
            retry_budget=RETRY_BUDGET,
            sleep=sleep,
            clock=sandbox.clock,
        ),
        "microsoft": MicrosoftProvider(
            authority=f"{microsoft_url}/common",
            graph_url=f"{microsoft_url}/v1.0",
            client_id=MICROSOFT_CLIENT_ID,
            client_secret=endpoints.microsoft_client_secret,
            ca_bundle=ca,
            timeout=TIMEOUT,
            retry_budget=RETRY_BUDGET,
            sleep=sleep,
            clock=sandbox.clock,
        ),
    }


@pytest.fixture(scope="module")
def clients(sandbox_session: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    sandbox = sandbox_session
    endpoints = sandbox.endpoints
    sleep = RecordingSleep()
    tls = TLSFiles.generate(tmp_path_factory.mktemp("front-tls"))
    foreign = TLSFiles.generate(tmp_path_factory.mktemp("foreign-tls"))  # a CA that signed nothing we serve
    fronts = {
        "google": TokenFront(
            build_google_app(
                sandbox.world,
                client_id=GOOGLE_CLIENT_ID,
                client_secret=endpoints.google_client_secret,
                clock=sandbox.clock,
            )
        ),
        "microsoft": TokenFront(
            build_microsoft_app(
                sandbox.world,
                client_id=MICROSOFT_CLIENT_ID,
                client_secret=endpoints.microsoft_client_secret,
                clock=sandbox.clock,
            )
        ),
    }
    with (
        BackgroundServer(fronts["google"]) as google_front,
        BackgroundServer(fronts["microsoft"], tls=tls) as microsoft_front,
    ):
        built = Clients(
            emulator=_providers(
                sandbox, endpoints.google_url, endpoints.microsoft_url, endpoints.ca_path, sleep
            ),
            front=_providers(sandbox, google_front.url, microsoft_front.url, tls.ca_path, sleep),
            fronts=fronts,
            foreign_ca=_providers(
                sandbox, endpoints.google_url, endpoints.microsoft_url, foreign.ca_path, sleep
            ),
            sleep=sleep,
        )
        yield built
        # msal keeps a keep-alive connection open, which would hold up the front server's shutdown.
        for group in (built.emulator, built.front, built.foreign_ca):
            microsoft = group["microsoft"]
            assert isinstance(microsoft, MicrosoftProvider)
            asyncio.run(microsoft.aclose())


@pytest.fixture(scope="module")
def knowledge(robust_app: Robust) -> KnowledgeBase:
    return robust_app.troubleshooter.knowledge


@pytest.fixture(scope="module")
def matcher(robust_app: Robust) -> QuestionMatcher:
    return robust_app.troubleshooter.matcher


def one_rep(provider: str, setup: Setup) -> str:
    email, calendar, name = _REPS[provider]
    return f"""
    accounts:
      - provider: {provider}
        email: {email}
        grant: {setup.grant}
        calendars: [{{id: {calendar}, name: {name}, primary: true}}]
    users:
      - email: {email}
        connections:
          - {{provider: {provider}, account: {email}, selected_calendar: {calendar}, last_refreshed: "-10m"}}
    faults: {setup.faults}
    """


async def diagnose(
    sandbox: Sandbox,
    knowledge: KnowledgeBase,
    matcher: QuestionMatcher,
    providers: Mapping[str, CalendarProvider],
    email: str,
) -> Answer:
    troubleshooter = Troubleshooter(
        sessions=sandbox.sessions,
        providers=providers,
        cipher=sandbox.cipher,
        knowledge=knowledge,
        matcher=matcher,
        checks=ALL_CHECKS,
        clock=sandbox.clock,
        reconnect_url=lambda rep, provider, **where: f"https://calsync.test/connect/{provider}?for={rep}",
    )
    return await troubleshooter.answer(email, "why isn't my appointment showing")


def connection_findings(findings: tuple[Finding, ...]) -> list[tuple[str, str]]:
    return sorted(
        (f.code, f.severity.value) for f in findings if f.code.startswith(("connection.", "provider."))
    )


# -- the matrix --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "setup", "expected", "evidence"), DEAD_GRANTS + TRANSIENT)
async def test_provider_failure_becomes_the_right_finding(
    sandbox: Sandbox,
    clients: Clients,
    knowledge: KnowledgeBase,
    matcher: QuestionMatcher,
    provider: str,
    setup: Setup,
    expected: list[tuple[str, str]],
    evidence: dict[str, Any],
) -> None:
    email = _REPS[provider][0]
    sandbox.load(one_rep(provider, setup))
    providers = clients.for_row(provider, setup)
    try:
        answer = await diagnose(sandbox, knowledge, matcher, providers, email)
    finally:
        # Graph's client lives per event loop; left open, its keep-alive connection outlives the test.
        for client in providers.values():
            if isinstance(client, MicrosoftProvider):
                await client.aclose()

    assert connection_findings(answer.findings) == sorted(expected)
    [main] = [
        f
        for f in answer.findings
        if f.code.startswith(("connection.", "provider.")) and f.severity.value in ("error", "unknown")
    ]
    assert main.provider == provider
    assert {key: main.evidence.get(key) for key in evidence} == evidence
    reconnects = [action.provider for action in answer.actions if action.kind == "reconnect"]
    codes = {finding.code for finding in answer.findings}
    if main.code.startswith("connection."):
        assert reconnects == [provider]
        assert answer.headline.startswith(main.summary)
    else:
        # Transient: never a disconnection, never a Reconnect button, and said so in words.
        assert not DISCONNECTIONS & codes
        assert reconnects == []
        assert not any(code.endswith(".skipped") for code in codes)
        assert "not a disconnection" in main.summary
        assert "nothing needs reconnecting" in main.hint
    assert answer.actions[-1].kind == "contact_support"


# -- calsync's own database ----------------------------------------------------------------------------


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


UNREACHABLE_DATABASES = [
    pytest.param(
        lambda tmp: f"postgresql+psycopg://calsync@127.0.0.1:{_closed_port()}/calsync", id="postgres-down"
    ),
    pytest.param(lambda tmp: f"sqlite:///{tmp}/no/such/dir/calsync.db", id="sqlite-missing-dir"),
]


REP_SLACK_ID = "U0ROBUST"
HELP_CHANNEL = "C0HELP"
# What a rep is told instead of an answer (render/replies.py SOMETHING_WENT_WRONG): it is us, not them,
# and to try again. The database is not named: a rep can do nothing with that word.
DATABASE_DOWN_WORDS = ("on our side", "try again")


@pytest.fixture(scope="module", params=UNREACHABLE_DATABASES)
def database_down_server(
    request: pytest.FixtureRequest,
    sandbox_session: Sandbox,
    robust_app: Robust,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SlackHarness]:
    """The app built by the composition root over a database it cannot reach; Slack, the calendars
    and the sandbox world (where the Slack emulator keeps its messages) are fine."""
    sandbox = sandbox_session
    url = request.param(tmp_path_factory.mktemp("unreachable"))
    engine = make_engine(
        url, **({"connect_args": {"connect_timeout": 2}} if url.startswith("postgres") else {})
    )
    endpoints = sandbox.endpoints
    settings = endpoints.apply(Settings(_env_file=None, CALSYNC_STATE_DIR=sandbox.tmp_dir))  # type: ignore[call-arg]
    services = Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        cipher=sandbox.cipher,
        clock=sandbox.clock,
        providers=sandbox.providers,
        world=sandbox.world,
        sandbox=endpoints,
    )
    shared = robust_app.troubleshooter  # its trained matcher: training another costs seconds
    troubleshooter = Troubleshooter(
        sessions=services.sessions,
        providers=services.providers,
        cipher=services.cipher,
        knowledge=shared.knowledge,
        matcher=shared.matcher,
        checks=shared.checks,
        clock=services.clock,
        reconnect_url=shared.reconnect_url,
    )
    bot = build_slack_bot(services, troubleshooter)
    bolt_app = build_bolt_app(services, bot)
    assert bolt_app is not None
    try:
        with BackgroundServer(
            build_web_app(services, bolt_app, troubleshooter, bot=bot), lifespan=True
        ) as server:
            yield SlackHarness(sandbox, server.url, endpoints.slack_signing_secret)
    finally:
        engine.dispose()


@pytest.fixture
def database_down(database_down_server: SlackHarness, sandbox: Sandbox) -> SlackHarness:
    sandbox.world.slack_add_user(REP_SLACK_ID, ANA, "Ana Alvarez")
    sandbox.world.slack_add_channel(HELP_CHANNEL, "calendar-help")
    return database_down_server


def _texts(messages: list[Any]) -> str:
    return "\n".join(m.text + json.dumps(m.blocks or [], ensure_ascii=False) for m in messages)


def test_healthz_fails_while_the_database_is_unreachable(database_down: SlackHarness) -> None:
    response = httpx.get(f"{database_down.url}/healthz", timeout=10)
    assert response.status_code == 503
    assert response.json() == {"ok": False, "database": "down"}


Probe = Callable[[], list[Any]]


def _dm(slack: SlackHarness) -> tuple[httpx.Response, Probe]:
    response, channel = slack.dm(REP_SLACK_ID, "why isn't my appointment showing?")
    return response, lambda: slack.sandbox.world.slack_messages(channel)


def _mention(slack: SlackHarness) -> tuple[httpx.Response, Probe]:
    event = {
        "type": "app_mention",
        "user": REP_SLACK_ID,
        "channel": HELP_CHANNEL,
        "ts": "1764000900.000100",
        "text": "<@U0CALSYNC> why isn't my appointment showing?",
    }
    return slack.event(event), lambda: slack.sandbox.world.slack_messages(HELP_CHANNEL)


def _command(slack: SlackHarness) -> tuple[httpx.Response, Probe]:
    response, channel = slack.command(REP_SLACK_ID, "diagnose")
    return response, lambda: slack.ephemeral_for(REP_SLACK_ID, channel)


def _check_again(slack: SlackHarness) -> tuple[httpx.Response, Probe]:
    world = slack.sandbox.world
    channel = slack.dm_channel(REP_SLACK_ID)
    earlier = world.slack_post_message(
        channel=channel, user="U0CALSYNC", text="an earlier answer", blocks=None, attachments=None,
        now=slack.sandbox.clock(),
    )  # fmt: skip
    value = json.dumps({"article": "not-showing", "question": "why isn't my appointment showing"})
    response = slack.click(REP_SLACK_ID, channel, earlier.ts, ACTION_CHECK_AGAIN, value)
    return response, lambda: [m for m in world.slack_messages(channel) if m.text != earlier.text]


@pytest.mark.parametrize(
    "ask",
    [
        pytest.param(_dm, id="dm"),
        pytest.param(_mention, id="mention"),
        pytest.param(_command, id="command"),
        pytest.param(_check_again, id="check-again-button"),
    ],
)
def test_a_rep_gets_a_plain_sentence_while_the_database_is_unreachable(
    database_down: SlackHarness, ask: Callable[[SlackHarness], tuple[httpx.Response, Probe]]
) -> None:
    response, replies = ask(database_down)

    assert response.status_code == 200
    said = _texts(wait_for(replies, what="calsync's reply"))
    assert all(words in said.lower() for words in DATABASE_DOWN_WORDS), said
    assert leaks(said) == [], said
    assert "Checking your calendar connection" not in said
    assert [call.method for call in database_down.sandbox.world.slack_calls() if not call.ok] == []


def _page_paths(slack: SlackHarness) -> list[str]:
    """A page of each kind, with a genuine link where one is needed (the sandbox's link secret)."""
    from datetime import timedelta

    from calsync.links import LinkSigner, load_or_create_link_secret

    sandbox = slack.sandbox
    settings = Settings(_env_file=None, CALSYNC_STATE_DIR=sandbox.tmp_dir)  # type: ignore[call-arg]
    signer = LinkSigner(load_or_create_link_secret(settings, sandbox=True), sandbox.clock)
    report = signer.make("report", {"agent": "U0DEMOSAM", "rep": ANA}, timedelta(minutes=15))
    reconnect = signer.make("reconnect", {"rep": ANA, "provider": "google"}, timedelta(minutes=30))
    fleet = signer.make("fleet", {"agent": "U0DEMOSAM"}, timedelta(minutes=15))
    return [
        f"/fleet/{fleet}",
        f"/fleet/{fleet}/stats.csv",
        "/playground",
        f"/playground/ask?rep={ANA}&q=why+isnt+my+appointment+showing",
        f"/reports/{report}",
        f"/connect/google?t={reconnect}",
        "/oauth/google/callback?state=some-state&code=some-code",
    ]


def test_pages_answer_503_with_a_plain_sentence_while_the_database_is_unreachable(
    database_down: SlackHarness,
) -> None:
    from calsync.web.hardening import CONTENT_SECURITY_POLICY

    for path in _page_paths(database_down):
        response = httpx.get(f"{database_down.url}{path}", timeout=30, follow_redirects=False)
        assert response.status_code == 503, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        assert all(words in response.text.lower() for words in DATABASE_DOWN_WORDS), path
        assert response.headers["retry-after"] == "30"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        expected = "same-origin" if path.startswith("/playground") else "no-referrer"
        assert response.headers["referrer-policy"] == expected, path
        assert leaks(response.text) == [], path
        for word in ("Traceback", "OperationalError", "sqlite", "psycopg", "Internal Server Error"):
            assert word not in response.text, (path, word)
