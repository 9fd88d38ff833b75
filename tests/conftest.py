"""Shared fixtures: the socket guard, the clock, and the databases every database test runs on.

The database fixtures run each test on SQLite and, when `TEST_POSTGRES_URL` is set (the Makefile
and CI set it), on PostgreSQL too: a fresh database per test session, dropped at the end.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from calsync.db import make_engine

# -- socket guard ---------------------------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class ExternalNetworkCall(AssertionError):
    pass


def _is_loopback(address: Any) -> bool:
    if isinstance(address, (str, bytes)):
        return True  # AF_UNIX path
    if not (isinstance(address, tuple) and address):
        return False
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise ExternalNetworkCall(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        raise ExternalNetworkCall(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name not in (None, "localhost") and not _looks_like_loopback_ip(name):
        raise ExternalNetworkCall(f"test tried to resolve {name!r}: only loopback is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


def _looks_like_loopback_ip(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = _guarded_getaddrinfo
    # The trained matcher is cached per session (the CLI subprocesses inherit it), never in $HOME.
    if "CALSYNC_CACHE_DIR" not in os.environ:
        os.environ["CALSYNC_CACHE_DIR"] = tempfile.mkdtemp(prefix="calsync-test-cache-")


# -- clock ----------------------------------------------------------------------------------------


class FrozenClock:
    """An injectable clock: `clock()` returns now; tests move it with `advance`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now = self.now + timedelta(**delta)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))


# -- databases ------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "").strip()
DATABASE_BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server, dropped afterwards; its URL."""
    admin_url = make_url(POSTGRES_URL)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    with fresh_postgres_database("calsync_test") as url:
        yield url


@pytest.fixture(params=DATABASE_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a PostgreSQL schema reset for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'calsync.db'}"
        return
    url: str = request.getfixturevalue("postgres_server_url")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    built = make_engine(database_url)
    yield built
    built.dispose()


# -- the sandbox: real emulators, a migrated database, real provider clients -----------------------


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Emulators and a migrated SQLite database shared by the session's sandbox tests."""
    from calsync.sandbox.runtime import SandboxRuntime
    from calsync.sandbox.world import World
    from calsync.syncbackend import migrate
    from calsync.syncbackend.crypto import TokenCipher, generate_key
    from tests.harness import MutableClock, Sandbox

    directory = tmp_path_factory.mktemp("sandbox")
    url = f"sqlite:///{directory / 'calsync.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    world = World(engine)
    clock = MutableClock()
    with SandboxRuntime(world, directory, clock) as endpoints:
        yield Sandbox.build(engine, world, TokenCipher([generate_key()]), clock, endpoints, directory)
    engine.dispose()


@pytest.fixture
def sandbox(sandbox_session: Any) -> Any:
    """The shared sandbox, emptied for this test."""
    sandbox_session.reset()
    return sandbox_session
