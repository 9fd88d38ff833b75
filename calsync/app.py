"""Composition root and the `calsync` command line.

Everything is built here, on demand, from `Settings`: nothing is built at import time and no
module keeps a client, session or app in a global. Each command builds what it needs and calls a
service; the logic lives in the packages, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import make_engine, make_session_factory
from calsync.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import APIRouter, FastAPI
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    from calsync.bot.slackbot import SlackBot
    from calsync.diagnostics.answer import Answer
    from calsync.diagnostics.troubleshooter import Troubleshooter
    from calsync.flows.notices import Notices
    from calsync.knowledge.loader import KnowledgeBase
    from calsync.links import LinkSigner
    from calsync.sandbox.runtime import SandboxEndpoints
    from calsync.sandbox.world import World
    from calsync.syncbackend.crypto import TokenCipher
    from calsync.syncbackend.engine import CycleResult, DisconnectNotifier, HoldNotifier, SyncEngine
    from calsync.syncbackend.holds import Decision
    from calsync.syncbackend.providers.base import CalendarProvider
    from calsync.syncbackend.schedule import SyncPolicy


cli = typer.Typer(
    name="calsync",
    help="Live calendar-sync diagnostics for SalesPartner reps, in Slack and on the command line.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_cli = typer.Typer(help="The local emulators of Google, Microsoft and Slack, and scenario files.")
db_cli = typer.Typer(help="The sync-backend database.")
holds_cli = typer.Typer(help="Cancellations a sync held back for a support agent: list them, decide.")
cli.add_typer(sandbox_cli, name="sandbox")
cli.add_typer(db_cli, name="db")
cli.add_typer(holds_cli, name="holds")


def stderr() -> Console:
    """Notes for people go to stderr so stdout stays clean (JSON where --json asks for it)."""
    return Console(stderr=True)


# -- composition ------------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """What a running calsync is made of, built once per process from `Settings` by `open_services`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    cipher: TokenCipher
    clock: Callable[[], datetime]
    providers: dict[str, CalendarProvider]
    world: World | None = None  # the sandbox world, in sandbox mode only
    sandbox: SandboxEndpoints | None = None


def build_providers(settings: Settings, clock: Callable[[], datetime]) -> dict[str, CalendarProvider]:
    """One provider per configured calendar service; every URL comes from settings."""
    from calsync.syncbackend.providers.google import GoogleProvider
    from calsync.syncbackend.providers.microsoft import MicrosoftProvider

    providers: dict[str, CalendarProvider] = {}
    if settings.google_client_id and settings.google_client_secret:
        providers["google"] = GoogleProvider(
            api_url=settings.google_api_url,
            token_url=settings.google_token_url,
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret.get_secret_value(),
            timeout=settings.provider_timeout,
            retry_budget=settings.provider_retry_budget,
            clock=clock,
        )
    if settings.microsoft_client_id and settings.microsoft_client_secret:
        providers["microsoft"] = MicrosoftProvider(
            authority=settings.microsoft_authority,
            graph_url=settings.microsoft_graph_url,
            client_id=settings.microsoft_client_id,
            client_secret=settings.microsoft_client_secret.get_secret_value(),
            ca_bundle=settings.microsoft_ca_bundle,
            timeout=settings.provider_timeout,
            retry_budget=settings.provider_retry_budget,
            clock=clock,
        )
    return providers


@contextmanager
def open_services(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utc_now, announce: bool = True
) -> Iterator[Services]:
    """Build everything from settings. In sandbox mode (no provider settings) the schema is brought up
    to date and the emulators are started on loopback ports for the life of the block."""
    from calsync.sandbox.runtime import SandboxRuntime
    from calsync.sandbox.world import World
    from calsync.syncbackend import migrate
    from calsync.syncbackend.crypto import load_or_create_key

    settings = settings or Settings()
    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        if not settings.sandbox_mode:
            yield Services(
                settings=settings,
                engine=engine,
                sessions=make_session_factory(engine),
                cipher=load_or_create_key(settings),
                clock=clock,
                providers=build_providers(settings, clock),
            )
            return
        migrate.upgrade(url)
        world = World(engine)
        with SandboxRuntime(world, settings.state_dir, clock) as endpoints:
            if announce:
                _note(
                    "No Google/Microsoft settings: using the sandbox emulators "
                    f"(Google {endpoints.google_url}, Microsoft {endpoints.microsoft_url})."
                )
            sandboxed = endpoints.apply(settings)
            yield Services(
                settings=sandboxed,
                engine=engine,
                sessions=make_session_factory(engine),
                cipher=load_or_create_key(settings),
                clock=clock,
                providers=build_providers(sandboxed, clock),
                world=world,
                sandbox=endpoints,
            )
    finally:
        engine.dispose()


def build_troubleshooter(services: Services) -> Troubleshooter:
    """The knowledge base, the matcher and every check, over the services' database and providers."""
    from calsync.diagnostics.checks import ALL_CHECKS
    from calsync.diagnostics.troubleshooter import Troubleshooter
    from calsync.knowledge.loader import load_articles
    from calsync.knowledge.matcher import Matcher
    from calsync.syncbackend.reconnect import ReconnectLinks

    knowledge = load_articles()
    return Troubleshooter(
        sessions=services.sessions,
        providers=quota_providers(services),
        cipher=services.cipher,
        knowledge=knowledge,
        matcher=Matcher.build(knowledge),
        checks=ALL_CHECKS,
        clock=services.clock,
        # Signed, expiring, single-use links bound to the rep (and the thread the answer was given in).
        reconnect_url=ReconnectLinks(build_link_signer(services), services.settings.public_url),
    )


REPORT_LINK_TTL_MINUTES = 15


def build_link_signer(services: Services) -> LinkSigner:
    """Signs and reads the links calsync hands out (reconnect, reports): `CALSYNC_LINK_SECRET`, or in
    sandbox mode a secret generated once into the state dir."""
    from calsync.links import LinkSigner, load_or_create_link_secret

    secret = load_or_create_link_secret(services.settings, sandbox=services.world is not None)
    return LinkSigner(secret, services.clock)


def build_reconnect(
    services: Services,
    bot: SlackBot | None = None,
    troubleshooter: Troubleshooter | None = None,
    engine: SyncEngine | None = None,
) -> APIRouter:
    """`/connect/{provider}` and `/oauth/{provider}/callback`: the OAuth flows, the first sync cycle
    (through the engine and its lease), the fresh diagnosis afterwards, and the Slack note (when
    there is a bot with a token)."""
    from calsync.syncbackend.oauth import GoogleOAuth, MicrosoftOAuth, OAuthFlow
    from calsync.syncbackend.providers.microsoft import MicrosoftProvider
    from calsync.syncbackend.reconnect import Outcome, ReconnectService
    from calsync.web.reconnect import create_reconnect_router

    settings = services.settings
    public_url = settings.public_url.rstrip("/")
    flows: dict[str, OAuthFlow] = {}
    if settings.google_client_id and settings.google_client_secret:
        flows["google"] = GoogleOAuth(
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret.get_secret_value(),
            auth_url=settings.google_auth_url,
            token_url=settings.google_token_url,
            api_url=settings.google_api_url,
            redirect_uri=f"{public_url}/oauth/google/callback",
            timeout=settings.provider_timeout,
            clock=services.clock,
        )
    microsoft = services.providers.get("microsoft")
    if isinstance(microsoft, MicrosoftProvider):  # msal is built once, by the provider
        flows["microsoft"] = MicrosoftOAuth(microsoft, redirect_uri=f"{public_url}/oauth/microsoft/callback")
    checker = troubleshooter or (bot.troubleshooter if bot is not None else build_troubleshooter(services))
    notices = bot.notices if bot is not None else None  # over the bot's one Web API client

    async def diagnose(email: str) -> Answer:
        return await checker.diagnose(email, actor="reconnect")

    async def notify(outcome: Outcome) -> None:
        if notices is not None:
            await notices.reconnected(outcome)

    service = ReconnectService(
        sessions=services.sessions,
        cipher=services.cipher,
        signer=build_link_signer(services),
        flows=flows,
        providers=services.providers,
        clock=services.clock,
        diagnose=diagnose,
        notify=notify,
        sync=(engine or build_sync_engine(services)).sync_connection,
    )
    return create_reconnect_router(service)


def build_sync_policy(settings: Settings) -> SyncPolicy:
    """The schedule from settings; a malformed value is a clear error at start-up, not later."""
    from datetime import time, timedelta
    from zoneinfo import ZoneInfo

    from calsync.syncbackend.schedule import SyncPolicy

    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    try:
        start_text, end_text = settings.business_hours.split("-")
        start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
        business_days = frozenset(
            days.index(day.strip().lower()[:3]) for day in settings.business_days.split(",") if day.strip()
        )
        zone = ZoneInfo(settings.business_time_zone)
    except (ValueError, KeyError) as error:
        raise typer.BadParameter(
            f"CALSYNC_BUSINESS_HOURS / _DAYS / _TIME_ZONE: {error} (e.g. 08:00-18:00, mon,tue,wed,thu,fri, "
            "Europe/Berlin)"
        ) from None
    return SyncPolicy(
        interval=timedelta(minutes=settings.sync_interval_minutes),
        business_interval=timedelta(minutes=settings.sync_business_interval_minutes),
        business_start=start,
        business_end=end,
        business_days=business_days,
        time_zone=zone,
        jitter=settings.sync_jitter,
        health_interval=timedelta(minutes=settings.health_interval_minutes),
        mass_cancel_count=settings.mass_cancel_count,
        mass_cancel_share=settings.mass_cancel_share,
    )


def quota_providers(services: Services) -> dict[str, CalendarProvider]:
    """The providers, each call counted against its account's quota in the shared database, so every
    instance together stays inside Google's and Microsoft's per-account limits."""
    from calsync.syncbackend.quota import DatabaseLimiter, QuotaProvider

    limiter = DatabaseLimiter(services.sessions)
    return {name: QuotaProvider(provider, limiter) for name, provider in services.providers.items()}


def build_sync_engine(
    services: Services, notify: DisconnectNotifier | None = None, notify_hold: HoldNotifier | None = None
) -> SyncEngine:
    """The sync engine over the same providers the diagnostics use, each kept inside its quota; what
    it says in Slack (`notify`, `notify_hold`) comes from `wire_notifications`."""
    from calsync.syncbackend.engine import SyncEngine

    return SyncEngine(
        sessions=services.sessions,
        providers=quota_providers(services),
        cipher=services.cipher,
        clock=services.clock,
        policy=build_sync_policy(services.settings),
        notify=notify,
        notify_hold=notify_hold,
    )


def build_slack_client(services: Services) -> AsyncWebClient | None:
    """The one Slack Web API client for the bot token, None when none is configured. Built once by
    the composition and passed to everything that talks to Slack. Makes no network call."""
    from slack_sdk.web.async_client import AsyncWebClient

    token = services.settings.slack_bot_token
    if token is None:
        return None
    return AsyncWebClient(token=token.get_secret_value(), base_url=services.settings.slack_api_url)


def build_notices(
    services: Services, troubleshooter: Troubleshooter, client: AsyncWebClient | None
) -> Notices | None:
    """What calsync says in Slack on its own (`flows.notices`), over `client`; None without one."""
    from calsync.flows.notices import Notices

    if client is None:
        return None
    return Notices(
        client=client,
        sessions=services.sessions,
        reconnect_url=troubleshooter.reconnect_url,
        support_channel=services.settings.support_channel,
    )


class EngineNotifications(TypedDict):
    notify: DisconnectNotifier | None
    notify_hold: HoldNotifier | None


def wire_notifications(services: Services, notices: Notices | None) -> EngineNotifications:
    """What the engine says through Slack, when a bot token is configured: the DM to a rep whose
    grant stopped working, and the support channel's question about held cancellations. The
    engine's constructor arguments: `build_sync_engine(services, **wire_notifications(...))`."""
    if notices is None:
        return {"notify": None, "notify_hold": None}
    return {
        "notify": notices.disconnected,
        "notify_hold": notices.hold if services.settings.support_channel else None,
    }


def build_slack_bot(
    services: Services,
    troubleshooter: Troubleshooter,
    sync_engine: SyncEngine | None = None,
    *,
    client: AsyncWebClient | None = None,
    notices: Notices | None = None,
) -> SlackBot:
    """The Slack surface over `client` (the one Web API client; built here when not passed) and
    `notices` (built over that client when not passed)."""
    from calsync.bot.people import People
    from calsync.bot.slackbot import SlackBot
    from calsync.bot.work import Work
    from calsync.flows.answers import Answers
    from calsync.flows.reconnect_links import ReconnectLinks
    from calsync.flows.support import Support

    settings = services.settings
    client = client if client is not None else build_slack_client(services)
    return SlackBot(
        troubleshooter=troubleshooter,
        sessions=services.sessions,
        clock=services.clock,
        people=People(
            services.sessions, agent_ids=settings.agent_ids, agent_usergroup=settings.agent_usergroup
        ),
        work=Work(services.sessions, services.clock),
        answers=Answers(
            troubleshooter=troubleshooter,
            support_contact=settings.support_contact,
            report_url=build_report_url(services),
            sync_now=sync_engine.sync_user if sync_engine is not None else None,
        ),
        support=Support(
            troubleshooter=troubleshooter,
            sessions=services.sessions,
            clock=services.clock,
            channel=settings.support_channel,
            contact=settings.support_contact,
        ),
        links=ReconnectLinks(
            reconnect_url=troubleshooter.reconnect_url,
            sessions=services.sessions,
            clock=services.clock,
            support_contact=settings.support_contact,
        ),
        client=client,
        notices=notices if notices is not None else build_notices(services, troubleshooter, client),
    )


def build_engine_and_bot(services: Services, troubleshooter: Troubleshooter) -> tuple[SyncEngine, SlackBot]:
    """The sync engine and the Slack surface over one Web API client: the notices first (they need
    only the client), then the engine (which takes them), then the bot (which takes the engine)."""
    client = build_slack_client(services)
    notices = build_notices(services, troubleshooter, client)
    engine = build_sync_engine(services, **wire_notifications(services, notices))
    return engine, build_slack_bot(services, troubleshooter, engine, client=client, notices=notices)


def build_report_url(services: Services) -> Callable[[str, str], str]:
    """The agent's "Open full report" link: signed, 15 minutes, sent only to them (ephemeral)."""
    from datetime import timedelta

    signer = build_link_signer(services)
    public_url = services.settings.public_url.rstrip("/")

    def report_url(agent: str, rep: str) -> str:
        token = signer.make(
            "report", {"agent": agent, "rep": rep}, timedelta(minutes=REPORT_LINK_TTL_MINUTES)
        )
        return f"{public_url}/reports/{token}"

    return report_url


def build_bolt_app(services: Services, bot: SlackBot) -> AsyncApp | None:
    """The Bolt app over the bot's Web API client, or None when no Slack bot token is configured.
    Makes no network call."""
    from slack_bolt.async_app import AsyncApp

    from calsync.bot.listeners import register

    if bot.client is None:
        return None
    secret = signing_secret(services.settings)
    app = AsyncApp(
        signing_secret=secret,
        client=bot.client,  # Bolt takes the token from it
        # Without a signing secret (Socket Mode only) requests cannot be verified, so there is no HTTP.
        request_verification_enabled=secret is not None,
    )
    register(app, bot)
    return app


def build_pages(
    services: Services, troubleshooter: Troubleshooter, *, sandbox: bool | None = None
) -> APIRouter:
    """The agent's report page and, in sandbox mode (`sandbox`, default: the services have a sandbox
    world), the playground."""
    from calsync.web.pages import PagesConfig, create_pages_router

    sandboxed = services.world is not None if sandbox is None else sandbox
    return create_pages_router(
        troubleshooter=troubleshooter,
        sessions=services.sessions,
        clock=services.clock,
        links=build_link_signer(services),
        config=PagesConfig(
            sandbox=sandboxed,
            public_url=services.settings.public_url,
            examples=DEMO_QUESTIONS if sandboxed else (),
            problems=_demo_problems() if sandboxed else {},
        ),
    )


def _demo_problems() -> dict[str, str]:
    """Each demo rep's one-line problem, from the demo scenario (for the playground's rep list)."""
    import yaml

    try:
        users = (yaml.safe_load(DEMO_SCENARIO.read_text(encoding="utf-8")) or {}).get("users") or []
    except (OSError, yaml.YAMLError):
        return {}
    return {
        str(user["email"]).lower(): str(user["problem"])
        for user in users
        if isinstance(user, dict) and user.get("email") and user.get("problem")
    }


def build_web_app(
    services: Services,
    bolt_app: AsyncApp | None,
    troubleshooter: Troubleshooter | None = None,
    *,
    sandbox: bool | None = None,
    bot: SlackBot | None = None,
) -> FastAPI:
    """The HTTP app; with a troubleshooter it also serves the pages (`build_pages`). The reconnect
    flow is always served; with `bot` it also tells the rep in Slack afterwards."""
    from calsync.web.app import create_web_app, database_is_up
    from calsync.web.slack_verify import SlackVerifier

    routers: list[APIRouter] = [build_reconnect(services, bot, troubleshooter)]
    if troubleshooter is not None:
        routers.append(build_pages(services, troubleshooter, sandbox=sandbox))
    secret = signing_secret(services.settings)
    return create_web_app(
        bolt_app=bolt_app,
        healthy=database_is_up(services.engine),
        routers=routers,
        slack_verifier=SlackVerifier(secret) if bolt_app is not None and secret else None,
    )


def signing_secret(settings: Settings) -> str | None:
    """`SLACK_SIGNING_SECRET`, None when unset or blank."""
    secret = settings.slack_signing_secret.get_secret_value().strip() if settings.slack_signing_secret else ""
    return secret or None


def refuse_unverifiable_http(settings: Settings) -> None:
    """Fail closed: a bot token served over HTTP without a signing secret would take unsigned requests
    (a forged `/calsync diagnose` with a foreign response_url would receive a diagnosis)."""
    if settings.slack_bot_token is not None and not settings.slack_app_token and not signing_secret(settings):
        _note(
            "calsync serve: SLACK_SIGNING_SECRET is not set, so requests to /slack/events cannot be "
            "verified; set it (Basic Information → Signing Secret) or use Socket Mode (SLACK_APP_TOKEN)."
        )
        raise typer.Exit(2)


def make_http_server(web: FastAPI, host: str, port: int) -> uvicorn.Server:
    """uvicorn as calsync serves (and benchmarks/ack_bench.py measures) it.

    No per-request access log: it is written on the event loop, so a slow stderr delays the next
    ack (Bolt and calsync log what matters). The start-up heap — models, the matcher, the app — is
    frozen out of the garbage collector, whose full collections of it paused acks by ~150 ms every
    few seconds under load (BENCHMARKS.md).
    """
    import gc

    import uvicorn

    gc.collect()
    gc.freeze()
    return uvicorn.Server(uvicorn.Config(web, host=host, port=port, log_level="info", access_log=False))


def _load_demo_if_empty(services: Services) -> bool:
    """In sandbox mode, give an empty database the demo world so the playground has reps to try."""
    from sqlalchemy import func, select

    from calsync.sandbox.scenario import load_scenario
    from calsync.syncbackend.models import User

    if services.world is None:
        return False
    with services.sessions() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return False
    load_scenario(
        DEMO_SCENARIO,
        sessions=services.sessions,
        world=services.world,
        cipher=services.cipher,
        clock=services.clock,
    )
    return True


def _note(message: str) -> None:
    """One plain line on stderr: no markup, no wrapping (URLs and error texts stay intact)."""
    stderr().print(message, markup=False, highlight=False, soft_wrap=True)


def _safe_url(url: str) -> str:
    """A database URL fit for printing: the password hidden."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _run_migration(action: str, revision: str) -> None:
    """Run one migration command, turning an unreachable database or a bad revision into one line."""
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    from calsync.settings import Settings
    from calsync.syncbackend import migrate

    url = Settings().resolved_database_url
    try:
        if action == "upgrade":
            migrate.upgrade(url, revision)
        else:
            migrate.downgrade(url, revision)
        now = migrate.current(url)
    except OperationalError as error:
        _note(f"calsync db {action}: cannot reach {_safe_url(url)}: {error.orig}")
        raise typer.Exit(1) from None
    except CommandError as error:  # an unknown revision, for instance
        _note(f"calsync db {action}: {error}")
        raise typer.Exit(2) from None
    head = " (head)" if now is not None and now == migrate.head() else ""
    _note(f"Database at revision {now or 'base'}{head}: {_safe_url(url)}")


@db_cli.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Create or update the sync-backend tables (Alembic migrations)."""
    _run_migration("upgrade", revision)


@db_cli.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help='Target revision, or "base" to drop every table.'),
) -> None:
    """Take the sync-backend schema back to REVISION."""
    _run_migration("downgrade", revision)


@db_cli.command("current")
def db_current() -> None:
    """Print the database's schema revision ("base" when never migrated) on stdout."""
    from sqlalchemy.exc import OperationalError

    from calsync.settings import Settings
    from calsync.syncbackend import migrate

    url = Settings().resolved_database_url
    try:
        now = migrate.current(url)
    except OperationalError as error:
        _note(f"calsync db current: cannot reach {_safe_url(url)}: {error.orig}")
        raise typer.Exit(1) from None
    typer.echo(now or "base")
    head = migrate.head()
    if now != head:
        _note(f"Behind the newest revision {head}: run `calsync db upgrade`.")


# -- question matcher: match, ask, demo ------------------------------------------------------------

DEMO_SCENARIO = Path(__file__).parent / "sandbox" / "scenarios" / "demo.yaml"
# (rep, question): each rep asks about their own problem; the last one is off-topic.
# (rep, their calendar provider, what SalesPartner books for them) for the demo's sync story.
DEMO_SYNC_STORIES: tuple[tuple[str, str, str], ...] = (
    ("ana@northwind.example", "google", "Renewal call with Hooli"),
    ("ben@northwind.example", "microsoft", "Onboarding with Vandelay"),
)
DEMO_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("carla@northwind.example", "why isnt my apointment showing in my calender??"),
    ("dev@northwind.example", "my o365 calendar says not connected"),
    ("kate@northwind.example", "just booked a demo with pied piper, where is it?"),
    ("leo@northwind.example", "every appt shows up twice"),
    ("farid@northwind.example", "my appointments aren't in my calendar"),
    ("quinn@northwind.example", "why isn't my appointment showing"),
    ("nora@northwind.example", "what happened to my renewal call with massive dynamic?"),
    ("maya@northwind.example", "switched to outlook, why are my old meetings still in google?"),
    ("ana@northwind.example", "how do i reset my salespartner password"),
)


@cli.command("match")
def match_command() -> None:
    """Read questions (one per line) on stdin; write one JSON line per question on stdout."""
    import sys

    from calsync.knowledge.loader import load_articles
    from calsync.knowledge.matcher import Matcher
    from calsync.knowledge.streaming import stream_match, utf8_stdout

    matcher = Matcher.build(load_articles())
    stream_match(matcher, sys.stdin.buffer, utf8_stdout())


def _print_answer(
    answer: Answer, knowledge: KnowledgeBase, *, as_json: bool, evidence: bool, details: bool = False
) -> None:
    import json

    from calsync.knowledge.streaming import utf8_stdout
    from calsync.render.text import render_answer

    if as_json:
        utf8_stdout()  # JSON is UTF-8 whatever the locale says
        typer.echo(json.dumps(answer.to_json(), ensure_ascii=False, default=str))
        return
    utf8_stdout(text=True)
    # Not cropped: a reconnect URL stays whole on its own line, ready to copy.
    Console().print(render_answer(answer, knowledge, evidence=evidence, details=details), crop=False)


def _answer(
    email: str, question: str | None, *, as_json: bool, evidence: bool, details: bool = False
) -> None:
    import asyncio
    import getpass

    from calsync.diagnostics.troubleshooter import UnknownUser

    with open_services() as services:
        troubleshooter = build_troubleshooter(services)
        try:
            answer = asyncio.run(troubleshooter.answer(email, question, actor=f"cli:{getpass.getuser()}"))
        except UnknownUser:
            _note(f"No SalesPartner user has the email {email!r}; nothing was checked.")
            raise typer.Exit(2) from None
    _print_answer(answer, troubleshooter.knowledge, as_json=as_json, evidence=evidence, details=details)


@cli.command("ask")
def ask_command(
    email: str = typer.Argument(..., help="The rep asking (their SalesPartner email)."),
    question: str = typer.Argument(..., help="The question, as the rep wrote it."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON on stdout."),
    details: bool = typer.Option(False, "--details", help="Also list every finding (Slack's Details)."),
) -> None:
    """Answer QUESTION for the rep EMAIL as the bot would: the cause, its fix and steps, actions."""
    _answer(email, question, as_json=as_json, evidence=False, details=details)


@cli.command("diagnose")
def diagnose_command(
    email: str = typer.Argument(..., help="The rep to diagnose (their SalesPartner email)."),
    as_json: bool = typer.Option(False, "--json", help="Print the diagnosis as JSON on stdout."),
) -> None:
    """Run every check for the rep EMAIL and show the whole picture, evidence included (for agents)."""
    _answer(email, None, as_json=as_json, evidence=True)


@cli.command("demo")
def demo_command() -> None:
    """Load the demo scenario into the sandbox and show reps asking real questions, answered live."""
    import asyncio

    from calsync.knowledge.streaming import utf8_stdout
    from calsync.render.text import render_answer
    from calsync.sandbox.scenario import load_scenario

    settings = Settings()
    # The demo never touches a configured database or real providers: the embedded default only.
    update: dict[str, object] = {"google_client_id": None, "microsoft_client_id": None}
    if settings.database_url:
        update["database_url"] = f"sqlite:///{(settings.state_dir / 'demo.db').resolve()}"
    settings = settings.model_copy(update=update)
    utf8_stdout(text=True)
    console = Console()
    with open_services(settings) as services:
        assert services.world is not None
        load_scenario(
            DEMO_SCENARIO,
            sessions=services.sessions,
            world=services.world,
            cipher=services.cipher,
            clock=services.clock,
        )
        _note(f"Loaded the demo scenario into {_safe_url(settings.resolved_database_url)}.")
        troubleshooter = build_troubleshooter(services)

        async def ask_all() -> list[Answer]:
            return [
                await troubleshooter.answer(email, question, actor="demo")
                for email, question in DEMO_QUESTIONS
            ]

        for answer in asyncio.run(ask_all()):
            console.rule()
            console.print(render_answer(answer, troubleshooter.knowledge))
        console.rule("The sync engine, live: a booking travels to the calendar, an edit travels back")
        for line in asyncio.run(_sync_story(services)):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.rule()
    console.print(
        'Try your own: calsync ask carla@northwind.example "why isn\'t my appointment showing" '
        "(reps: ana, ben, carla, dev, erin, farid, gina, hugo, iris, jack, kate, leo, maya, nora, omar, pia, "
        "quinn @northwind.example), or calsync diagnose EMAIL for an agent's view.",
        markup=False,
        highlight=False,
    )


def _print_cycles(results: list[CycleResult], *, as_json: bool) -> None:
    import json

    from calsync.render.words import cycle_summary

    if as_json:
        typer.echo(json.dumps([result.as_dict() for result in results], indent=2))
        return
    for result in results:
        typer.echo(cycle_summary(result))


@cli.command("sync")
def sync_command(
    email: str = typer.Argument(..., help="The rep's SalesPartner email."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per connection on stdout."),
) -> None:
    """Run one sync cycle now for each of the rep's active calendar connections (push and pull)."""
    import asyncio

    with open_services() as services:
        troubleshooter = build_troubleshooter(services)
        notices = build_notices(services, troubleshooter, build_slack_client(services))
        engine = build_sync_engine(services, **wire_notifications(services, notices))
        results = asyncio.run(engine.sync_user(email))
        if not results:
            _note(f"{email} has no active calendar connection (or is not a SalesPartner user).")
            raise typer.Exit(1)
        _print_cycles(results, as_json=as_json)
        if any(result.status == "error" for result in results):
            raise typer.Exit(1)


@holds_cli.callback(invoke_without_command=True)
def holds_list(
    context: typer.Context,
    show_all: bool = typer.Option(False, "--all", help="Decided holds too, not only the open ones."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list on stdout."),
) -> None:
    """List the held cancellations (open ones by default)."""
    if context.invoked_subcommand is not None:
        return
    import json

    from calsync.syncbackend.holds import Holds

    with open_services(announce=False) as services:
        found = Holds(services.sessions, services.clock).find(status=None if show_all else "open")
    if as_json:
        typer.echo(json.dumps([hold.as_dict() for hold in found], indent=2))
        return
    if not found:
        _note("No held cancellations." if not show_all else "No holds at all.")
        return
    for hold in found:
        titles = ", ".join(f"{a.title} ({a.start:%Y-%m-%d %H:%M} UTC)" for a in hold.appointments)
        decided = f" by {hold.decided_by}" if hold.decided_by else ""
        typer.echo(
            f"hold {hold.id} [{hold.status}{decided}] {hold.user_email} ({hold.provider}, "
            f"{hold.account_email}), {hold.detected_at:%Y-%m-%d %H:%M} UTC: {len(hold.appointments)} of "
            f"{hold.upcoming} upcoming: {titles}"
        )


def _decide_hold(hold_id: int, decision: Decision, by: str) -> None:
    from calsync.syncbackend.holds import Holds, UnknownHold

    with open_services(announce=False) as services:
        try:
            decided = Holds(services.sessions, services.clock).decide(hold_id, decision, actor=by)
        except UnknownHold:
            _note(f"There is no hold {hold_id}; `calsync holds --all` lists them.")
            raise typer.Exit(1) from None
    if decided.already:
        _note(
            f"Hold {hold_id} was already decided ({decided.hold.status}) by {decided.hold.decided_by}; nothing changed."
        )
        raise typer.Exit(1)
    done = "cancelled" if decision == "cancel" else "kept booked (back on the calendar in the next sync)"
    typer.echo(f"Hold {hold_id}: {decided.changed} appointment{'s' if decided.changed != 1 else ''} {done}.")


@holds_cli.command("cancel")
def holds_cancel(
    hold_id: int = typer.Argument(..., help="The hold's id (`calsync holds`)."),
    by: str = typer.Option(..., "--by", help="Who decides (recorded in the audit log)."),
) -> None:
    """Cancel the held appointments, as if the rep had deleted each event."""
    _decide_hold(hold_id, "cancel", by)


@holds_cli.command("keep")
def holds_keep(
    hold_id: int = typer.Argument(..., help="The hold's id (`calsync holds`)."),
    by: str = typer.Option(..., "--by", help="Who decides (recorded in the audit log)."),
) -> None:
    """Keep the held appointments booked; they go back on the calendar in the next sync."""
    _decide_hold(hold_id, "keep", by)


@cli.command("worker")
def worker_command(
    once: bool = typer.Option(False, "--once", help="One round (due cycles, health checks, DMs), then exit."),
    every: float = typer.Option(5.0, help="Seconds between two rounds."),
    batch: int = typer.Option(100, help="Most connections one round takes on."),
) -> None:
    """Run the sync engine: every connection's cycle when it is due, the health sweep, the DMs to reps
    whose calendar disconnected. Run as many as you like: a connection is worked on by one at a time."""
    import asyncio
    import signal

    from calsync.syncbackend.engine import TickResult, run_worker, tick

    def report(result: TickResult) -> None:
        done = [cycle for cycle in result.cycles if cycle.status in ("ok", "error")]
        if done or result.sweep.checked or result.told:
            _note(
                f"{len(done)} cycles ({sum(c.status == 'error' for c in done)} failed), "
                f"{result.sweep.checked} grants checked ({result.sweep.disconnected} disconnected), "
                f"{result.told} reps told"
            )

    with open_services() as services:
        troubleshooter = build_troubleshooter(services)
        notices = build_notices(services, troubleshooter, build_slack_client(services))
        engine = build_sync_engine(services, **wire_notifications(services, notices))
        _note(f"calsync worker {engine.worker_id} started.")

        async def run() -> None:
            if once:
                report(await tick(engine, batch=batch))
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await run_worker(engine, stop, every=every, batch=batch, report=report)

        asyncio.run(run())


async def _sync_story(services: Services) -> list[str]:
    from calsync.sandbox.story import render, sync_story
    from calsync.syncbackend.appointments import Appointments

    assert services.world is not None
    engine = build_sync_engine(services)
    appointments = Appointments(services.sessions, services.clock)
    lines: list[str] = []
    for rep, provider, title in DEMO_SYNC_STORIES:
        steps = await sync_story(
            engine=engine,
            appointments=appointments,
            world=services.world,
            clock=services.clock,
            rep_email=rep,
            provider=provider,
            title=title,
        )
        lines.extend([*render(steps), ""])
    return lines


@sandbox_cli.command("load")
def sandbox_load(
    path: Path = typer.Argument(..., help="A scenario file (YAML); see the README's 'Scenario files'."),
) -> None:
    """Put a scenario into the database and the sandbox world (replacing what it names)."""
    from calsync.sandbox.scenario import ScenarioError, load_scenario
    from calsync.sandbox.world import World
    from calsync.syncbackend import migrate
    from calsync.syncbackend.crypto import load_or_create_key

    settings = Settings()
    url = settings.resolved_database_url
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        loaded = load_scenario(
            path,
            sessions=make_session_factory(engine),
            world=World(engine),
            cipher=load_or_create_key(settings),
            clock=utc_now,
        )
    except ScenarioError as error:
        _note(str(error))
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    _note(
        f"Loaded {path}: {loaded.users} users, {loaded.accounts} provider accounts, {loaded.events} events, "
        f"{loaded.appointments} appointments, {loaded.faults} faults into {_safe_url(url)}"
    )


@sandbox_cli.command("serve")
def sandbox_serve(
    host: str = typer.Option("127.0.0.1", help="Loopback address to listen on."),
    google_port: int = typer.Option(0, help="Port for the Google emulator (0: any free port)."),
    microsoft_port: int = typer.Option(0, help="Port for the Microsoft emulator (0: any free port)."),
    slack_port: int = typer.Option(0, help="Port for the Slack Web API emulator (0: any free port)."),
) -> None:
    """Run the emulators until interrupted and print their URLs and the settings that point at them."""
    import signal
    import threading

    from calsync.sandbox.runtime import SandboxRuntime
    from calsync.sandbox.world import World
    from calsync.syncbackend import migrate
    from calsync.syncbackend.crypto import KEY_FILE_NAME

    settings = Settings()
    url = settings.resolved_database_url
    migrate.upgrade(url)
    engine = make_engine(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime = SandboxRuntime(
        World(engine),
        settings.state_dir,
        utc_now,
        host=host,
        google_port=google_port,
        microsoft_port=microsoft_port,
        slack_port=slack_port,
    )
    with runtime as endpoints:
        typer.echo(f"Google Calendar + OAuth emulator:    {endpoints.google_url}")
        typer.echo(
            f"Microsoft identity + Graph emulator: {endpoints.microsoft_url} (TLS, CA {endpoints.ca_path})"
        )
        typer.echo(f"Slack Web API emulator:              {endpoints.slack_url}/api/")
        typer.echo("Settings for another calsync process (these secrets live only as long as this process):")
        for name, value in endpoints.environment().items():
            typer.echo(f"  export {name}={value}")
        key_file = (settings.state_dir / KEY_FILE_NAME).resolve()
        if settings.encryption_key is None and key_file.exists():
            typer.echo(f"  export CALSYNC_ENCRYPTION_KEY=$(cat {key_file})")
        _note("Serving until Ctrl-C.")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    engine.dispose()


@cli.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Serve Slack (HTTP at /slack/events, or Socket Mode when SLACK_APP_TOKEN is set) and /healthz."""
    import asyncio

    refuse_unverifiable_http(Settings())
    with open_services() as services:
        settings = services.settings
        refuse_unverifiable_http(settings)  # the sandbox brings its own Slack secret, or none at all
        troubleshooter = build_troubleshooter(services)
        _, bot = build_engine_and_bot(services, troubleshooter)
        bolt_app = build_bolt_app(services, bot)
        web = build_web_app(services, None if settings.slack_app_token else bolt_app, troubleshooter, bot=bot)
        if bolt_app is None:
            _note("No SLACK_BOT_TOKEN: serving /healthz only; Slack is not connected.")
        server = make_http_server(web, host, port)
        _note(
            f"calsync listening on http://{host}:{port} (Slack events at /slack/events, health at /healthz)"
        )
        if services.world is not None:
            if _load_demo_if_empty(services):
                _note("The database was empty: loaded the demo scenario (reps @northwind.example).")
            _note(f"Try calsync in your browser: http://{host}:{port}/playground")
        if settings.slack_app_token and bolt_app is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket_mode = AsyncSocketModeHandler(bolt_app, settings.slack_app_token.get_secret_value())

            async def both() -> None:
                await asyncio.gather(socket_mode.start_async(), server.serve())

            _note("SLACK_APP_TOKEN is set: receiving Slack events over Socket Mode.")
            asyncio.run(both())
        else:
            server.run()


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
