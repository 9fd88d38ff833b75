"""An agent's decision on cancellations a sync held back, taken once (the first decision wins)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from calsync.store.people import Person
from calsync.syncbackend.holds import Decided, Decision, Holds, UnknownHold


async def decide_hold(
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    agent: Person,
    hold: Any,
    decision: Decision,
) -> Decided | None:
    """Decide the hold `hold` (its id, as a button carried it); None when there is no such hold."""
    try:
        hold_id = int(hold)
        return await asyncio.to_thread(
            Holds(sessions, clock).decide, hold_id, decision, actor=agent.slack_user_id
        )
    except (TypeError, ValueError, UnknownHold):
        return None
