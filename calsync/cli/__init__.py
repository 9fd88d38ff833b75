"""The `calsync` command line: the typer root and one module per command group.

Each command builds what it needs through the composition root (`calsync.app`) and calls a service;
heavy imports happen inside the commands, so `calsync match` starts fast.
"""

from __future__ import annotations

import os
import sys

import typer

from calsync.cli import check, db, fix, mistakes, questions, sandbox, serve, sync
from calsync.cli.output import note

cli = typer.Typer(
    name="calsync",
    help="Live calendar-sync diagnostics for SalesPartner reps, in Slack and on the command line.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help (click's): rendering it with rich imports ~0.1 s of rich for every `--help`.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,  # a bug's traceback plain; a mistake's one sentence (`main`)
)


@cli.callback()
def root(
    debug: bool = typer.Option(
        False, "--debug", help=f"Show the traceback of any error (also: {mistakes.DEBUG_VARIABLE}=1)."
    ),
) -> None:
    if debug:
        os.environ[mistakes.DEBUG_VARIABLE] = "1"


cli.add_typer(sandbox.sandbox_cli, name="sandbox")
cli.add_typer(db.db_cli, name="db")
cli.add_typer(sync.holds_cli, name="holds")
cli.add_typer(fix.fix_cli, name="fix")
cli.command("check")(check.check_command)
cli.command("match")(questions.match_command)
cli.command("ask")(questions.ask_command)
cli.command("diagnose")(questions.diagnose_command)
cli.command("report")(questions.report_command)
cli.command("demo")(questions.demo_command)
cli.command("sync")(sync.sync_command)
cli.command("worker")(sync.worker_command)
cli.command("serve")(serve.serve_command)
cli.command("answer-worker")(serve.answer_worker_command)


def main() -> None:
    """`calsync`: a mistake the person can fix (a setting, the database, the port) ends in one sentence
    and exit 1 (`cli.mistakes`); a bug keeps its traceback, as does everything with `--debug`."""
    try:
        if sys.argv[1:] == ["match"]:
            _match_without_typer()
        else:
            cli()  # usage mistakes are click's: its message and exit 2
    except Exception as error:
        sentence = None if mistakes.debugging() else mistakes.explain(error)
        if sentence is None:
            raise
        note(f"calsync: {sentence} (--debug shows the traceback)")
        sys.exit(1)


def _match_without_typer() -> None:
    """`calsync match` as scripts call it (no options): typer's parsing alone (its pydantic type
    adapters) costs more CPU than the matcher's whole start from its cache (BENCHMARKS.md, *Start-up*).
    Ends as click's standalone mode would: a closed stdout or Ctrl-C is exit 1, without a traceback."""
    try:
        questions.match_command()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush into the closed pipe at exit
        sys.exit(1)
    except KeyboardInterrupt:
        note("Aborted!")
        sys.exit(1)
