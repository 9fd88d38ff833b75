"""Run the sync backend's Alembic migrations from code (the `calsync db ...` commands, tests, the demo).

The Alembic `Config` is built here, with the script location taken from this package, so it works
from a source checkout, an installed wheel and any working directory alike. The root `alembic.ini`
points at the same directory for the `alembic` command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url, pool
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SANDBOX_TABLE_PREFIX = "sandbox_"


_NOT_OURS = (SANDBOX_TABLE_PREFIX, "procrastinate_")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave the sandbox world's tables and the answer queue's (procrastinate's, on PostgreSQL, with
    their indexes and constraints) out of the models' comparison: they have schemas of their own."""
    if type_ == "table":
        return not (name or "").startswith(_NOT_OURS)
    table = getattr(obj, "table", None)
    table_name = getattr(table, "name", None)
    return not (isinstance(table_name, str) and table_name.startswith(_NOT_OURS))


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render our column types as plain SQLAlchemy types, so migrations never import application code."""
    from calsync.db import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_options(dialect_name: str) -> dict[str, Any]:
    """The `context.configure` options shared by env.py and the schema-drift check in the tests."""
    return {
        "include_object": include_object,
        "render_item": render_item,
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
    }


def database_url_for(config: Config, x_arguments: dict[str, str] | None = None) -> str:
    """The URL to migrate: set in code, or `-x url=...`, or from Settings (DATABASE_URL / default file)."""
    url = config.attributes.get("url") or (x_arguments or {}).get("url")
    if url:
        return str(url)
    from calsync.settings import Settings

    return Settings().resolved_database_url


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases, in-memory ones and URI filenames."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # URI filename: left to SQLite
        return None
    return Path(database).expanduser()


def prepare_sqlite_path(url: str) -> None:
    """Create the directory of a SQLite database file if it is missing."""
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head", progress: Callable[[int, int], None] | None = None) -> None:
    """Bring the database at `url` up to `revision` (creating a SQLite file and its directory if needed).
    With `progress`, one migration at a time, each heard as `(done, total)`."""
    prepare_sqlite_path(url)
    config = alembic_config(url)
    steps = _pending(url, revision) if progress is not None else None
    if progress is None or steps is None:
        command.upgrade(config, revision)
        return
    progress(0, len(steps))
    for done, step in enumerate(steps, start=1):
        command.upgrade(config, step)
        progress(done, len(steps))


def _pending(url: str, revision: str) -> list[str] | None:
    """The revisions an upgrade to `revision` runs, oldest first; None when that is not a plain
    revision on one line of history (a relative one, a branch point): then it runs in one go."""
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config())
    try:
        steps = list(script.iterate_revisions(revision, current(url) or "base"))
    except CommandError:
        return None
    if any(isinstance(step.down_revision, tuple) for step in steps):
        return None
    return [step.revision for step in reversed(steps)]


def downgrade(url: str, revision: str) -> None:
    """Take the database at `url` down to `revision` ("base" drops every sync-backend table)."""
    command.downgrade(alembic_config(url), revision)


def head() -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(url: str) -> str | None:
    """The revision the database at `url` is at; None when it was never migrated (or does not exist)."""
    from calsync.db import make_engine

    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return None  # asking must not create an empty database file

    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return current_on(connection)
    finally:
        engine.dispose()


def current_on(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
