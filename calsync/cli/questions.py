"""`calsync match`, `ask`, `diagnose` and `demo`: questions answered on the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from calsync.cli.output import note, safe_url, url_line

if TYPE_CHECKING:
    from calsync.diagnostics.answer import Answer
    from calsync.knowledge.loader import KnowledgeBase


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

    from rich.console import Console

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

    from calsync.app import build_troubleshooter, open_services
    from calsync.diagnostics.troubleshooter import UnknownUser

    with open_services(announce=note) as services:
        troubleshooter = build_troubleshooter(services)
        try:
            answer = asyncio.run(troubleshooter.answer(email, question, actor=f"cli:{getpass.getuser()}"))
        except UnknownUser:
            note(f"No SalesPartner user has the email {email!r}; nothing was checked.")
            raise typer.Exit(2) from None
    _print_answer(answer, troubleshooter.knowledge, as_json=as_json, evidence=evidence, details=details)


def ask_command(
    email: str = typer.Argument(..., help="The rep asking (their SalesPartner email)."),
    question: str = typer.Argument(..., help="The question, as the rep wrote it."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON on stdout."),
    details: bool = typer.Option(False, "--details", help="Also list every finding (Slack's Details)."),
) -> None:
    """Answer QUESTION for the rep EMAIL as the bot would: the cause, its fix and steps, actions."""
    _answer(email, question, as_json=as_json, evidence=False, details=details)


def diagnose_command(
    email: str = typer.Argument(..., help="The rep to diagnose (their SalesPartner email)."),
    as_json: bool = typer.Option(False, "--json", help="Print the diagnosis as JSON on stdout."),
) -> None:
    """Run every check for the rep EMAIL and show the whole picture, evidence included (for agents)."""
    _answer(email, None, as_json=as_json, evidence=True)


def report_command(
    email: str = typer.Argument(..., help="The rep whose full report to open (their SalesPartner email)."),
    open_it: bool = typer.Option(False, "--open", help="Also open the report in a web browser."),
) -> None:
    """Print the agent's full-report link for the rep EMAIL (what Slack's "Open full report" opens):
    signed, for 15 minutes, opening in the first browser that uses it; `calsync serve` shows it."""
    import getpass
    import webbrowser

    from calsync.app import REPORT_LINK_TTL_MINUTES, build_report_url, open_services
    from calsync.diagnostics.state import find_user

    with open_services(announce=note) as services:
        with services.sessions() as session:
            known = find_user(session, email) is not None
        if not known:
            note(f"No SalesPartner user has the email {email!r}, so there is no report to open.")
            raise typer.Exit(1)
        url = build_report_url(services)(f"cli:{getpass.getuser()}", email)
    note(
        f"The full report on {email} (works for {REPORT_LINK_TTL_MINUTES} minutes, in the first browser "
        "that opens it, while calsync serve runs):"
    )
    url_line(url, err=False)
    if open_it:
        webbrowser.open(url)


def demo_command() -> None:
    """Load the demo scenario into the sandbox and show reps asking real questions, answered live."""
    import asyncio

    from rich.console import Console

    from calsync.app import build_sync_engine, build_troubleshooter, open_services
    from calsync.knowledge.streaming import utf8_stdout
    from calsync.render.text import render_answer
    from calsync.sandbox.demo import DEMO_QUESTIONS, DEMO_SCENARIO, demo_sync_story
    from calsync.sandbox.scenario import load_scenario
    from calsync.settings import Settings

    settings = Settings()
    # The demo never touches a configured database or real providers: the embedded default only.
    update: dict[str, object] = {"google_client_id": None, "microsoft_client_id": None}
    if settings.database_url:
        update["database_url"] = f"sqlite:///{(settings.state_dir / 'demo.db').resolve()}"
    settings = settings.model_copy(update=update)
    utf8_stdout(text=True)
    console = Console()
    with open_services(settings, announce=note) as services:
        assert services.world is not None
        load_scenario(
            DEMO_SCENARIO,
            sessions=services.sessions,
            world=services.world,
            cipher=services.cipher,
            clock=services.clock,
        )
        note(f"Loaded the demo scenario into {safe_url(settings.resolved_database_url)}.")
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
        story = demo_sync_story(
            engine=build_sync_engine(services),
            sessions=services.sessions,
            world=services.world,
            clock=services.clock,
        )
        for line in asyncio.run(story):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.rule()
    console.print(
        'Try your own: calsync ask carla@northwind.example "why isn\'t my appointment showing" '
        "(reps: ana, ben, carla, dev, erin, farid, gina, hugo, iris, jack, kate, leo, maya, nora, omar, pia, "
        "quinn @northwind.example), or calsync diagnose EMAIL for an agent's view.",
        markup=False,
        highlight=False,
    )
