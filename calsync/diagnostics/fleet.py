"""The fleet's vocabulary and figures as plain data: the states a rep can be in (which wins when two
apply), the fleet as counted (`calsync.store.fleet` counts it), and a row of the resolution stats.
Below both the store that fills them and the renderers that show them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from calsync.syncbackend.incidents import IncidentView

State = Literal["needs_reconnect", "failing", "duplicates", "no_connection", "healthy"]
# In the order they are shown (and, for a rep in two at once, the one that wins: first here).
STATES: tuple[State, ...] = ("no_connection", "needs_reconnect", "duplicates", "failing", "healthy")
BROKEN: tuple[State, ...] = ("needs_reconnect", "failing", "duplicates")
DUPLICATES_CAUSE = "multiple_active"


@dataclass(frozen=True)
class Filters:
    state: str = ""
    cause: str = ""
    org: str = ""

    @property
    def any(self) -> bool:
        return bool(self.state or self.cause or self.org)


@dataclass(frozen=True)
class FleetRep:
    user_id: int
    email: str
    name: str
    state: State
    cause: str | None
    org: str


@dataclass(frozen=True)
class Fleet:
    now: datetime
    filters: Filters
    counts: dict[State, int]  # every state, 0 included, under the cause/org filters
    causes: tuple[tuple[str, int], ...]  # the causes of the reps not healthy, most common first
    orgs: tuple[tuple[str, int], ...]  # organisations with reps not healthy, most first
    all_orgs: tuple[str, ...]  # every organisation, for the filter
    reps: tuple[FleetRep, ...]  # the reps shown (filtered, at most MAX_REPS_SHOWN, broken first)
    matching: int  # how many reps match the filters
    last_sweep: datetime | None
    chart: tuple[tuple[datetime, int], ...]  # (bucket start, connections with a failed run in it)
    incidents: tuple[IncidentView, ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def broken(self) -> int:
        return sum(self.counts[state] for state in BROKEN)


@dataclass(frozen=True)
class StatsRow:
    cause: str | None  # None in the per-article rows
    article: str | None
    answered: int
    helped: int
    not_helped: int
    reconnects_started: int
    reconnects_completed: int
    fixed_within_24h: int
