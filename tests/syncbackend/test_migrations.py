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
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

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
    "quota_keys",
    "quota_calls",
    "report_views",
    "queued_questions",
    "answer_records",
    "incidents",
    "incident_reps",
}
HEAD = "0011"


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
    later = {
        "oauth_sessions",
        "cancellation_holds",
        "quota_keys",
        "quota_calls",
        "report_views",
        "queued_questions",
        "answer_records",
        "incidents",
        "incident_reps",
    }  # 0002 on
    assert table_names(engine) >= PRODUCT_TABLES - later
    assert not later & table_names(engine)


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
    # procrastinate's tables (PostgreSQL) stay too: 0008 creates them only when missing and never drops them.
    queue_tables = {name for name in table_names(engine) if name.startswith("procrastinate_")}
    assert table_names(engine) - {"alembic_version"} - queue_tables == sandbox_tables


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
        ("calendar_connections", "index", "uq_calendar_connections_active_account"),
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


# (id, provider, account, active, authorized_at, created_at): one rep's connections before 0005
DOUBLES = [
    (1, "microsoft", "ben@x.example", True, "2026-10-01 09:00:00", "2026-10-01 09:00:00"),
    (2, "microsoft", "ben@x.example", True, "2026-11-20 09:00:00", "2026-11-20 09:00:00"),  # newest
    (3, "microsoft", "ben@x.example", True, None, "2026-11-21 09:00:00"),  # never authorized
    (4, "microsoft", "ben@x.example", False, "2026-11-22 09:00:00", "2026-11-22 09:00:00"),  # inactive
    (5, "google", "ben@x.example", True, "2026-09-01 09:00:00", "2026-09-01 09:00:00"),  # another provider
    (6, "microsoft", "ben.private@x.example", True, "2026-09-01 09:00:00", "2026-09-01 09:00:00"),
    (7, "google", "cy@x.example", True, "2026-11-01 09:00:00", "2026-11-01 09:00:00"),  # the tie: same times
    (8, "google", "cy@x.example", True, "2026-11-01 09:00:00", "2026-11-01 09:00:00"),
]


def test_0005_keeps_the_newest_of_each_double_and_then_forbids_doubles(
    database_url: str, engine: Engine
) -> None:
    migrate.upgrade(database_url, "0004")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, name, role, created_at) VALUES (1, 'ben@x.example', '', 'rep',"
            " '2026-01-01'), (2, 'cy@x.example', '', 'rep', '2026-01-01')"
        )
        for id_, provider, account, active, authorized, created in DOUBLES:
            connection.execute(
                text(
                    "INSERT INTO calendar_connections (id, user_id, provider, account_email, status, scopes,"
                    " active, authorized_at, created_at, sync_failures) VALUES (:id, :user, :provider,"
                    " :account, 'connected', '', :active, :authorized, :created, 0)"
                ),
                {
                    "id": id_,
                    "user": 2 if account.startswith("cy") else 1,
                    "provider": provider,
                    "account": account,
                    "active": active,
                    "authorized": authorized,
                    "created": created,
                },
            )

    migrate.upgrade(database_url)

    with engine.connect() as connection:
        rows = {
            row[0]: tuple(row[1:])
            for row in connection.exec_driver_sql(
                "SELECT id, active, status, status_code, status_reason FROM calendar_connections ORDER BY id"
            )
        }
    assert {id_ for id_, row in rows.items() if row[0]} == {2, 5, 6, 8}
    for resolved, kept in ((1, 2), (3, 2), (7, 8)):
        assert rows[resolved][1:3] == ("disconnected", "duplicate")
        assert f"connection {kept} is kept" in rows[resolved][3]
    assert rows[4][1:3] == ("connected", None)  # was inactive already: untouched
    assert rows[5][1:3] == ("connected", None)

    with (
        pytest.raises(
            IntegrityError,
            match=r"uq_calendar_connections_active_account|UNIQUE constraint failed: "
            r"calendar_connections\.user_id",
        ),
        engine.begin() as connection,
    ):  # the backstop holds
        connection.exec_driver_sql(
            "INSERT INTO calendar_connections (id, user_id, provider, account_email, status, scopes, active,"
            " created_at, sync_failures) VALUES (100, 1, 'microsoft', 'ben@x.example', 'connected', '', true,"
            " '2026-12-01', 0)"
        )
    with engine.begin() as connection:  # an inactive one more is fine
        connection.exec_driver_sql(
            "INSERT INTO calendar_connections (id, user_id, provider, account_email, status, scopes, active,"
            " created_at, sync_failures) VALUES (101, 1, 'microsoft', 'ben@x.example', 'disconnected', '',"
            " false, '2026-12-01', 0)"
        )

    migrate.downgrade(database_url, "0004")
    index_names = {index["name"] for index in inspect(engine).get_indexes("calendar_connections")}
    assert "uq_calendar_connections_active_account" not in index_names
    migrate.upgrade(database_url)
    assert migrate.current(database_url) == HEAD


def test_0007_moves_report_claims_out_of_processed_events_and_back(database_url: str, engine: Engine) -> None:
    """A report opened before the upgrade stays claimed after it (and after a downgrade)."""
    digest = "ab" * 32
    migrate.upgrade(database_url, "0006")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO processed_events (event_id, received_at) VALUES (:id, :at)"),
            [
                {"id": f"report-claim:{digest}", "at": "2026-12-01 10:00:00"},
                {"id": "Ev1", "at": "2026-12-01 10:00:00"},
            ],
        )
    migrate.upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT nonce_digest FROM report_views")).scalars().all() == [digest]
        assert connection.execute(text("SELECT event_id FROM processed_events")).scalars().all() == ["Ev1"]
    migrate.downgrade(database_url, "0006")
    assert "report_views" not in table_names(engine)
    with engine.connect() as connection:
        events = connection.execute(text("SELECT event_id FROM processed_events ORDER BY event_id"))
        assert events.scalars().all() == ["Ev1", f"report-claim:{digest}"]


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
    command = [sys.executable, "-m", "calsync", "db"]

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
        [sys.executable, "-m", "calsync", "db", "upgrade"],
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
