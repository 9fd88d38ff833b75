"""Interactions are claimed once on SQLite and PostgreSQL: many deliveries of one payload racing in
two bot instances (real threads, real inserts) run its work once; distinct payloads each run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from calsync.bot.backlog import Backlog
from calsync.bot.work import Work
from calsync.store.claims import interaction_key


def _bot(sessions: sessionmaker[Session]) -> Work:
    # Claiming needs only the database; no diagnosis runs here. The backlog holds every delivery.
    clock = lambda: datetime.now(UTC)  # noqa: E731
    return Work(sessions, clock, Backlog(per_workspace=100, overall=100, clock=clock))


async def _never_shed() -> None:
    raise AssertionError("nothing is shed here")


def _click(trigger: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U0DEMOCARLA"},
        "trigger_id": trigger,
        "container": {"message_ts": "1764000000.000100", "channel_id": "D0CARLA"},
        "actions": [{"action_id": "check_again", "action_ts": "1764000001.000200", "value": "{}"}],
    }


def test_deliveries_of_one_payload_racing_in_two_instances_run_once(sessions: sessionmaker[Session]) -> None:
    instances = [_bot(sessions), _bot(sessions)]
    ran: list[str] = []

    async def work(name: str) -> None:
        ran.append(name)

    async def deliver() -> None:
        deliveries = [
            instances[n % 2].once(
                _click(trigger), work(trigger), workspace="T0SANDBOX", kind="click", shed=_never_shed
            )
            for trigger in ("trig-a", "trig-b", "trig-c")
            for n in range(6)
        ]
        await asyncio.gather(*deliveries)

    asyncio.run(deliver())
    assert sorted(ran) == ["trig-a", "trig-b", "trig-c"]


def test_the_key_is_the_payload_not_its_key_order() -> None:
    body = _click("trig-a")
    reordered = dict(reversed(list(body.items())))
    assert interaction_key(body) == interaction_key(reordered)
    assert interaction_key(body) != interaction_key(_click("trig-b"))
    assert interaction_key(
        {**body, "actions": [{**body["actions"][0], "action_ts": "2"}]}
    ) != interaction_key(body)
    assert len(interaction_key(body)) <= 255
