"""`calsync fix duplicates EMAIL`: the agent's duplicate clean-up from the command line — a dry run
by default (what it would remove), `--apply` to remove the copies (audited under `--by`)."""

from __future__ import annotations

import typer

from calsync.cli.output import note

fix_cli = typer.Typer(help="Fixes beyond Reconnect that support agents make.")


@fix_cli.command("duplicates")
def duplicates_command(
    email: str = typer.Argument(..., help="The rep's SalesPartner email."),
    apply: bool = typer.Option(
        False, "--apply/--dry-run", help="Remove the copies (default: a dry run that only lists them)."
    ),
    by: str = typer.Option("cli", "--by", help="Who decides (recorded in the audit log)."),
) -> None:
    """Remove the calendar copies a second connection made, keeping one event per appointment."""
    import asyncio

    from calsync.app import build_fixes, open_services
    from calsync.flows.fixes import Refusal
    from calsync.render.fixes import cleanup_lines, refusal_text

    with open_services(announce=note) as services:
        fixes = build_fixes(services)
        done = asyncio.run(fixes.clean_duplicates(by, email, apply=apply))
    if isinstance(done, Refusal):
        note(refusal_text(done.reason))
        raise typer.Exit(1)
    for line in cleanup_lines(done):
        typer.echo(line)
    if done.failed:
        raise typer.Exit(1)
