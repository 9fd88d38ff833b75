"""Scenario files: times, validation with line numbers, loading on SQLite and PostgreSQL, no half-loads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from calsync.db import make_session_factory
from calsync.sandbox.scenario import ScenarioError, load_scenario, parse_when, read_scenario
from calsync.sandbox.world import SandboxEvent, SandboxFault, SandboxGrant, World
from calsync.syncbackend import migrate
from calsync.syncbackend.crypto import TokenCipher, generate_key
from calsync.syncbackend.models import Appointment, CalendarConnection, EventLink, SyncRun, User
from tests.conftest import FrozenClock

DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-4m", NOW - timedelta(minutes=4)),
        ("+1d2h", NOW + timedelta(days=1, hours=2)),
        ("-30s", NOW - timedelta(seconds=30)),
        ("today 14:00", datetime(2026, 11, 24, 14, 0, tzinfo=UTC)),
        ("tomorrow 09:30", datetime(2026, 11, 25, 9, 30, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
        ("2026-12-01T10:00:00+01:00", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("2026-12-01 10:00", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
    ],
    ids=[
        "now",
        "minutes-ago",
        "days-hours-ahead",
        "seconds",
        "today-at",
        "tomorrow-at",
        "yesterday",
        "iso-offset",
        "iso-naive-utc",
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["soon", "4m", "-4x", "today 25:99x", ""])
def test_parse_when_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="is not a time"):
        parse_when(text, NOW)


def test_demo_scenario_describes_every_listed_problem() -> None:
    scenario = read_scenario(DEMO)
    reps = [user for user in scenario.users if user.role == "rep"]
    assert len(reps) >= 12
    assert all(user.problem for user in scenario.users)
    assert {fault.kind for fault in scenario.faults} >= {"rate_limit", "unavailable"}


GOOD_HEAD = """\
accounts:
  - provider: google
    email: a@x.example
    calendars:
      - {id: a@x.example, name: A, primary: true}
users:
  - email: a@x.example
    connections:
      - {provider: google, account: a@x.example, selected_calendar: a@x.example}
"""

# The same email connected on Google and on Outlook (a provider switch): a sync run must say which.
AMBIGUOUS = """\
accounts:
  - {provider: google, email: a@x.example}
  - {provider: microsoft, email: a@x.example}
users:
  - email: a@x.example
    connections:
      - {provider: google, account: a@x.example, active: false}
      - {provider: microsoft, account: a@x.example}
    sync_runs:
      - {connection: a@x.example, provider: microsoft, direction: push, started: -1h}
      - {connection: a@x.example, provider: google, direction: push, started: -9d}
      - {connection: a@x.example, direction: push, started: -1h}
"""

MALFORMED = [
    pytest.param("accounts: [\n  - provider: google\n", 2, "not valid YAML", id="yaml-syntax"),
    pytest.param("- just\n- a list\n", 1, "a scenario is a mapping", id="not-a-mapping"),
    pytest.param("", None, "the file is empty", id="empty"),
    pytest.param(
        GOOD_HEAD + "    rol: agent\n", 10, "users.0.rol: Extra inputs are not permitted", id="unknown-field"
    ),
    pytest.param(
        GOOD_HEAD.replace("provider: google\n    email", "provider: yahoo\n    email"),
        2,
        "accounts.0.provider",
        id="unknown-provider",
    ),
    pytest.param(
        GOOD_HEAD + "    appointments:\n      - {id: a1, title: T, start: whenever}\n",
        11,
        "is not a time",
        id="bad-time",
    ),
    pytest.param(
        GOOD_HEAD.replace("account: a@x.example", "account: b@x.example"),
        9,
        "no google account b@x.example",
        id="unknown-account",
    ),
    pytest.param(
        GOOD_HEAD + "  - email: A@x.example\n",
        10,
        "a@x.example is listed twice",
        id="duplicate-user",
    ),
    pytest.param(
        GOOD_HEAD.replace(
            "primary: true}", "primary: true, events: [{title: E, start: now, appointment: nope}]}"
        ),
        5,
        "no appointment with id nope",
        id="event-for-unknown-appointment",
    ),
    pytest.param(
        GOOD_HEAD + "    sync_runs:\n      - {connection: z@x.example, direction: push, started: -1h}\n",
        11,
        "not one of this user's connections",
        id="run-on-foreign-connection",
    ),
    pytest.param(
        AMBIGUOUS,
        12,
        "connected on more than one provider: say which with `provider:`",
        id="ambiguous-connection",
    ),
    pytest.param(
        GOOD_HEAD + "faults:\n  - {provider: google, kind: meltdown}\n",
        11,
        "faults.0.kind",
        id="unknown-fault",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), MALFORMED)
def test_malformed_scenarios_name_the_line(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        read_scenario(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)
    if line is not None:
        assert f"line {line}:" in str(raised.value)


@pytest.fixture
def migrated(engine: Engine, database_url: str) -> Engine:
    migrate.upgrade(database_url)
    return engine


def _load(engine: Engine, path: Path, cipher: TokenCipher, clock: FrozenClock) -> None:
    load_scenario(
        path, sessions=make_session_factory(engine), world=World(engine), cipher=cipher, clock=clock
    )


def test_demo_loads_backend_and_world_together(migrated: Engine, clock: FrozenClock) -> None:
    cipher = TokenCipher([generate_key()])
    _load(migrated, DEMO, cipher, clock)
    sessions = make_session_factory(migrated)
    with sessions() as session:
        carla = session.scalars(select(User).where(User.email == "carla@northwind.example")).one()
        connection = carla.connections[0]
        auth = connection.authorization(cipher)
        grant = session.scalars(
            select(SandboxGrant).where(SandboxGrant.refresh_token == auth.refresh_token)
        ).one()
        assert grant.status == "revoked"
        assert auth.refresh_token.encode() not in (connection.refresh_token_encrypted or b"")
        kate_pending = session.scalars(select(Appointment).where(Appointment.id == "kate-pied-piper")).one()
        assert kate_pending.booked_at == clock() - timedelta(minutes=4)
        assert (session.scalar(select(func.count()).select_from(SyncRun)) or 0) > 10
        assert (session.scalar(select(func.count()).select_from(EventLink)) or 0) > 10
        assert session.scalar(select(func.count()).select_from(SandboxFault)) == 4
        cancelled = session.scalars(select(SandboxEvent).where(SandboxEvent.event_id == "nora-ev-1")).one()
        assert cancelled.status == "cancelled"


def test_loading_twice_replaces_rather_than_doubles(migrated: Engine, clock: FrozenClock) -> None:
    cipher = TokenCipher([generate_key()])
    _load(migrated, DEMO, cipher, clock)
    _load(migrated, DEMO, cipher, clock)
    with make_session_factory(migrated)() as session:
        assert session.scalar(select(func.count()).select_from(User)) == len(read_scenario(DEMO).users)
        assert session.scalar(select(func.count()).select_from(SandboxEvent)) == 18


def test_a_failing_load_leaves_the_previous_world_untouched(
    migrated: Engine, clock: FrozenClock, tmp_path: Path
) -> None:
    cipher = TokenCipher([generate_key()])
    _load(migrated, DEMO, cipher, clock)
    with make_session_factory(migrated)() as session:
        before = session.scalar(select(func.count()).select_from(CalendarConnection))
    broken = tmp_path / "broken.yaml"
    # Valid on its own, but its Slack id is already taken by a demo user it does not replace.
    broken.write_text(
        GOOD_HEAD.replace(
            "  - email: a@x.example\n", "  - email: a@x.example\n    slack_user_id: U0DEMOANA\n"
        )
    )
    with pytest.raises(ScenarioError, match="nothing was loaded"):
        _load(migrated, broken, cipher, clock)
    with make_session_factory(migrated)() as session:
        assert session.scalar(select(func.count()).select_from(CalendarConnection)) == before
        assert session.scalar(select(func.count()).select_from(SandboxEvent)) == 18


def test_loading_reports_its_progress_account_by_account_and_user_by_user(
    migrated: Engine, clock: FrozenClock
) -> None:
    """What `calsync sandbox load` draws its bar from: (done, total) of the accounts and users."""
    heard: list[tuple[int, int]] = []
    loaded = load_scenario(
        DEMO,
        sessions=make_session_factory(migrated),
        world=World(migrated),
        cipher=TokenCipher([generate_key()]),
        clock=clock,
        progress=lambda done, total: heard.append((done, total)),
    )
    total = loaded.accounts + loaded.users
    assert heard == [(done, total) for done in range(1, total + 1)]
