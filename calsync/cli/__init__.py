"""The `calsync` command line: the typer root and one module per command group.

Each command builds what it needs through the composition root (`calsync.app`) and calls a service;
heavy imports happen inside the commands, so `calsync match` starts fast.
"""

from __future__ import annotations

import typer

from calsync.cli import db, questions, sandbox, serve, sync

cli = typer.Typer(
    name="calsync",
    help="Live calendar-sync diagnostics for SalesPartner reps, in Slack and on the command line.",
    no_args_is_help=True,
    add_completion=False,
)
cli.add_typer(sandbox.sandbox_cli, name="sandbox")
cli.add_typer(db.db_cli, name="db")
cli.add_typer(sync.holds_cli, name="holds")
cli.command("match")(questions.match_command)
cli.command("ask")(questions.ask_command)
cli.command("diagnose")(questions.diagnose_command)
cli.command("demo")(questions.demo_command)
cli.command("sync")(sync.sync_command)
cli.command("worker")(sync.worker_command)
cli.command("serve")(serve.serve_command)
cli.command("answer-worker")(serve.answer_worker_command)


def main() -> None:
    cli()
