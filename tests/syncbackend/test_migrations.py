"""Alembic migrations: up, down, up again; no drift from the models; the sandbox's tables left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from calsync.db import make_engine
from calsync.sandbox.world import SandboxBase
from calsync.syncbackend import migrate
from calsync.syncbackend.models import Base

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCT_TABLES = {
    "users",
    "calendar_connections",
    "appointments",
    "event_links",
    "sync_runs",
    "audit_log",
    "processed_events",
    "feedback",
    "oauth_sessions",
    "cancellation_holds",
}
HEAD = "0004"


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema_drift(engine: Engine) -> list[object]:
    """What autogenerate would write for this database, with the same options env.py uses."""
    with engine.connect() as connection:
        options = migrate.configure_options(connection.dialect.name)
        context = MigrationContext.configure(connection, opts={"target_metadata": Base.metadata, **options})
        return list(compare_metadata(context, Base.metadata))


def test_models_and_migration_list_the_same_tables() -> None:
    assert set(Base.metadata.tables) == PRODUCT_TABLES


def test_upgrade_downgrade_upgrade(database_url: str, engine: Engine) -> None:
    assert migrate.current(database_url) is None

    migrate.upgrade(database_url)
    assert migrate.current(database_url) == migrate.head() == HEAD
    assert table_names(engine) >= PRODUCT_TABLES

    migrate.downgrade(database_url, "base")
    assert migrate.current(database_url) is None
    assert not PRODUCT_TABLES & table_names(engine)

    migrate.upgrade(database_url)
    assert migrate.current(database_url) == HEAD
    assert table_names(engine) >= PRODUCT_TABLES


def test_0002_adds_and_removes_only_oauth_sessions(database_url: str, engine: Engine) -> None:
    migrate.upgrade(database_url, "0001")
    assert "oauth_sessions" not in table_names(engine)
    migrate.upgrade(database_url)
    assert "oauth_sessions" in table_names(engine)
    migrate.downgrade(database_url, "0001")
    assert migrate.current(database_url) == "0001"
    assert table_names(engine) >= PRODUCT_TABLES - {"oauth_sessions", "cancellation_holds"}
    assert not {"oauth_sessions", "cancellation_holds"} & table_names(engine)


def test_no_drift_between_models_and_migrations(database_url: str, engine: Engine) -> None:
    migrate.upgrade(database_url)
    assert schema_drift(engine) == []


def test_drift_check_does_see_a_difference(database_url: str, engine: Engine) -> None:
    """Guard for the test above: after a downgrade the same check reports every missing table."""
    migrate.upgrade(database_url)
    migrate.downgrade(database_url, "base")
    added = {
        diff[1].name for diff in schema_drift(engine) if isinstance(diff, tuple) and diff[0] == "add_table"
    }
    assert added == PRODUCT_TABLES


def test_sandbox_tables_are_ignored_and_left_alone(database_url: str, engine: Engine) -> None:
    SandboxBase.metadata.create_all(engine)
    sandbox_tables = set(SandboxBase.metadata.tables)

    migrate.upgrade(database_url)
    assert schema_drift(engine) == []  # autogenerate would not drop them

    migrate.downgrade(database_url, "base")
    assert table_names(engine) - {"alembic_version"} == sandbox_tables


@pytest.mark.parametrize(
    ("table", "kind", "name"),
    [
        ("users", "unique", "uq_users_email"),
        ("users", "unique", "uq_users_slack_user_id"),
        ("event_links", "unique", "uq_event_links_appointment_id_connection_id"),
        ("calendar_connections", "foreign_key", "fk_calendar_connections_user_id_users"),
        ("sync_runs", "foreign_key", "fk_sync_runs_connection_id_calendar_connections"),
        ("calendar_connections", "index", "ix_calendar_connections_user_active"),
        ("sync_runs", "index", "ix_sync_runs_connection_direction_started"),
        ("users", "check", "ck_users_role"),
        ("oauth_sessions", "unique", "uq_oauth_sessions_link_nonce"),
        ("oauth_sessions", "foreign_key", "fk_oauth_sessions_user_id_users"),
        ("appointments", "check", "ck_appointments_end_not_before_start"),
        ("cancellation_holds", "check", "ck_cancellation_holds_status"),
        ("cancellation_holds", "index", "ix_cancellation_holds_connection_status"),
        ("sync_runs", "check", "ck_sync_runs_status"),
    ],
    ids=lambda value: str(value),
)
def test_constraints_are_named_by_the_convention(
    database_url: str, engine: Engine, table: str, kind: str, name: str
) -> None:
    migrate.upgrade(database_url)
    inspector = inspect(engine)
    listers: dict[str, Callable[[str], Sequence[Mapping[str, Any]]]] = {
        "unique": inspector.get_unique_constraints,
        "foreign_key": inspector.get_foreign_keys,
        "index": inspector.get_indexes,
        "check": inspector.get_check_constraints,
    }
    assert name in {item["name"] for item in listers[kind](table)}


def test_0004_lets_a_sync_run_be_held_and_downgrades_held_runs_to_errors(
    database_url: str, engine: Engine
) -> None:
    migrate.upgrade(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, name, role, created_at) VALUES (1, 'a@x.example', '', 'rep', '2026-01-01')"
        )
        connection.exec_driver_sql(
            "INSERT INTO calendar_connections (id, user_id, provider, account_email, status, scopes, active,"
            " created_at, sync_failures) VALUES (1, 1, 'google', 'a@x.example', 'connected', '', true,"
            " '2026-01-01', 0)"
        )
        connection.exec_driver_sql(
            "INSERT INTO sync_runs (connection_id, direction, started_at, status, counts)"
            " VALUES (1, 'pull', '2026-01-01', 'held', '{}')"
        )
    migrate.downgrade(database_url, "0003")
    with engine.connect() as connection:
        assert [row[0] for row in connection.exec_driver_sql("SELECT status FROM sync_runs")] == ["error"]
    assert "cancellation_holds" not in table_names(engine)
    migrate.upgrade(database_url)
    assert migrate.current(database_url) == HEAD


def test_upgrade_creates_the_sqlite_directory_from_any_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the script location must not depend on the working directory
    database = tmp_path / "does" / "not" / "exist" / "calsync.db"
    url = f"sqlite:///{database}"

    assert migrate.current(url) is None
    assert not database.exists()  # asking does not create the file

    migrate.upgrade(url)
    assert database.is_file()
    assert migrate.current(url) == HEAD


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CALSYNC_"))}
    env.update(extra)
    return env


def test_calsync_db_upgrade_command(tmp_path: Path) -> None:
    database = tmp_path / "state" / "sub" / "calsync.db"
    env = _clean_env(DATABASE_URL=f"sqlite:///{database}", CALSYNC_STATE_DIR=str(tmp_path / "state"))
    command = [sys.executable, "-m", "calsync.app", "db"]

    upgraded = subprocess.run(
        [*command, "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert database.is_file()
    assert upgraded.stdout == ""
    assert f"revision {HEAD} (head)" in upgraded.stderr

    current = subprocess.run(
        [*command, "current"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert current.returncode == 0, current.stderr
    assert current.stdout == f"{HEAD}\n"

    engine = make_engine(f"sqlite:///{database}")
    try:
        assert table_names(engine) >= PRODUCT_TABLES
    finally:
        engine.dispose()

    downgraded = subprocess.run(
        [*command, "downgrade", "base"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert downgraded.returncode == 0, downgraded.stderr
    assert "revision base" in downgraded.stderr


def test_calsync_db_upgrade_reports_an_unreachable_database(tmp_path: Path) -> None:
    env = _clean_env(DATABASE_URL="postgresql+psycopg://calsync:s3cret-pw@127.0.0.1:1/calsync")
    result = subprocess.run(
        [sys.executable, "-m", "calsync.app", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reach" in result.stderr
    assert "s3cret-pw" not in result.stderr
    assert "Traceback" not in result.stderr


def test_alembic_command_line_uses_the_root_ini(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(REPO_ROOT / "alembic.ini"),
            "-x",
            f"url=sqlite:///{database}",
            "upgrade",
            "head",
        ],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert migrate.current(f"sqlite:///{database}") == HEAD
