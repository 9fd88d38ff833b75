"""Fixtures for the fleet tests: a migrated database (SQLite and PostgreSQL) and a small world builder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import make_session_factory, transaction
from calsync.syncbackend import migrate
from calsync.syncbackend.models import AuditEntry, CalendarConnection, Feedback, SyncRun, User
from tests.conftest import FrozenClock


@pytest.fixture
def sessions(database_url: str, engine: Engine) -> Iterator[sessionmaker[Session]]:
    migrate.upgrade(database_url)
    yield make_session_factory(engine)


@dataclass
class Builder:
    """Reps, connections, runs and audit entries, written the way calsync writes them."""

    sessions: sessionmaker[Session]
    clock: FrozenClock

    def rep(self, email: str, *connections: dict[str, object], role: str = "rep") -> int:
        with transaction(self.sessions) as session:
            user = User(email=email, name=email.split("@")[0].title(), role=role)
            session.add(user)
            session.flush()
            for spec in connections:
                spec = dict(spec)
                runs = spec.pop("runs", [])
                connection = CalendarConnection(
                    user_id=user.id,
                    provider=spec.pop("provider", "google"),
                    account_email=spec.pop("account", email),
                    refresh_token_encrypted=None if spec.pop("no_tokens", False) else b"ciphertext",
                    **spec,
                )
                session.add(connection)
                session.flush()
                for ago, status, code in runs:  # type: ignore[attr-defined]
                    at = self.clock() - timedelta(minutes=ago)
                    session.add(
                        SyncRun(
                            connection_id=connection.id,
                            direction="push",
                            started_at=at,
                            finished_at=at,
                            status=status,
                            error_code=code,
                        )
                    )
            return user.id

    def audit(self, user_id: int, action: str, at: datetime) -> None:
        with transaction(self.sessions) as session:
            session.add(
                AuditEntry(at=at, actor="x", action=action, subject_user_id=user_id, detail={}, result="")
            )

    def feedback(self, diagnosis_id: str, helpful: bool, at: datetime) -> None:
        with transaction(self.sessions) as session:
            session.add(Feedback(at=at, diagnosis_id=diagnosis_id, article_id=None, helpful=helpful))


@pytest.fixture
def build(sessions: sessionmaker[Session], clock: FrozenClock) -> Builder:
    return Builder(sessions, clock)


# The bot over signed Slack requests, against the Slack emulator (tests/bot's harness).
from tests.bot.conftest import slack, slack_server  # noqa: E402, F401
