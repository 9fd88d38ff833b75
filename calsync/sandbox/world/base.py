"""The world's engine and sessions, its tables' life cycle, and the change counter (versioning)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import RowMapping, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import make_session_factory, transaction
from calsync.sandbox.world.tables import SandboxBase, SandboxCounter

_T = TypeVar("_T", bound=SandboxBase)


def _loaded(model: type[_T], row: RowMapping) -> _T:
    """A `model` instance with its columns' values from a Core row (which may hold other tables'
    columns too): what a session would have loaded, without the session."""
    table = model.__table__
    return model(**{column.key: row[column] for column in table.c})


class WorldBase:
    """Access to the sandbox world in one database. Thread-safe: every call uses its own session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_session_factory(engine)

    def create_tables(self) -> None:
        SandboxBase.metadata.create_all(self.engine)
        self._ensure_counter()

    def reset(self) -> None:
        """Empty every sandbox table (the product tables are left alone). The change counter keeps
        counting, so a cursor from before the reset never matches a state after it."""
        with transaction(self.sessions) as session:
            for table in reversed(SandboxBase.metadata.sorted_tables):
                if table.name != SandboxCounter.__tablename__:
                    session.execute(table.delete())
        self._ensure_counter()

    def _ensure_counter(self) -> None:
        """The counter's one row exists from the moment the tables do, so concurrent first writes
        only ever update it (two inserting it at once would collide)."""
        try:
            with transaction(self.sessions) as session:
                if session.get(SandboxCounter, 1) is None:
                    session.add(SandboxCounter(id=1, value=0))
        except IntegrityError:
            pass  # another process made it in the same moment: there is one row, as wanted

    def next_version(self, session: Session) -> int:
        """Bump and return the world's change counter inside the caller's transaction: one atomic
        UPDATE ... RETURNING, so concurrent writers each get their own value on SQLite and PostgreSQL."""
        value = session.execute(
            update(SandboxCounter)
            .where(SandboxCounter.id == 1)
            .values(value=SandboxCounter.value + 1)
            .returning(SandboxCounter.value)
        ).scalar_one()
        return int(value)

    def current_version(self) -> int:
        with self.sessions() as session:
            counter = session.get(SandboxCounter, 1)
            return counter.value if counter else 0
