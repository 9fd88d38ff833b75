"""`calsync sync`, `worker` and `holds`: the sync engine, run now or for good, and held cancellations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from calsync.cli.output import note

if TYPE_CHECKING:
    from calsync.syncbackend.engine import CycleResult
    from calsync.syncbackend.holds import Decision

holds_cli = typer.Typer(help="Cancellations a sync held back for a support agent: list them, decide.")


def _print_cycles(results: list[CycleResult], *, as_json: bool) -> None:
    import json

    from calsync.render.words import cycle_summary

    if as_json:
        typer.echo(json.dumps([result.as_dict() for result in results], indent=2))
        return
    for result in results:
        typer.echo(cycle_summary(result))


def sync_command(
    email: str = typer.Argument(..., help="The rep's SalesPartner email."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per connection on stdout."),
) -> None:
    """Run one sync cycle now for each of the rep's active calendar connections (push and pull)."""
    import asyncio

    from calsync.app import (
        build_notices,
        build_slack_client,
        build_sync_engine,
        build_troubleshooter,
        open_services,
        wire_notifications,
    )

    with open_services(announce=note) as services:
        troubleshooter = build_troubleshooter(services)
        notices = build_notices(services, troubleshooter, build_slack_client(services))
        engine = build_sync_engine(services, **wire_notifications(services, notices))
        results = asyncio.run(engine.sync_user(email))
        if not results:
            note(f"{email} has no active calendar connection (or is not a SalesPartner user).")
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

    from calsync.app import open_services
    from calsync.syncbackend.holds import Holds

    with open_services() as services:
        found = Holds(services.sessions, services.clock).find(status=None if show_all else "open")
    if as_json:
        typer.echo(json.dumps([hold.as_dict() for hold in found], indent=2))
        return
    if not found:
        note("No held cancellations." if not show_all else "No holds at all.")
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
    from calsync.app import open_services
    from calsync.syncbackend.holds import Holds, UnknownHold

    with open_services() as services:
        try:
            decided = Holds(services.sessions, services.clock).decide(hold_id, decision, actor=by)
        except UnknownHold:
            note(f"There is no hold {hold_id}; `calsync holds --all` lists them.")
            raise typer.Exit(1) from None
    if decided.already:
        note(
            f"Hold {hold_id} was already decided ({decided.hold.status}) by {decided.hold.decided_by}; nothing changed."
        )
        raise typer.Exit(1)
    done = "cancelled" if decision == "cancel" else "kept booked (back on the calendar in the next sync)"
    typer.echo(f"Hold {hold_id}: {decided.changed} appointment{'s' if decided.changed != 1 else ''} {done}.")


def _hold_decision_command(decision: Decision, doc: str) -> None:
    def command(
        hold_id: int = typer.Argument(..., help="The hold's id (`calsync holds`)."),
        by: str = typer.Option(..., "--by", help="Who decides (recorded in the audit log)."),
    ) -> None:
        _decide_hold(hold_id, decision, by)

    command.__doc__ = doc
    holds_cli.command(decision)(command)


_hold_decision_command("cancel", "Cancel the held appointments, as if the rep had deleted each event.")
_hold_decision_command(
    "keep", "Keep the held appointments booked; they go back on the calendar in the next sync."
)


def worker_command(
    once: bool = typer.Option(False, "--once", help="One round (due cycles, health checks, DMs), then exit."),
    every: float = typer.Option(5.0, help="Seconds between two rounds."),
    batch: int = typer.Option(100, help="Most connections one round takes on."),
) -> None:
    """Run the sync engine: every connection's cycle when it is due, the health sweep, the DMs to reps
    whose calendar disconnected. Run as many as you like: a connection is worked on by one at a time."""
    import asyncio
    import signal

    from calsync.app import (
        build_notices,
        build_slack_client,
        build_sync_engine,
        build_troubleshooter,
        open_services,
        wire_notifications,
    )
    from calsync.cli.progress import progress
    from calsync.syncbackend.engine import TickResult, run_worker, tick

    def report(result: TickResult) -> None:
        done = [cycle for cycle in result.cycles if cycle.status in ("ok", "error")]
        if done or result.sweep.checked or result.told:
            note(
                f"{len(done)} cycles ({sum(c.status == 'error' for c in done)} failed), "
                f"{result.sweep.checked} grants checked ({result.sweep.disconnected} disconnected), "
                f"{result.told} reps told"
            )

    with open_services(announce=note) as services:
        troubleshooter = build_troubleshooter(services)
        notices = build_notices(services, troubleshooter, build_slack_client(services))
        engine = build_sync_engine(services, **wire_notifications(services, notices))
        note(f"calsync worker {engine.worker_id} started.")

        async def run() -> None:
            if once:
                with progress("Sync cycles") as advance:
                    result = await tick(engine, batch=batch, progress=advance)
                report(result)
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await run_worker(engine, stop, every=every, batch=batch, report=report)

        asyncio.run(run())
