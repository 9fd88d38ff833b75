"""What the web app asks of the database itself: whether it answers (`GET /healthz`)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError


def database_is_up(engine: Engine) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    return check


__all__ = ["database_is_up"]
