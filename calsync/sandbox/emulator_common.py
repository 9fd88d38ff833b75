"""Helpers any provider emulator can share: secret redaction and the request log.

Nothing here knows a provider's wire format; each emulator keeps its own error bodies. Faults are
carried out by `calsync.sandbox.faults`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from calsync.sandbox.world import SandboxRequest, World

REDACTED = "[redacted]"
# Field names whose values are credentials: never written to the request log.
SECRET_FIELDS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "code",
        "code_verifier",
        "client_secret",
        "client_assertion",
        "password",
        "assertion",
    }
)


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `values` with every secret field's value replaced (nested mappings included)."""
    redacted: dict[str, Any] = {}
    for key, value in values.items():
        if key.lower() in SECRET_FIELDS:
            redacted[key] = REDACTED
        elif isinstance(value, Mapping):
            redacted[key] = redact_mapping(value)
        else:
            redacted[key] = value
    return redacted


def redact_query(query: str) -> str:
    """A query string with the values of secret parameters replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(key, REDACTED if key.lower() in SECRET_FIELDS else value) for key, value in pairs])


async def record(
    world: World,
    *,
    provider: str,
    request: Request,
    status: int,
    account_email: str | None,
    clock: Callable[[], datetime],
    started: float,
    body: Mapping[str, Any] | None = None,
) -> None:
    """Log one answered request (secrets redacted) so tests can assert on what the server received."""
    entry = SandboxRequest(
        provider=provider,
        method=request.method,
        path=request.url.path,
        query=redact_query(request.url.query),
        body=redact_mapping(body) if body is not None else None,
        status=status,
        account_email=account_email,
        at=clock(),
        duration_ms=(time.monotonic() - started) * 1000.0,
    )
    await run_in_threadpool(world.record_request, entry)


class OAuthEmulator:
    """What a calendar provider's emulator is made with: the world, the OAuth client it knows, a clock."""

    def __init__(
        self, world: World, *, client_id: str, client_secret: str, clock: Callable[[], datetime]
    ) -> None:
        self.world = world
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock
