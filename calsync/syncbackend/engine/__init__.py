"""The sync engine: what the help center promises, on the same provider clients the diagnostics use.

One cycle of one connection, under its lease (`leases.py`, `schedule.py`), in `cycle.py`:

1. Pull (`pull.py`): read what changed in the selected calendar since the stored cursor (Google
   syncToken, Graph delta link; an expired cursor means a full read) and apply it to our
   appointments.
2. Push (`push.py`): appointments booked, changed or cancelled in SalesPartner reach the calendar,
   never twice.
3. Both write a `SyncRun` with counts and, on failure, the error code the diagnostics explain. A
   revoked or expired grant marks the connection disconnected with its cause and tells the rep
   once (`notify.py`, through the notifier the engine was built with). A rate limit, outage or
   timeout ends the cycle early and moves the next one back (never sooner than Retry-After).

The health sweep (`leases.py`) refreshes every connected grant on a schedule, so a broken connection
is found (and the rep told) before the rep notices.
"""

from calsync.syncbackend.appointments import DELETED_IN_CALENDAR
from calsync.syncbackend.engine.common import (
    CycleResult,
    CycleStatus,
    Disconnection,
    DisconnectNotifier,
    FollowUpNotifier,
    HoldNotifier,
    IncidentNotifier,
    SentDM,
    SweepResult,
    error_code,
    error_message,
)
from calsync.syncbackend.engine.cycle import SyncEngine, TickResult, run_worker, tick
from calsync.syncbackend.engine.pull import LOOKUPS_AT_ONCE
from calsync.syncbackend.engine.push import LOOKUP_SPAN

__all__ = [
    "DELETED_IN_CALENDAR",
    "LOOKUPS_AT_ONCE",
    "LOOKUP_SPAN",
    "CycleResult",
    "CycleStatus",
    "DisconnectNotifier",
    "Disconnection",
    "FollowUpNotifier",
    "HoldNotifier",
    "IncidentNotifier",
    "SentDM",
    "SweepResult",
    "SyncEngine",
    "TickResult",
    "error_code",
    "error_message",
    "run_worker",
    "tick",
]
