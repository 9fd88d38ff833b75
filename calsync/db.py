"""Database plumbing shared by the sync backend and the sandbox: engines, sessions, column types."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import Connection, DateTime, Engine, Row, Table, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which drops zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so several processes can share the file."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs the log at checkpoints rather than at every commit: still never
            # a corrupt database, and a commit survives any crash of calsync, but the last ones
            # may be lost in a power cut or OS crash. Each fsync saved is CPU every answer spent
            # (an answer commits three short transactions: quota admission and release, the audit).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


# A row of a Core SELECT of a whole table (its columns by name: `row.email`).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def table_of(model: type[DeclarativeBase]) -> Table:
    """A mapped class's table, for SQLAlchemy Core statements built once (on the paths run per
    request, building a statement and its cache key costs about as much as running it)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def engine_of(factory: sessionmaker[Session]) -> Engine:
    """The engine a session factory is bound to."""
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError(f"the session factory is bound to {bind!r}, not to an engine")
    return bind


@contextmanager
def core_transaction(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection of the factory's engine in a transaction that commits on success and rolls back
    on any error: for the Core statements run on every answer and provider call, where a `Session`
    around them (its transaction bookkeeping, begin and close) costs more than SQLite takes to run a
    short transaction."""
    with engine_of(factory).begin() as connection:
        yield connection


@contextmanager
def core_reading(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection of the factory's engine for Core reads (its transaction ends with a rollback)."""
    with engine_of(factory).connect() as connection:
        yield connection


def libpq_conninfo(engine: Engine) -> str | None:
    """The engine's PostgreSQL database as libpq takes it (for psycopg pools outside SQLAlchemy, such
    as the answer queue's); None for any other database."""
    if engine.url.get_backend_name() != "postgresql":
        return None
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
