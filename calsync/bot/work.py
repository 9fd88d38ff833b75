"""The work after the ack: held within limits, run a few at a time, and claimed once.

Every piece of it (a question, a command, a click, the Home tab) is first admitted to the `Backlog`
(`bot/backlog.py`) of its workspace: past the workspace's limit or the overall one it is *shed* — it
never runs, and the listener's `shed` reply tells the person at once, plainly, to ask again in a
minute (`render/replies.py`). Admission is O(1) and waits on nothing, so under a flood the acks stay
fast and the memory held stays bounded.

How many admitted pieces run at once is bounded too; the rest wait their turn, first come, first
served. Unbounded, a burst of questions fills the event loop with diagnoses and the acks of the next
requests wait behind them (benchmarks/ack_bench.py); each piece already runs its checks in
parallel, so a few at a time keep the machine busy.

Slack signs a request, not an occasion: a click or a command replayed within the five minutes the
signature stays valid would be acted on again. So every click and command is claimed once, like an
event id, in `processed_events` (`once`), after the ack and before any work: the key is a digest of
the whole payload, which differs for every real click (its `trigger_id` and `action_ts`) and is the
same for a replay, whichever instance it reaches (questions are claimed with their record, before
the ack: `bot/queue.py`). The claim is taken on admission, not when the work's turn comes: whoever
claims a delivery speaks for it — its work, or its shed reply — and a replay gets neither (claimed
later, a replay shed while the first delivery waited would take the work from it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, Literal

from slack_bolt.async_app import AsyncBoltContext
from sqlalchemy.orm import Session, sessionmaker

from calsync.bot.backlog import Backlog, Kind, Shed, Ticket
from calsync.store.claims import claim, interaction_key

MAX_CONCURRENT_WORK = 8
UNKNOWN_WORKSPACE = "unknown"

# What the person is told when their work is shed (it never runs).
ShedReply = Callable[[], Awaitable[object]]


def workspace_of(context: AsyncBoltContext) -> str:
    """The Slack workspace (team id) a request came from; its enterprise for an org-wide one."""
    return str(context.team_id or context.enterprise_id or UNKNOWN_WORKSPACE)


class Work:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        backlog: Backlog,
        max_concurrent: int = MAX_CONCURRENT_WORK,
        claim: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.backlog = backlog
        self._claim = claim  # from the event loop (`AnswerQueue.claim`); else the sync claim in a thread
        self.max_concurrent = max(1, max_concurrent)
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def claim(self, event_id: str | None) -> bool:
        """True the first time an event id is seen, in any process sharing the database."""
        if not event_id:
            return True
        if self._claim is not None:
            return await self._claim(event_id)
        return await asyncio.to_thread(claim, self.sessions, self.clock, event_id)

    async def in_turn(
        self, work: Coroutine[Any, Any, None], *, workspace: str, kind: Kind, shed: ShedReply
    ) -> None:
        """Run `work` in its turn, or — past a backlog limit — close it unstarted and `shed`.
        Listeners pass every piece of after-the-ack work through here or `once`;
        nothing inside calls them again."""
        admitted = self.backlog.admit(workspace, kind)
        if isinstance(admitted, Shed):
            work.close()  # a shed piece of work never starts, now or later
            await shed()
            return
        await self._run(admitted, work)

    async def once(
        self,
        body: dict[str, Any],
        work: Coroutine[Any, Any, None],
        *,
        workspace: str,
        kind: Kind,
        shed: ShedReply,
    ) -> None:
        """`in_turn`, unless this very payload (a click, a command) was claimed before — a replay —
        in any instance sharing the database."""
        await self._claimed(interaction_key(body), work, workspace=workspace, kind=kind, shed=shed)

    async def _claimed(
        self, key: str | None, work: Coroutine[Any, Any, None], *, workspace: str, kind: Kind, shed: ShedReply
    ) -> None:
        """The backlog decides first (so the decision waits on nothing), then the delivery is claimed,
        before it waits for its turn: whoever claims it speaks for it — its work, or its shed reply —
        and a replay or a retry gets neither, shed or not, however long the claimed one waits."""
        admitted = self.backlog.admit(workspace, kind)
        try:
            claimed = await self.claim(key)
        except BaseException:
            self._give_up(admitted, work)
            raise
        if not claimed:
            self._give_up(admitted, work)
        elif isinstance(admitted, Shed):
            work.close()
            await shed()
        else:
            await self._run(admitted, work)

    def _give_up(self, admitted: Ticket | Shed, work: Coroutine[Any, Any, None]) -> None:
        work.close()
        if isinstance(admitted, Ticket):
            self.backlog.finish(admitted, "dropped")

    def _turns(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_concurrent))
        return self._slots[1]

    async def _run(self, ticket: Ticket, work: Coroutine[Any, Any, None]) -> None:
        """`work` once one of `max_concurrent` turns is free (first come, first served)."""
        outcome: Literal["completed", "failed", "dropped"] = "dropped"
        try:
            async with self._turns():
                self.backlog.start(ticket)
                try:
                    await work
                except Exception:
                    outcome = "failed"
                    raise
                outcome = "completed"
        finally:
            work.close()  # a no-op once it ran; cancelled while waiting, it never started
            self.backlog.finish(ticket, outcome)
