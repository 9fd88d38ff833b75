"""`calsync sandbox load | serve`: scenario files, and the emulators run on their own."""

from __future__ import annotations

from pathlib import Path

import typer

from calsync.cli.output import note, safe_url

sandbox_cli = typer.Typer(help="The local emulators of Google, Microsoft and Slack, and scenario files.")


@sandbox_cli.command("load")
def sandbox_load(
    path: Path = typer.Argument(..., help="A scenario file (YAML); see the README's 'Scenario files'."),
    replace: bool = typer.Option(
        True,
        "--replace/--add",
        help="--replace (the default): clear the sandbox world and the users the file names first. "
        "--add: add the file to what is there (refused if it names a user or account already there).",
    ),
) -> None:
    """Put a scenario into the database and the sandbox world: replacing the world (the default) or
    adding to it (--add)."""
    from calsync.app import utc_now
    from calsync.cli.progress import progress
    from calsync.db import make_engine, make_session_factory
    from calsync.sandbox.scenario import ScenarioError, load_scenario
    from calsync.sandbox.world import World
    from calsync.settings import Settings
    from calsync.syncbackend import migrate
    from calsync.syncbackend.crypto import load_or_create_key

    settings = Settings()
    url = settings.resolved_database_url
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with progress(f"Loading {path.name}") as advance:
            loaded = load_scenario(
                path,
                sessions=make_session_factory(engine),
                world=World(engine),
                cipher=load_or_create_key(settings),
                clock=utc_now,
                replace=replace,
                progress=advance,
            )
    except ScenarioError as error:
        note(str(error))
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    note(
        f"Loaded {path}: {loaded.users} users, {loaded.accounts} provider accounts, {loaded.events} events, "
        f"{loaded.appointments} appointments, {loaded.faults} faults into {safe_url(url)}"
    )
    if replace:
        note(
            "Replaced the sandbox world and the users the file names (other users stay); "
            "--add adds a file to what is there instead."
        )
    else:
        note("Added to the sandbox world (nothing was removed); --replace clears it first instead.")


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

    from calsync.app import utc_now
    from calsync.db import make_engine
    from calsync.sandbox.runtime import SandboxRuntime
    from calsync.sandbox.world import World
    from calsync.settings import Settings
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
        note("Serving until Ctrl-C.")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    engine.dispose()
