"""How much after-the-ack work calsync holds, and the figures it is watched by.

Every piece of work (a question, a command, a click, the Home tab) is admitted before it waits for
its turn, or refused at once: a workspace may hold at most `per_workspace` pieces (waiting and
running), all workspaces together at most `overall`. A refused piece is *shed*: it never runs, and
the person is told so (`bot/work.py`). Admitting is O(1) and never waits, so it can sit on the path
right after the ack.

`Backlog` only counts; it does not run anything or know how work waits (`Work` runs it in this
process, a few at a time). A backlog kept in a durable task queue can take its place: it admits,
starts and finishes tickets and reports the same `Figures`.

One lock guards the counts, so the figures can be read from any thread (a metrics scrape) while the
event loop admits and finishes work.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

# What a piece of work is (a label of the metrics: a short, fixed list).
Kind = Literal["question", "command", "click", "home"]
KINDS: tuple[Kind, ...] = get_args(Kind)
# Which limit refused a piece of work.
Limit = Literal["workspace", "overall"]
LIMITS: tuple[Limit, ...] = get_args(Limit)


@dataclass(eq=False)
class Ticket:
    """One admitted piece of work, from its admission until it finishes (or is given up)."""

    workspace: str
    kind: Kind
    admitted_at: datetime
    running: bool = False
    done: bool = False


@dataclass(frozen=True)
class Shed:
    """A piece of work refused at once, and the limit that refused it."""

    workspace: str
    kind: Kind
    limit: Limit


@dataclass(frozen=True)
class Figures:
    """The backlog at one moment, and its counters since start-up."""

    per_workspace_limit: int
    overall_limit: int
    waiting: int
    running: int
    depth_by_workspace: Mapping[str, int]  # waiting + running, only workspaces holding work
    oldest_wait_seconds: float  # the oldest waiting piece's time since admission; 0 when none waits
    completed: Mapping[Kind, int]  # ran to the end
    failed: Mapping[Kind, int]  # ended with an exception (the person got the error reply)
    shed: Mapping[tuple[Kind, Limit], int]


def _zeros() -> dict[Kind, int]:
    return dict.fromkeys(KINDS, 0)


@dataclass
class _Counts:
    completed: dict[Kind, int] = field(default_factory=_zeros)
    failed: dict[Kind, int] = field(default_factory=_zeros)
    shed: dict[tuple[Kind, Limit], int] = field(
        default_factory=lambda: {(kind, limit): 0 for kind in KINDS for limit in LIMITS}
    )


class Backlog:
    def __init__(self, *, per_workspace: int, overall: int, clock: Callable[[], datetime]) -> None:
        if per_workspace < 1 or overall < 1:
            raise ValueError("backlog limits must be at least 1")
        self.per_workspace = per_workspace
        self.overall = overall
        self.clock = clock
        self._lock = threading.Lock()
        self._depth: dict[str, int] = {}
        self._total = 0
        self._waiting: OrderedDict[Ticket, None] = OrderedDict()  # in order of admission
        self._counts = _Counts()

    def admit(self, workspace: str, kind: Kind) -> Ticket | Shed:
        """A ticket for the work, or a `Shed` when the workspace or everything is at its limit."""
        with self._lock:
            held = self._depth.get(workspace, 0)
            limit: Limit | None = (
                "workspace"
                if held >= self.per_workspace
                else "overall"
                if self._total >= self.overall
                else None
            )
            if limit is not None:
                self._counts.shed[kind, limit] += 1
                return Shed(workspace, kind, limit)
            ticket = Ticket(workspace, kind, self.clock())
            self._depth[workspace] = held + 1
            self._total += 1
            self._waiting[ticket] = None
            return ticket

    def start(self, ticket: Ticket) -> None:
        """The work's turn has come: it no longer waits."""
        with self._lock:
            if ticket.done or ticket.running:
                return
            self._waiting.pop(ticket, None)
            ticket.running = True

    def finish(self, ticket: Ticket, outcome: Literal["completed", "failed", "dropped"]) -> None:
        """The work is over: `completed` or `failed` once it ran, `dropped` when it was given up
        (cancelled, or a replay that never started). A ticket is finished once."""
        with self._lock:
            if ticket.done:
                return
            ticket.done = True
            self._waiting.pop(ticket, None)
            held = self._depth[ticket.workspace] - 1
            if held:
                self._depth[ticket.workspace] = held
            else:
                del self._depth[ticket.workspace]
            self._total -= 1
            if outcome == "completed":
                self._counts.completed[ticket.kind] += 1
            elif outcome == "failed":
                self._counts.failed[ticket.kind] += 1

    def figures(self) -> Figures:
        with self._lock:
            oldest = next(iter(self._waiting), None)
            age = (self.clock() - oldest.admitted_at).total_seconds() if oldest is not None else 0.0
            waiting = len(self._waiting)
            return Figures(
                per_workspace_limit=self.per_workspace,
                overall_limit=self.overall,
                waiting=waiting,
                running=self._total - waiting,
                depth_by_workspace=dict(self._depth),
                oldest_wait_seconds=max(0.0, age),
                completed=dict(self._counts.completed),
                failed=dict(self._counts.failed),
                shed=dict(self._counts.shed),
            )
