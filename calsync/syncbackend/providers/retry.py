"""Retrying a provider call, the same way for every provider, and the one `Retry-After` parser.

`with_retries` runs one attempt after another within a bounded budget of seconds: the time spent
in attempts plus the waits it chooses (so an injected `sleep` that does not really wait still uses
up the budget). A wait is the provider's Retry-After when it sent one, else 0.5 s doubling per try.
A wait longer than what is left of the budget raises the last failure at once (a Retry-After of
30 s against a 4 s budget is `RateLimited` now, for the scheduler to honour). A dead grant is never
retried, whatever the provider's `retryable` says: only the user signing in again fixes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from calsync.syncbackend.providers.base import GrantError, ProviderError, RateLimited

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_BASE = 0.5


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def transient(error: ProviderError) -> bool:
    """Worth another try: a rate limit, an outage, a timeout or a garbled answer."""
    return error.transient


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    budget: float,
    sleep: Callable[[float], Awaitable[None]],
    retryable: Callable[[ProviderError], bool] = transient,
    max_attempts: int | None = None,
    provider: str = "",
) -> T:
    """Run `attempt` until it succeeds or fails for good, within `budget` seconds."""
    used = 0.0
    tries = 0
    while True:
        started = time.monotonic()
        try:
            return await attempt()
        except ProviderError as error:
            used += time.monotonic() - started
            if isinstance(error, GrantError) or not retryable(error):
                raise
            if isinstance(error, RateLimited) and error.retry_after is not None:
                delay = error.retry_after
            else:
                delay = BACKOFF_BASE * 2**tries
            tries += 1
            if (max_attempts is not None and tries >= max_attempts) or used + delay > budget:
                raise
            log.info("%s: %s, retrying in %.2fs", provider, type(error).__name__, delay)
            await sleep(delay)
            used += delay
