"""`calsync serve`: Slack (HTTP or Socket Mode), the web pages and /healthz, in one process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from calsync.cli.output import note

if TYPE_CHECKING:
    from calsync.settings import Settings


def refuse_unverifiable_http(settings: Settings) -> None:
    """Fail closed: a bot token served over HTTP without a signing secret would take unsigned requests
    (a forged `/calsync diagnose` with a foreign response_url would receive a diagnosis)."""
    from calsync.app import signing_secret

    if settings.slack_bot_token is not None and not settings.slack_app_token and not signing_secret(settings):
        note(
            "calsync serve: SLACK_SIGNING_SECRET is not set, so requests to /slack/events cannot be "
            "verified; set it (Basic Information → Signing Secret) or use Socket Mode (SLACK_APP_TOKEN)."
        )
        raise typer.Exit(2)


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
    import asyncio

    from calsync.app import (
        answers_in_serve,
        build_bolt_app,
        build_engine_and_bot,
        build_troubleshooter,
        build_web_app,
        make_http_server,
        open_services,
    )
    from calsync.sandbox.demo import load_demo_if_empty
    from calsync.settings import Settings

    refuse_unverifiable_http(Settings())
    overrides = {
        name: value
        for name, value in (("CALSYNC_SERVE_SYNC", sync), ("CALSYNC_SERVE_ANSWERS", answers))
        if value is not None
    }
    with open_services(announce=note, settings=Settings(**overrides) if overrides else None) as services:  # type: ignore[arg-type]
        settings = services.settings
        refuse_unverifiable_http(settings)  # the sandbox brings its own Slack secret, or none at all
        troubleshooter = build_troubleshooter(services)
        engine, bot = build_engine_and_bot(services, troubleshooter)
        bolt_app = build_bolt_app(services, bot)
        web = build_web_app(
            services,
            None if settings.slack_app_token else bolt_app,
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
        note(f"calsync listening on http://{host}:{port} (Slack events at /slack/events, health at /healthz)")
        if services.world is not None:
            demo = load_demo_if_empty(
                sessions=services.sessions, world=services.world, cipher=services.cipher, clock=services.clock
            )
            if demo:
                note("The database was empty: loaded the demo scenario (reps @northwind.example).")
            note(f"Try calsync in your browser: http://{host}:{port}/playground")
        if settings.slack_app_token and bolt_app is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket_mode = AsyncSocketModeHandler(bolt_app, settings.slack_app_token.get_secret_value())

            async def both() -> None:
                await asyncio.gather(socket_mode.start_async(), server.serve())

            note("SLACK_APP_TOKEN is set: receiving Slack events over Socket Mode.")
            asyncio.run(both())
        else:
            server.run()


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
