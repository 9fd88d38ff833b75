"""The composition root: everything calsync is made of, built on demand from `Settings`.

Nothing is built at import time and no module keeps a client, session or app in a global. The
command line (`calsync.cli`) and the tests build what they need through these functions and call a
service; the logic lives in the packages, not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import libpq_conninfo, make_engine, make_session_factory
from calsync.sandbox.demo import DEMO_QUESTIONS
from calsync.sandbox.demo import demo_problems as _demo_problems
from calsync.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import APIRouter, FastAPI
    from prometheus_client import CollectorRegistry
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    from calsync.bot.slackbot import SlackBot
    from calsync.diagnostics.answer import Answer
    from calsync.diagnostics.troubleshooter import Troubleshooter
    from calsync.flows.fixes import Fixes
    from calsync.flows.notices import Notices
    from calsync.links import LinkSigner
    from calsync.sandbox.runtime import SandboxEndpoints
    from calsync.sandbox.world import World
    from calsync.store.fleet import FleetStore
    from calsync.syncbackend.crypto import TokenCipher
    from calsync.syncbackend.engine import (
        DisconnectNotifier,
        FollowUpNotifier,
        HoldNotifier,
        IncidentNotifier,
        SyncEngine,
    )
    from calsync.syncbackend.incidents import IncidentPolicy
    from calsync.syncbackend.providers.base import CalendarProvider
    from calsync.syncbackend.schedule import SyncPolicy


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

    @cached_property
    def links(self) -> LinkSigner:
        """Signs and reads the links calsync hands out (reconnect, reports): built once, on first use
        (a command that hands out no link needs no `CALSYNC_LINK_SECRET`), from `CALSYNC_LINK_SECRET`,
        or in sandbox mode a secret generated once into the state dir."""
        from calsync.links import LinkSigner, load_or_create_link_secret

        secret = load_or_create_link_secret(self.settings, sandbox=self.world is not None)
        return LinkSigner(secret, self.clock)


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
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    announce: Callable[[str], None] | None = None,
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
            if announce is not None:
                announce(
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
    from calsync.flows.reconnect import ReconnectLinks
    from calsync.knowledge.loader import load_articles
    from calsync.knowledge.matcher import Matcher

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
    """The services' one link signer (`Services.links`)."""
    return services.links


def build_reconnect(
    services: Services,
    bot: SlackBot | None = None,
    troubleshooter: Troubleshooter | None = None,
    engine: SyncEngine | None = None,
) -> APIRouter:
    """`/connect/{provider}` and `/oauth/{provider}/callback`: the OAuth flows, the first sync cycle
    (through the engine and its lease), the fresh diagnosis afterwards, and the Slack note (when
    there is a bot with a token)."""
    from calsync.flows.reconnect import Outcome, ReconnectService
    from calsync.syncbackend.oauth import GoogleOAuth, MicrosoftOAuth, OAuthFlow
    from calsync.syncbackend.providers.microsoft import MicrosoftProvider
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
        signer=services.links,
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
    import typer

    from calsync.syncbackend.schedule import policy_from_settings

    try:
        return policy_from_settings(settings)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def quota_providers(services: Services) -> dict[str, CalendarProvider]:
    """The providers, each call counted against its account's quota in the shared database, so every
    instance together stays inside Google's and Microsoft's per-account limits."""
    from calsync.syncbackend.quota import DatabaseLimiter, QuotaProvider

    limiter = DatabaseLimiter(services.sessions)
    return {name: QuotaProvider(provider, limiter) for name, provider in services.providers.items()}


def build_incident_policy(settings: Settings) -> IncidentPolicy:
    """When many failures are one incident, from settings."""
    from datetime import timedelta

    from calsync.syncbackend.incidents import IncidentPolicy

    return IncidentPolicy(
        org_min_reps=settings.incident_org_min_reps,
        org_window=timedelta(minutes=settings.incident_org_window_minutes),
        outage_min_reps=settings.incident_outage_min_reps,
        outage_min_orgs=settings.incident_outage_min_orgs,
        outage_window=timedelta(minutes=settings.incident_outage_window_minutes),
    )


def build_sync_engine(
    services: Services,
    notify: DisconnectNotifier | None = None,
    notify_hold: HoldNotifier | None = None,
    notify_incident: IncidentNotifier | None = None,
    notify_follow_up: FollowUpNotifier | None = None,
) -> SyncEngine:
    """The sync engine over the same providers the diagnostics use, each kept inside its quota; what
    it says in Slack (`notify`, `notify_hold`, `notify_incident`, `notify_follow_up`) comes from
    `wire_notifications`."""
    from calsync.syncbackend.engine import SyncEngine

    return SyncEngine(
        sessions=services.sessions,
        providers=quota_providers(services),
        cipher=services.cipher,
        clock=services.clock,
        policy=build_sync_policy(services.settings),
        notify=notify,
        notify_hold=notify_hold,
        notify_incident=notify_incident,
        notify_follow_up=notify_follow_up,
        incident_policy=build_incident_policy(services.settings),
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
    notify_incident: IncidentNotifier | None
    notify_follow_up: FollowUpNotifier | None


def wire_notifications(services: Services, notices: Notices | None) -> EngineNotifications:
    """What the engine says through Slack, when a bot token is configured: the DM to a rep whose
    grant stopped working (and its follow-up when an incident of their organisation is recognised
    or over), the support channel's question about held cancellations and its one message per
    incident. The engine's constructor arguments:
    `build_sync_engine(services, **wire_notifications(...))`."""
    from calsync.flows.incidents import IncidentMessages

    if notices is None:
        return {"notify": None, "notify_hold": None, "notify_incident": None, "notify_follow_up": None}
    channel = services.settings.support_channel
    return {
        "notify": notices.disconnected,
        "notify_hold": notices.hold if channel else None,
        "notify_incident": IncidentMessages(notices.client, channel).notify if channel else None,
        "notify_follow_up": notices.incident_follow_up,
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
    from calsync.bot.backlog import Backlog
    from calsync.bot.people import People
    from calsync.bot.queue import AnswerQueue, task_app
    from calsync.bot.slackbot import SlackBot
    from calsync.bot.work import Work
    from calsync.flows.answers import Answers
    from calsync.flows.fleet import FleetStatus
    from calsync.flows.reconnect_links import ReconnectLinks
    from calsync.flows.support import Support

    settings = services.settings
    client = client if client is not None else build_slack_client(services)
    questions = AnswerQueue(
        task_app(libpq_conninfo(services.engine)),
        services.sessions,
        services.clock,
        per_workspace=settings.backlog_per_workspace,
        overall=settings.backlog_max,
    )
    return SlackBot(
        troubleshooter=troubleshooter,
        sessions=services.sessions,
        clock=services.clock,
        people=People(
            services.sessions, agent_ids=settings.agent_ids, agent_usergroup=settings.agent_usergroup
        ),
        work=Work(
            services.sessions,
            services.clock,
            Backlog(
                per_workspace=settings.backlog_per_workspace,
                overall=settings.backlog_max,
                clock=services.clock,
            ),
            max_concurrent=settings.work_concurrency,
            claim=questions.claim,
        ),
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
        questions=questions,
        client=client,
        notices=notices if notices is not None else build_notices(services, troubleshooter, client),
        fixes=build_fixes(services, sync_engine),
        fleet=FleetStatus(store=build_fleet_store(services), fleet_url=build_fleet_url(services)),
    )


def build_fixes(services: Services, sync_engine: SyncEngine | None = None) -> Fixes:
    """The fixes beyond Reconnect over the providers (each call inside its quota), running a sync
    cycle after a change when there is an engine."""
    from calsync.flows.fixes import Fixes

    return Fixes(
        sessions=services.sessions,
        cipher=services.cipher,
        providers=quota_providers(services),
        clock=services.clock,
        sync=sync_engine.sync_connection if sync_engine is not None else None,
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


def build_fleet_store(services: Services) -> FleetStore:
    """The fleet's figures, for `/calsync status` and the fleet page alike (both call this), with
    the open incidents (`calsync.syncbackend.incidents.open_incidents`)."""
    from calsync.store.fleet import FleetStore
    from calsync.syncbackend.incidents import open_incidents

    return FleetStore(services.sessions, services.clock, open_incidents=open_incidents)


def build_fleet_url(services: Services) -> Callable[[str], str]:
    """The agent's fleet-page link from `/calsync status`: signed, 15 minutes, one browser."""
    from datetime import timedelta

    from calsync.web.fleet import FLEET_KIND

    signer = build_link_signer(services)
    public_url = services.settings.public_url.rstrip("/")

    def fleet_url(agent: str) -> str:
        token = signer.make(FLEET_KIND, {"agent": agent}, timedelta(minutes=REPORT_LINK_TTL_MINUTES))
        return f"{public_url}/fleet/{token}"

    return fleet_url


def build_fleet_pages(services: Services) -> APIRouter:
    from calsync.store.reports import ReportStore
    from calsync.web.fleet import create_fleet_router

    return create_fleet_router(
        fleet=build_fleet_store(services),
        reports=ReportStore(services.sessions, services.clock),
        links=services.links,
        clock=services.clock,
        public_url=services.settings.public_url,
        report_url=build_report_url(services),
    )


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
    from calsync.store.reports import ReportStore
    from calsync.web.pages import PagesConfig, create_pages_router

    sandboxed = services.world is not None if sandbox is None else sandbox
    return create_pages_router(
        troubleshooter=troubleshooter,
        store=ReportStore(services.sessions, services.clock),
        clock=services.clock,
        links=services.links,
        config=PagesConfig(
            sandbox=sandboxed,
            public_url=services.settings.public_url,
            examples=DEMO_QUESTIONS if sandboxed else (),
            problems=_demo_problems() if sandboxed else {},
            sandbox_ca=str(services.sandbox.ca_path.resolve()) if sandboxed and services.sandbox else "",
        ),
    )


def build_web_app(
    services: Services,
    bolt_app: AsyncApp | None,
    troubleshooter: Troubleshooter | None = None,
    *,
    sandbox: bool | None = None,
    bot: SlackBot | None = None,
    sync_engine: SyncEngine | None = None,
) -> FastAPI:
    """The HTTP app; with a troubleshooter it also serves the pages (`build_pages`). The reconnect
    flow is always served; with `bot` it also tells the rep in Slack afterwards, keeps the bot's
    answer queue open while it serves (and answers too, per `CALSYNC_SERVE_ANSWERS`), and `/metrics`
    shows the bot's backlog (`build_metrics`).

    `bolt_app` is how Slack reaches calsync: at `POST /slack/events`, or — with `SLACK_APP_TOKEN` —
    over Socket Mode, connected while the app serves (`build_socket_mode`) and no `/slack/events`."""
    from calsync.store.web import database_is_up
    from calsync.web.app import create_web_app
    from calsync.web.slack_verify import SlackVerifier

    routers: list[APIRouter] = [build_reconnect(services, bot, troubleshooter)]
    sandboxed = services.world is not None if sandbox is None else sandbox
    if troubleshooter is not None:
        routers.append(build_pages(services, troubleshooter, sandbox=sandboxed))
        routers.append(build_fleet_pages(services))
    secret = signing_secret(services.settings)
    socket_mode = build_socket_mode(services, bolt_app)
    over_http = None if socket_mode is not None else bolt_app
    return create_web_app(
        bolt_app=over_http,
        healthy=database_is_up(services.engine),
        routers=routers,
        slack_verifier=SlackVerifier(secret) if over_http is not None and secret else None,
        lifespan=_one_after_another(
            build_answering(services, bot) if bot is not None else None,
            build_syncing(sync_engine) if sync_engine is not None else None,
            socket_mode,
        ),
        metrics=build_metrics(bot),
        playground=troubleshooter is not None and sandboxed,
        readme=readme_path(),
    )


def readme_path() -> Path:
    """The README beside the package (a checkout or an editable install; `GET /` says so when absent)."""
    import calsync

    return Path(calsync.__file__).resolve().parents[1] / "README.md"


def build_syncing(sync_engine: SyncEngine) -> Callable[[], AbstractAsyncContextManager[None]]:
    """The sync engine's worker loop (what `calsync worker` runs) while it is entered: `calsync serve`
    on one machine."""
    import asyncio
    import contextlib

    from calsync.syncbackend.engine import run_worker

    @contextlib.asynccontextmanager
    async def syncing() -> AsyncIterator[None]:
        stop = asyncio.Event()
        running = asyncio.create_task(run_worker(sync_engine, stop))
        try:
            yield
        finally:
            stop.set()
            await running

    return syncing


def build_socket_mode(
    services: Services, bolt_app: AsyncApp | None
) -> Callable[[], AbstractAsyncContextManager[None]] | None:
    """`bolt_app` connected to Slack over Socket Mode while it is entered, when `SLACK_APP_TOKEN` is
    set (None otherwise). The WebSocket URL comes from the bot's Web API client, so from
    `SLACK_API_URL`. Makes no network call until entered."""
    from calsync.bot.socket_mode import socket_mode

    token = services.settings.slack_app_token
    if bolt_app is None or token is None or not token.get_secret_value().strip():
        return None
    return socket_mode(bolt_app, token.get_secret_value().strip())


def _one_after_another(
    *parts: Callable[[], AbstractAsyncContextManager[None]] | None,
) -> Callable[[], AbstractAsyncContextManager[None]] | None:
    """The parts entered in order and left in reverse (the answer queue is open before Socket Mode
    brings the first event, and stays open until the socket is closed); None when there are none."""
    import contextlib

    present = [part for part in parts if part is not None]
    if not present:
        return None

    @contextlib.asynccontextmanager
    async def entered() -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for part in present:
                await stack.enter_async_context(part())
            yield

    return entered


def build_answering(services: Services, bot: SlackBot) -> Callable[[], AbstractAsyncContextManager[None]]:
    """The serving process's part of the answer queue: open it, and answer too unless answer workers
    run apart (`CALSYNC_SERVE_ANSWERS=false`, PostgreSQL only: SQLite's queue lives in this process)."""
    from calsync.bot.queue import answering

    settings = services.settings
    return answering(
        bot, embedded_worker=answers_in_serve(settings, bot), concurrency=settings.answer_concurrency
    )


def answers_in_serve(settings: Settings, bot: SlackBot) -> bool:
    """Whether the serving process answers questions too: as `CALSYNC_SERVE_ANSWERS` says, and always
    on SQLite (its queue lives in that process)."""
    from calsync.bot.queue import durable

    return settings.serve_answers or not durable(bot.questions.app)


def build_metrics(bot: SlackBot | None) -> CollectorRegistry:
    """What `GET /metrics` shows, in a registry of this app's own (never prometheus_client's global
    one, so two apps in one process each show their own): the bot's backlog, when there is a bot,
    and the process's CPU and memory."""
    import functools

    from prometheus_client import CollectorRegistry, ProcessCollector

    from calsync.bot.metrics import BacklogCollector, QuestionQueueCollector
    from calsync.store import questions

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    if bot is not None:
        registry.register(BacklogCollector(bot.work.backlog.figures))
        queue = bot.questions
        registry.register(
            QuestionQueueCollector(
                functools.partial(questions.figures, queue.sessions, queue.clock), lambda: queue.shed_count
            )
        )
    return registry


def signing_secret(settings: Settings) -> str | None:
    """`SLACK_SIGNING_SECRET`, None when unset or blank."""
    secret = settings.slack_signing_secret.get_secret_value().strip() if settings.slack_signing_secret else ""
    return secret or None


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
