"""The threads the providers' blocking client libraries run in (google-auth, httplib2, msal).

`asyncio.to_thread` uses the event loop's default pool: min(32, CPUs + 4) threads, 6 on a 2-core
machine. A token refresh holds its thread for a whole provider round trip, so that pool would cap the
number of grants being checked at once at 6 whatever the caller asked for (the health sweep, a burst
of diagnoses), and would make everything else that uses `to_thread` (database work) queue behind
them. Each provider therefore owns a pool of its own, sized for waiting on the network rather than
for CPU work; its threads start only when needed (nothing is built at import or construction).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Blocking provider calls in flight at once, per provider (each mostly waits on a socket).
MAX_THREADS = 128


class BlockingCalls:
    """Runs a provider's blocking calls on its own thread pool, created on first use."""

    def __init__(self, name: str, max_threads: int = MAX_THREADS) -> None:
        self.name = name
        self.max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=self.max_threads, thread_name_prefix=f"calsync-{self.name}"
                    )
        return self._pool

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`asyncio.to_thread`, on this pool (the context variables go along)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor(), call)

    def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
