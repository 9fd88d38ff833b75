"""The work after the ack: bounded, and claimed once.

How many pieces of it (a question, a command, a click) run at once is bounded; the rest wait their
turn. Unbounded, a burst of questions fills the event loop with diagnoses and the acks of the next
requests wait behind them (benchmarks/ack_bench.py); each piece already runs its checks in
parallel, so a few at a time keep the machine busy.

Slack signs a request, not an occasion: a click or a command replayed within the five minutes the
signature stays valid would be acted on again. So every click and command is claimed once, like an
event id, in `processed_events` (`once`), after the ack and before any work: the key is a digest of
the whole payload, which differs for every real click (its `trigger_id` and `action_ts`) and is the
same for a replay, whichever instance it reaches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from calsync.store.claims import claim, interaction_key

MAX_CONCURRENT_WORK = 8


class Work:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        max_concurrent: int = MAX_CONCURRENT_WORK,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.max_concurrent = max(1, max_concurrent)
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def claim(self, event_id: str | None) -> bool:
        """True the first time an event id is seen, in any process sharing the database."""
        if not event_id:
            return True
        return await asyncio.to_thread(claim, self.sessions, self.clock, event_id)

    async def in_turn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` once one of `max_concurrent` slots is free (first come, first served).
        Listeners pass every piece of after-the-ack work through here; nothing inside calls it again."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_concurrent))
        try:
            async with self._slots[1]:
                await work
        finally:
            work.close()  # a no-op once it ran; cancelled while waiting, it never started

    async def once(self, body: dict[str, Any], work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in turn unless this very payload was claimed before (a replay), in any
        instance sharing the database."""
        try:
            claimed = await self.claim(interaction_key(body))
        except BaseException:
            work.close()
            raise
        if claimed:
            await self.in_turn(work)
        else:
            work.close()  # a replay's work never starts
