"""The incident tests run on the sync tests' world (the engine against the emulators, on SQLite and
PostgreSQL) and, for the bot over signed Slack requests, on the bot tests' server."""

from __future__ import annotations

from tests.bot.conftest import slack_server
from tests.sync.conftest import sync_database_url, sync_world, sync_world_session

__all__ = ["slack_server", "sync_database_url", "sync_world", "sync_world_session"]
