"""What the Slack surface records: feedback on answers, support requests (and the thread a rep's
recent request went to), refused diagnoses and the reconnect links agents send."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.models import AuditEntry, Feedback, User

SUPPORT_THREAD_DAYS = 7


def record_feedback(
    sessions: sessionmaker[Session],
    at: datetime,
    slack_user_id: str,
    diagnosis: str | None,
    article: str | None,
    helpful: bool,
) -> None:
    with transaction(sessions) as session:
        user_id = session.scalars(select(User.id).where(User.slack_user_id == slack_user_id)).first()
        session.add(
            Feedback(at=at, user_id=user_id, article_id=article, diagnosis_id=diagnosis, helpful=helpful)
        )


def support_thread(sessions: sessionmaker[Session], at: datetime, user_id: int | None) -> str | None:
    """The support thread of this rep's recent request, so follow-ups land in one place."""
    since = at - timedelta(days=SUPPORT_THREAD_DAYS)
    with sessions() as session:
        entry = session.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.action == "support_request",
                AuditEntry.subject_user_id == user_id,
                AuditEntry.at >= since,
            )
            .order_by(AuditEntry.at.desc())
        ).first()
        return str(entry.detail.get("thread_ts")) if entry and entry.detail.get("thread_ts") else None


def record(
    sessions: sessionmaker[Session],
    at: datetime,
    *,
    actor: str,
    action: str,
    subject_user_id: int | None,
    detail: dict[str, object],
    result: str,
) -> None:
    with transaction(sessions) as session:
        session.add(
            AuditEntry(
                at=at,
                actor=actor,
                action=action,
                subject_user_id=subject_user_id,
                detail=detail,
                result=result,
            )
        )


def record_refused_diagnosis(
    sessions: sessionmaker[Session], at: datetime, actor: str, slack_user_id: str | None, email: str | None
) -> None:
    """Someone who is not an agent asked to diagnose another person (named by Slack id or email)."""
    with transaction(sessions) as session:
        subject = None
        if slack_user_id:
            subject = session.scalars(select(User.id).where(User.slack_user_id == slack_user_id)).first()
        elif email:
            subject = session.scalars(select(User.id).where(User.email == email)).first()
        session.add(
            AuditEntry(
                at=at,
                actor=actor,
                action="diagnose",
                subject_user_id=subject,
                detail={"target": slack_user_id or email},
                result="refused: not an agent",
            )
        )
