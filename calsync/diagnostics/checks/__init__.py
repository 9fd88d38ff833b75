"""The diagnostic checks, one module per check, and the registry the troubleshooter runs from.

The order is the order findings of equal severity are shown in: the connection first (a dead grant
explains almost any symptom), then where appointments go, how sync is doing, and the rest.
"""

from calsync.diagnostics.check import Check
from calsync.diagnostics.checks.calendar import CALENDAR
from calsync.diagnostics.checks.changes import CHANGES
from calsync.diagnostics.checks.connection import CONNECTION
from calsync.diagnostics.checks.duplicates import DUPLICATES
from calsync.diagnostics.checks.incidents import INCIDENT
from calsync.diagnostics.checks.provider_switch import PROVIDER_SWITCH
from calsync.diagnostics.checks.sync import SYNC

ALL_CHECKS: tuple[Check, ...] = (INCIDENT, CONNECTION, CALENDAR, SYNC, DUPLICATES, CHANGES, PROVIDER_SWITCH)

__all__ = [
    "ALL_CHECKS",
    "CALENDAR",
    "CHANGES",
    "CONNECTION",
    "DUPLICATES",
    "INCIDENT",
    "PROVIDER_SWITCH",
    "SYNC",
]
