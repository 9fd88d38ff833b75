"""`calsync db upgrade | downgrade | current`: the sync-backend schema (Alembic migrations)."""

from __future__ import annotations

import typer

from calsync.cli.output import note, safe_url

db_cli = typer.Typer(help="The sync-backend database.")


def _run_migration(action: str, revision: str) -> None:
    """Run one migration command, turning an unreachable database or a bad revision into one line."""
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    from calsync.cli.progress import progress
    from calsync.settings import Settings
    from calsync.syncbackend import migrate

    url = Settings().resolved_database_url
    try:
        if action == "upgrade":
            with progress("Migrations") as advance:
                migrate.upgrade(url, revision, progress=advance)
        else:
            migrate.downgrade(url, revision)
        now = migrate.current(url)
    except OperationalError as error:
        note(f"calsync db {action}: cannot reach {safe_url(url)}: {error.orig}")
        raise typer.Exit(1) from None
    except CommandError as error:  # an unknown revision, for instance
        note(f"calsync db {action}: {error}")
        raise typer.Exit(2) from None
    head = " (head)" if now is not None and now == migrate.head() else ""
    note(f"Database at revision {now or 'base'}{head}: {safe_url(url)}")


@db_cli.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Create or update the sync-backend tables (Alembic migrations)."""
    _run_migration("upgrade", revision)


@db_cli.command("downgrade")
def db_downgrade(
    revision: str = typer.Argument(..., help='Target revision, or "base" to drop every table.'),
) -> None:
    """Take the sync-backend schema back to REVISION."""
    _run_migration("downgrade", revision)


@db_cli.command("current")
def db_current() -> None:
    """Print the database's schema revision ("base" when never migrated) on stdout."""
    from sqlalchemy.exc import OperationalError

    from calsync.settings import Settings
    from calsync.syncbackend import migrate

    url = Settings().resolved_database_url
    try:
        now = migrate.current(url)
    except OperationalError as error:
        note(f"calsync db current: cannot reach {safe_url(url)}: {error.orig}")
        raise typer.Exit(1) from None
    typer.echo(now or "base")
    head = migrate.head()
    if now != head:
        note(f"Behind the newest revision {head}: run `calsync db upgrade`.")
