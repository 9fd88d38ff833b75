"""Alembic environment for the sync backend's schema.

The database URL comes from `config.attributes["url"]` (set by `calsync.syncbackend.migrate`), else
from `-x url=...` on the alembic command line, else from `Settings` (DATABASE_URL or the default
SQLite file). A caller may also hand over an open connection in `config.attributes["connection"]`.
Tables named `sandbox_*` belong to the sandbox world, which creates them itself: they are ignored.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import make_url, pool
from sqlalchemy.engine import Connection

from calsync.syncbackend import models
from calsync.syncbackend.migrate import configure_options, database_url_for, prepare_sqlite_path

config = context.config
target_metadata = models.Base.metadata

if config.config_file_name is not None and config.get_section("loggers") is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade head --sql`) instead of running it."""
    url = database_url_for(config, context.get_x_argument(as_dictionary=True))
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection, *, own_connection: bool) -> None:
    sqlite = connection.dialect.name == "sqlite" and own_connection
    if sqlite:
        # Batch migrations rebuild SQLite tables (copy, drop, rename). With foreign keys enforced, the
        # DROP would cascade deletes into child tables, so enforcement is off while migrating. The
        # pragma only works outside a transaction, hence the commit before Alembic begins its own.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection, target_metadata=target_metadata, **configure_options(connection.dialect.name)
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        run_on(given, own_connection=False)
        return
    from calsync.db import make_engine

    url = database_url_for(config, context.get_x_argument(as_dictionary=True))
    prepare_sqlite_path(url)
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            run_on(connection, own_connection=True)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
