"""Slack retries and replays, claimed once in `processed_events`: an event id, or the digest of a
signed click or command (`interaction_key`), wins once in any process sharing the database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.models import ProcessedEvent


def interaction_key(body: dict[str, Any]) -> str:
    """The claim of one signed click or command: a digest of its whole payload."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "interaction:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def claim(sessions: sessionmaker[Session], clock: Callable[[], datetime], key: str) -> bool:
    """True the first time `key` (at most 255 characters are kept) is claimed."""
    try:
        with transaction(sessions) as session:
            session.add(ProcessedEvent(event_id=key[:255], received_at=clock()))
    except IntegrityError:
        return False
    return True
