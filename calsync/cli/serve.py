"""`calsync serve`: Slack (HTTP or Socket Mode), the web pages and /healthz, in one process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from calsync.cli.output import note, url_line

if TYPE_CHECKING:
    from calsync.settings import Settings


def app_token(settings: Settings) -> str:
    """`SLACK_APP_TOKEN`, "" when unset or blank (as `calsync.app.build_socket_mode` reads it)."""
    return settings.slack_app_token.get_secret_value().strip() if settings.slack_app_token else ""


def refuse_unverifiable_http(settings: Settings) -> None:
    """Fail closed: a bot token served over HTTP without a signing secret would take unsigned requests
    (a forged `/calsync diagnose` with a foreign response_url would receive a diagnosis)."""
    from calsync.app import signing_secret

    if settings.slack_bot_token is not None and not app_token(settings) and not signing_secret(settings):
        note(
            "calsync serve: SLACK_SIGNING_SECRET is not set, so requests to /slack/events cannot be "
            "verified; set it (Basic Information → Signing Secret) or use Socket Mode (SLACK_APP_TOKEN)."
        )
        raise typer.Exit(2)


def refuse_unusable_app_token(settings: Settings) -> None:
    """Socket Mode takes an app-level token (`xapp-…`); a bot or user token there is a mix-up that
    Slack would only answer with `not_allowed_token_type`."""
    from calsync.bot.socket_mode import APP_TOKEN_PREFIX

    token = app_token(settings)
    if token and not token.startswith(APP_TOKEN_PREFIX):
        note(
            f"calsync serve: SLACK_APP_TOKEN must be an app-level token ({APP_TOKEN_PREFIX}…, Basic "
            "Information → App-Level Tokens, scope connections:write), not a bot or user token."
        )
        raise typer.Exit(2)


def refuse_app_token_slack_refuses(settings: Settings) -> None:
    """Ask Slack for a Socket Mode URL before serving, so that a wrong app token is one sentence
    here rather than a failed start-up's traceback (the start-up still checks: `bot/socket_mode.py`)."""
    import asyncio

    from calsync.bot.socket_mode import app_token_problem

    token = app_token(settings)
    if not token or settings.slack_bot_token is None:
        return
    problem = asyncio.run(app_token_problem(settings.slack_api_url, token))
    if problem is not None:
        note(f"calsync serve: {problem}.")
        raise typer.Exit(2)


def refuse_taken_port(host: str, port: int) -> None:
    """One sentence, before anything starts, when another program already listens on the port."""
    import errno
    import socket

    if port == 0:
        return
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        note(
            f"calsync serve: port {port} on {host} is already in use: stop what listens there, or use --port."
        )
        raise typer.Exit(1) from None


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    sync: bool | None = typer.Option(
        None, "--sync/--no-sync", help="Also run the sync engine (default: CALSYNC_SERVE_SYNC, on)."
    ),
    answers: bool | None = typer.Option(
        None,
        "--answers/--no-answers",
        help="Also answer the questions (default: CALSYNC_SERVE_ANSWERS, on; always on with SQLite).",
    ),
) -> None:
    """Serve Slack (HTTP at /slack/events, or Socket Mode when SLACK_APP_TOKEN is set) and /healthz;
    on one machine also the sync engine and the answer worker (`--no-sync`, `--no-answers` where
    `calsync worker` and `calsync answer-worker` run apart)."""
    from calsync.app import (
        answers_in_serve,
        build_bolt_app,
        build_engine_and_bot,
        build_socket_mode,
        build_troubleshooter,
        build_web_app,
        make_http_server,
        open_services,
    )
    from calsync.sandbox.demo import load_demo_if_empty
    from calsync.settings import Settings

    refuse_taken_port(host, port)
    refuse_unverifiable_http(Settings())
    refuse_unusable_app_token(Settings())
    overrides = {
        name: value
        for name, value in (("CALSYNC_SERVE_SYNC", sync), ("CALSYNC_SERVE_ANSWERS", answers))
        if value is not None
    }
    with open_services(announce=note, settings=Settings(**overrides) if overrides else None) as services:  # type: ignore[arg-type]
        settings = services.settings
        refuse_unverifiable_http(settings)  # the sandbox brings its own Slack secret, or none at all
        refuse_app_token_slack_refuses(settings)
        troubleshooter = build_troubleshooter(services)
        engine, bot = build_engine_and_bot(services, troubleshooter)
        bolt_app = build_bolt_app(services, bot)
        web = build_web_app(
            services,
            bolt_app,
            troubleshooter,
            bot=bot,
            sync_engine=engine if settings.serve_sync else None,
        )
        note(
            "Also running: "
            + ("the sync engine" if settings.serve_sync else "no sync engine (run `calsync worker`)")
            + "; "
            + (
                "the answer worker"
                if answers_in_serve(settings, bot)
                else "no answer worker (run `calsync answer-worker`)"
            )
            + "."
        )
        if bolt_app is None:
            note("No SLACK_BOT_TOKEN: serving /healthz only; Slack is not connected.")
        server = make_http_server(web, host, port)
        slack_way_in = (
            f"over Socket Mode (SLACK_APP_TOKEN, via {settings.slack_api_url})"
            if build_socket_mode(services, bolt_app) is not None
            else "at /slack/events"
        )
        note(f"calsync listening (Slack events {slack_way_in}, health at /healthz) on")
        url_line(f"http://{host}:{port}/")
        if services.world is not None:
            demo = load_demo_if_empty(
                sessions=services.sessions, world=services.world, cipher=services.cipher, clock=services.clock
            )
            if demo:
                note("The database was empty: loaded the demo scenario (reps @northwind.example).")
            note("Try calsync in your browser:")
            url_line(f"http://{host}:{port}/playground")
        server.run()
        if not server.started:  # the start-up failed (Slack refused the app token, say); uvicorn said why
            raise typer.Exit(3)


def answer_worker_command(
    concurrency: int = typer.Option(0, help="Questions answered at once (0: CALSYNC_ANSWER_CONCURRENCY)."),
) -> None:
    """Answer the questions `calsync serve` queued (PostgreSQL). Run as many as you like, on any
    machine with the database: each question is answered once, and a worker that dies leaves its
    questions to the others."""
    import asyncio
    import os
    import signal

    from calsync.app import build_engine_and_bot, build_troubleshooter, open_services
    from calsync.bot.queue import answer_worker, durable, run_answer_worker

    with open_services(announce=note) as services:
        _, bot = build_engine_and_bot(services, build_troubleshooter(services))
        queue = bot.questions
        if not durable(queue.app):
            note(
                "Answer workers in their own process need PostgreSQL (DATABASE_URL); with SQLite, "
                "`calsync serve` answers its questions itself."
            )
            raise typer.Exit(2)
        if bot.client is None:
            note("No SLACK_BOT_TOKEN: there is no Slack to answer in.")
            raise typer.Exit(2)
        name = f"answers-{os.getpid()}"

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            async with queue.app.open_async():
                note(f"calsync answer worker {name} started.")
                await run_answer_worker(
                    queue,
                    answer_worker(bot),
                    stop,
                    concurrency=concurrency or services.settings.answer_concurrency,
                    name=name,
                )

        asyncio.run(run())
