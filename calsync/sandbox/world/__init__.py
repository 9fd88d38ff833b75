"""The sandbox's provider-side world: accounts, grants, calendars, events and faults.

It lives in tables of its own (prefixed `sandbox_`) in the same database as the sync backend, so
that `calsync sandbox load` in one process and `diagnose` or `serve` in another see one world.
These tables are not part of the product schema: they are created by `World.create_tables()`,
not by Alembic, and Alembic's autogenerate ignores them.

The emulators (`google_emulator.py`, `microsoft_emulator.py`, `slack_emulator.py`) read and write
the world only through `World`, a facade over one part per concern:

- `tables`, `slack_tables`: the tables, and the names faults use (`Provider`, `FaultKind`, `Endpoint`)
- `base`: the engine and sessions, creating and resetting the tables, the change counter
- `accounts`: accounts, grants, access tokens and authorization codes
- `events`, `google`, `microsoft`: calendars and events (any provider's owner, then each API's view)
- `faults`: faults and the request log
- `slack`: the Slack emulator's state
"""

from __future__ import annotations

from calsync.sandbox.world.accounts import AccountsMixin
from calsync.sandbox.world.base import WorldBase
from calsync.sandbox.world.faults import (
    FaultHit,
    FaultsMixin,
    RequestLogMixin,
)
from calsync.sandbox.world.google import GoogleMixin
from calsync.sandbox.world.microsoft import MicrosoftMixin
from calsync.sandbox.world.slack import SlackMixin
from calsync.sandbox.world.slack_tables import (
    SandboxSlackCall,
    SandboxSlackChannel,
    SandboxSlackDm,
    SandboxSlackHomeView,
    SandboxSlackMessage,
    SandboxSlackResponseUrl,
    SandboxSlackState,
    SandboxSlackUser,
    SandboxSlackUsergroup,
)
from calsync.sandbox.world.tables import (
    Endpoint,
    FaultKind,
    Provider,
    SandboxAccessToken,
    SandboxAccount,
    SandboxAuthCode,
    SandboxBase,
    SandboxCalendar,
    SandboxCounter,
    SandboxEvent,
    SandboxFault,
    SandboxGrant,
    SandboxRequest,
)


class World(AccountsMixin, GoogleMixin, MicrosoftMixin, FaultsMixin, RequestLogMixin, SlackMixin, WorldBase):
    """Access to the sandbox world in one database. Thread-safe: every call uses its own session."""


__all__ = [
    "Endpoint",
    "FaultHit",
    "FaultKind",
    "Provider",
    "SandboxAccessToken",
    "SandboxAccount",
    "SandboxAuthCode",
    "SandboxBase",
    "SandboxCalendar",
    "SandboxCounter",
    "SandboxEvent",
    "SandboxFault",
    "SandboxGrant",
    "SandboxRequest",
    "SandboxSlackCall",
    "SandboxSlackChannel",
    "SandboxSlackDm",
    "SandboxSlackHomeView",
    "SandboxSlackMessage",
    "SandboxSlackResponseUrl",
    "SandboxSlackState",
    "SandboxSlackUser",
    "SandboxSlackUsergroup",
    "World",
    "WorldBase",
]
