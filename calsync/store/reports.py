"""What the report and playground pages store and read: a report link's one browser (`report_views`),
the audit of every opening, the rep's state for the report, and the playground's reps."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.diagnostics.state import RepState, find_user, load_rep_state
from calsync.syncbackend.models import AuditEntry, ReportView, User

MAX_PLAYGROUND_REPS = 500


def nonce_digest(nonce: str) -> str:
    """What a report link's claim is keyed by (the nonce itself never reaches the database)."""
    return hashlib.sha256(nonce.encode()).hexdigest()


class ReportStore:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    def claim_view(self, nonce: str) -> bool:
        """True for the first browser to open this link (in any process sharing the database)."""
        try:
            with transaction(self.sessions) as session:
                session.add(ReportView(nonce_digest=nonce_digest(nonce), claimed_at=self.clock()))
        except IntegrityError:
            return False
        return True

    def audit(self, agent: str, rep: str, action: str, result: str, detail: dict[str, Any]) -> None:
        """An opening (or a refused one), with the agent as the actor and the rep as the subject."""
        with transaction(self.sessions) as session:
            subject = session.scalars(select(User.id).where(User.email == rep.strip().lower())).first()
            session.add(
                AuditEntry(
                    at=self.clock(), actor=agent[:255], action=action, subject_user_id=subject, detail=detail,
                    result=result,
                )
            )  # fmt: skip

    def rep_state(self, email: str) -> RepState | None:
        """The rep's connections, recent sync runs and appointments; None for no such rep."""
        with self.sessions() as session:
            user = find_user(session, email)
            return load_rep_state(session, user, self.clock()) if user is not None else None

    def reps(self) -> list[tuple[str, str]]:
        """(email, name) of everyone but the agents, for the playground's rep list."""
        with self.sessions() as session:
            rows = session.execute(
                select(User.email, User.name)
                .where(User.role != "agent")
                .order_by(User.email)
                .limit(MAX_PLAYGROUND_REPS)
            ).all()
        return [(email, name) for email, name in rows]


__all__ = ["ReportStore", "nonce_digest"]
