"""Mistakes a person can fix, told in a sentence instead of a traceback.

`explain` turns the exceptions that come from the settings, the database URL, the database server,
the key files and the port into one line that names the setting and what to do; anything else is a
bug, and keeps its traceback. `calsync --debug …` (or `CALSYNC_DEBUG=1`) shows the traceback always.
"""

from __future__ import annotations

import errno
import os

DEBUG_VARIABLE = "CALSYNC_DEBUG"
DATABASE_EXAMPLES = "sqlite:////path/to/calsync.db or postgresql+psycopg://user@host:5432/calsync"


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


def explain(error: BaseException) -> str | None:
    """What to tell the person about `error` (or the error it was raised from), or None for a bug."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sentence = _explain_one(current)
        if sentence is not None:
            return sentence
        current = current.__cause__ or current.__context__
    return None


def _explain_one(error: BaseException) -> str | None:
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    from sqlalchemy.exc import OperationalError as DatabaseUnreachable

    from calsync.links import LinkSecretError
    from calsync.syncbackend.crypto import EncryptionKeyError

    if isinstance(error, ValidationError):
        return _invalid_settings(error)
    if isinstance(error, EncryptionKeyError):
        text = str(error)
        return (
            text
            if "CALSYNC_ENCRYPTION_KEY" in text or "key file" in text
            else f"CALSYNC_ENCRYPTION_KEY: {text}"
        )
    if isinstance(error, LinkSecretError):
        return str(error)
    if isinstance(error, NoSuchModuleError | ArgumentError):
        return f"DATABASE_URL is not a database URL calsync can use ({_first_line(error)}); use e.g. {DATABASE_EXAMPLES}"
    if isinstance(error, DatabaseUnreachable):
        return (
            f"cannot reach the database ({_first_line(error.orig or error)}); is it running, and is "
            "DATABASE_URL right?"
        )
    if _is_psycopg_unreachable(error):
        return f"cannot reach the database ({_first_line(error)}); is it running, and is DATABASE_URL right?"
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return "the port is already in use by another program: stop it, or choose another with --port"
    if isinstance(error, OSError) and error.filename:
        return f"cannot use {error.filename}: {error.strerror or error}"
    return None


def _invalid_settings(error: object) -> str:
    from pydantic import ValidationError

    assert isinstance(error, ValidationError)
    problems = []
    for item in error.errors()[:3]:
        name = ".".join(str(part) for part in item.get("loc", ())) or "a setting"
        given = item.get("input")
        shown = (
            f" (got {given!r})" if isinstance(given, str | int | float) and item["type"] != "missing" else ""
        )
        problems.append(f"{name}{shown}: {item.get('msg', 'invalid')}")
    more = len(error.errors()) - len(problems)
    return (
        "invalid setting" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems)
        + (f"; and {more} more" if more > 0 else "")
        + " — fix it in the environment or in .env"
    )  # fmt: skip


def _is_psycopg_unreachable(error: BaseException) -> bool:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(error, psycopg.OperationalError | psycopg_pool.PoolTimeout)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__
