"""Who a Slack user is to calsync: their SalesPartner user, found by stored Slack id or by email, and
the rep a stored answer was made for (the subject of its diagnosis' audit entry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import AnyRow, core_reading, table_of
from calsync.syncbackend.models import AuditEntry, User


@dataclass(frozen=True)
class Person:
    """A Slack user as far as calsync is concerned."""

    slack_user_id: str
    email: str | None  # their SalesPartner email, None when they have no SalesPartner account
    name: str = ""
    role: str = "rep"
    user_id: int | None = None


def _person(slack_user_id: str, user: User | AnyRow) -> Person:
    return Person(slack_user_id, user.email, user.name, user.role, user.id)


_USERS = table_of(User)
# Who is asking, looked up for every message: SQLAlchemy Core, built once (see diagnostics/state.py).
_BY_SLACK_ID = select(_USERS.c.id, _USERS.c.email, _USERS.c.name, _USERS.c.role).where(
    _USERS.c.slack_user_id == bindparam("slack_user_id")
)


def by_slack_id(sessions: sessionmaker[Session], slack_user_id: str) -> Person | None:
    with core_reading(sessions) as connection:
        user = connection.execute(_BY_SLACK_ID, {"slack_user_id": slack_user_id}).first()
        return _person(slack_user_id, user) if user else None


def by_email(sessions: sessionmaker[Session], slack_user_id: str, email: str | None, name: str) -> Person:
    """The user with this email (as `slack_user_id`), or a `Person` with no email when there is none."""
    if not email:
        return Person(slack_user_id, None, name)
    with sessions() as session:
        user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
        return _person(slack_user_id, user) if user is not None else Person(slack_user_id, None, name)


def slack_id_of(sessions: sessionmaker[Session], email: str) -> str | None:
    with sessions() as session:
        return session.scalars(select(User.slack_user_id).where(User.email == email.strip().lower())).first()


def active_providers(sessions: sessionmaker[Session], email: str) -> list[str]:
    """The providers of the user's active connections, sorted."""
    with sessions() as session:
        user = session.scalars(select(User).where(User.email == email)).first()
        if user is None:
            return []
        return sorted({connection.provider for connection in user.connections if connection.active})


def owner_of(sessions: sessionmaker[Session], diagnosis: Any) -> Person | None:
    """The rep a stored answer was made for: the subject of its diagnosis (the audit entry)."""
    try:
        entry_id = int(str(diagnosis))
    except ValueError:
        return None
    with sessions() as session:
        entry = session.get(AuditEntry, entry_id)
        user = session.get(User, entry.subject_user_id) if entry and entry.subject_user_id else None
        return _person(user.slack_user_id or "", user) if user is not None else None
