"""`/calsync status`: the fleet read in a worker thread (it is a few grouped statements), rendered for
the agent, with a signed link to the fleet page made for that agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from calsync.render.fleet import status_message, status_refused
from calsync.render.kit import Message
from calsync.store.fleet import FleetStore

FleetUrl = Callable[[str], str]  # agent's Slack id -> a signed fleet-page link for them


class FleetStatus:
    def __init__(self, *, store: FleetStore, fleet_url: FleetUrl | None = None) -> None:
        self.store = store
        self.fleet_url = fleet_url

    async def status(self, agent: str) -> Message:
        fleet = await asyncio.to_thread(self.store.fleet, limit=0, chart=False)
        return status_message(fleet, self.fleet_url(agent) if self.fleet_url else None)

    def refused(self) -> Message:
        return status_refused()
