"""Composition root and the `calsync` command line.

Everything is built here, on demand, from `Settings`: nothing is built at import time and no
module keeps a client, session or app in a global. Each command builds what it needs and calls a
service; the logic lives in the packages, not here.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console


cli = typer.Typer(
    name="calsync",
    help="Live calendar-sync diagnostics for SalesPartner reps, in Slack and on the command line.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_cli = typer.Typer(help="The local emulators of Google, Microsoft and Slack, and scenario files.")
db_cli = typer.Typer(help="The sync-backend database.")
cli.add_typer(sandbox_cli, name="sandbox")
cli.add_typer(db_cli, name="db")


def stderr() -> Console:
    """Notes for people go to stderr so stdout stays clean (JSON where --json asks for it)."""
    return Console(stderr=True)


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

