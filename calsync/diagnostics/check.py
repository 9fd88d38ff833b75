"""What a check is: a name, what it looks at, and a function from an explicit context to findings.

Two shapes, so that the runner (not each check) owns concurrency, time limits and turning a
provider failure into an `unknown` finding:
- a rep check looks at the rep as a whole (`run_rep(context)`): no connection at all, two active
  connections, a provider switch, duplicates across calendars;
- a connection check looks at one connection (`run_connection(context, connection)`): the runner
  calls it once per connection it applies to, so one provider failing leaves the others' findings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from calsync.diagnostics.findings import Finding
from calsync.diagnostics.live import LiveView
from calsync.diagnostics.state import ConnectionState, RepState


@dataclass(frozen=True)
class CheckContext:
    rep: RepState
    now: datetime
    live: LiveView
    question: str | None = None  # the rep's own words, when the diagnosis answers a question


RepCheckFn = Callable[[CheckContext], Awaitable[Sequence[Finding]]]
ConnectionCheckFn = Callable[[CheckContext, ConnectionState], Awaitable[Sequence[Finding]]]


@dataclass(frozen=True)
class Check:
    name: str  # "connection", "calendar", ...: what articles' front matter refers to
    title: str  # how the check is named to people: "Calendar connection"
    run_rep: RepCheckFn | None = None
    run_connection: ConnectionCheckFn | None = None
    # Which connections `run_connection` applies to: the active ones, or every one the rep has.
    all_connections: bool = False
    needs_grant: bool = True  # its connection part reads the provider, so a dead grant skips it

    def connections(self, rep: RepState) -> tuple[ConnectionState, ...]:
        return rep.connections if self.all_connections else rep.active_connections
