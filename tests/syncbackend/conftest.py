"""Fixtures for the sync-backend tests: a migrated database (SQLite and PostgreSQL) and a cipher."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import make_session_factory
from calsync.syncbackend import migrate
from calsync.syncbackend.crypto import TokenCipher, generate_key


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """The test database, upgraded to the newest revision."""
    migrate.upgrade(database_url)
    return database_url


@pytest.fixture
def sessions(migrated_url: str, engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher([generate_key()])
