"""The sync-backend models on a migrated database (SQLite and PostgreSQL): round trips and constraints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.models import (
    AnswerRecord,
    Appointment,
    AuditEntry,
    Base,
    CalendarConnection,
    CancellationHold,
    EventLink,
    Feedback,
    Incident,
    IncidentRep,
    OAuthSession,
    ProcessedEvent,
    QueuedQuestion,
    QuotaCall,
    QuotaKey,
    ReportView,
    SyncRun,
    User,
)

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))


def add_user(session: Session, email: str = "ann@acme.com", **fields: object) -> User:
    user = User(email=email, name="Ann Lee", created_at=NOW, **fields)
    session.add(user)
    session.flush()
    return user


def add_connection(session: Session, user: User, **fields: object) -> CalendarConnection:
    values: dict[str, object] = {
        "provider": "google",
        "account_email": user.email,
        "selected_calendar_id": "primary",
        "created_at": NOW,
    }
    values.update(fields)
    connection = CalendarConnection(user=user, **values)
    session.add(connection)
    session.flush()
    return connection


def add_appointment(session: Session, user: User, **fields: object) -> Appointment:
    values: dict[str, object] = {
        "title": "Demo with Initech",
        "start": NOW + timedelta(days=1),
        "end": NOW + timedelta(days=1, hours=1),
        "booked_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    appointment = Appointment(user=user, **values)
    session.add(appointment)
    session.flush()
    return appointment


# -- one builder per table: the row to write, with every column set --------------------------------


def build_user(session: Session) -> Base:
    return add_user(session, slack_user_id="U012ABCDEF", role="agent")


def build_connection(session: Session) -> Base:
    return add_connection(
        session,
        add_user(session),
        provider="microsoft",
        status="error",
        status_reason="invalid_grant: AADSTS700082: The refresh token has expired due to inactivity.",
        status_code="inactive",
        selected_calendar_id="AAMkAGI2TG93AAA=",
        selected_calendar_name="Calendar",
        refresh_token_encrypted=b"gAAAAA-not-a-real-ciphertext",
        access_token_encrypted=b"gAAAAA-neither",
        access_token_expires_at=NOW + timedelta(hours=1),
        scopes="offline_access Calendars.ReadWrite",
        sync_cursor="https://graph.example/delta?token=abc",
        authorized_at=NOW - timedelta(days=100),
        last_refreshed_at=NOW - timedelta(days=91),
        disconnected_at=NOW,
        active=False,
        next_sync_at=NOW + timedelta(minutes=15),
        lease_owner="worker-0123456789ab",
        lease_until=NOW + timedelta(minutes=10),
        sync_failures=3,
        last_checked_at=NOW - timedelta(minutes=30),
        disconnect_notified_at=NOW,
        disconnect_dm_channel="D0TESSDM",
        disconnect_dm_ts="1733300000.000100",
        disconnect_dm_incident_id=7,
        tenant_id="7c3f3b4e-5b1a-4c7e-9d0e-5a4d8b2c1f00",
    )


def build_appointment(session: Session) -> Base:
    return add_appointment(
        session,
        add_user(session),
        description="Bring the Q4 numbers",
        time_zone="America/New_York",
        status="cancelled",
        cancellation_reason="deleted in calendar",
        revision=3,
    )


def build_event_link(session: Session) -> Base:
    user = add_user(session)
    link = EventLink(
        appointment=add_appointment(session, user),
        connection=add_connection(session, user),
        calendar_id="primary",
        event_id="evt_123",
        state="synced",
        last_pushed_at=NOW,
        last_pulled_at=NOW + timedelta(minutes=15),
        provider_updated=NOW + timedelta(minutes=1),
        error="none yet",
        pushed_revision=2,
        insert_attempted_at=NOW - timedelta(minutes=1),
    )
    session.add(link)
    return link


def build_sync_run(session: Session) -> Base:
    run = SyncRun(
        connection=add_connection(session, add_user(session)),
        direction="pull",
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=2),
        status="error",
        error_code="rate_limited",
        error_message="Google answered 429, retry after 30 s",
        counts={"created": 1, "updated": 0, "deleted": 0, "pulled": 3},
    )
    session.add(run)
    return run


def build_audit_entry(session: Session) -> Base:
    entry = AuditEntry(
        at=NOW,
        actor="U0AGENT01",
        action="diagnose",
        subject_user_id=add_user(session).id,
        detail={"channel": "D123", "findings": ["grant_revoked"]},
        result="3 findings",
    )
    session.add(entry)
    return entry


def build_processed_event(session: Session) -> Base:
    event = ProcessedEvent(event_id="Ev0123456789", received_at=NOW)
    session.add(event)
    return event


def build_feedback(session: Session) -> Base:
    feedback = Feedback(
        at=NOW, user_id=add_user(session).id, article_id="not-showing", diagnosis_id="d-42", helpful=True
    )
    session.add(feedback)
    return feedback


def build_oauth_session(session: Session) -> Base:
    row = OAuthSession(
        state="st-" + "x" * 40,
        user_id=add_user(session).id,
        provider="google",
        link_nonce="n-123",
        flow_encrypted=b"ciphertext",
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=20),
        completed_at=NOW + timedelta(minutes=1),
        outcome="connected",
    )
    session.add(row)
    return row


def build_cancellation_hold(session: Session) -> Base:
    user = add_user(session)
    hold = CancellationHold(
        connection=add_connection(session, user),
        user=user,
        appointment_ids=["a1", "a2", "a3"],
        upcoming=5,
        detected_at=NOW,
        status="open",
        notified_at=NOW + timedelta(seconds=1),
        decided_by="U0AGENT01",
        decided_at=NOW + timedelta(minutes=5),
        detail={"source": "full read"},
    )
    session.add(hold)
    return hold


def build_quota_key(session: Session) -> Base:
    row = QuotaKey(key="google:ann@x.example", touched_at=1_800_000_000.25)
    session.add(row)
    return row


def build_quota_call(session: Session) -> Base:
    row = QuotaCall(key="microsoft:mo@x.example", started_at=1_800_000_000.5, busy_until=1_800_000_120.5)
    session.add(row)
    return row


def build_queued_question(session: Session) -> Base:
    row = QueuedQuestion(
        event_id="Ev0001",
        team_id="T1",
        channel="D1",
        user="U1",
        text="where is my demo",
        thread_ts="1700000000.000100",
        enqueued_at=NOW,
        taken_by="job-0",
        taken_at=NOW,
        attempts=1,
        placeholder_ts="1700000000.000200",
        answered_at=NOW,
    )
    session.add(row)
    return row


def build_report_view(session: Session) -> Base:
    row = ReportView(nonce_digest="d" * 64, claimed_at=NOW)
    session.add(row)
    return row


def add_incident(session: Session) -> Incident:
    row = Incident(
        kind="org_consent_removed",
        provider="microsoft",
        scope="tallgrass.example",
        cause_code="consent_removed",
        started_at=NOW,
        last_seen_at=NOW + timedelta(minutes=4),
        ended_at=NOW + timedelta(minutes=30),
        affected_count=3,
        version=2,
        posted_version=1,
        support_ts="1700000000.000300",
        support_claimed_by="worker-1",
        support_claim_until=NOW + timedelta(minutes=2),
    )
    session.add(row)
    session.flush()
    return row


def build_incident(session: Session) -> Base:
    return add_incident(session)


def build_incident_rep(session: Session) -> Base:
    user = add_user(session)
    connection = add_connection(session, user)
    session.flush()
    row = IncidentRep(
        incident_id=add_incident(session).id,
        connection_id=connection.id,
        user_id=user.id,
        joined_at=NOW,
        recovered_at=NOW + timedelta(minutes=10),
        followup_sent_at=NOW + timedelta(minutes=1),
        access_back_sent_at=NOW + timedelta(minutes=8),
        notice_claimed_by="worker-0123456789ab",
        notice_claim_until=NOW + timedelta(minutes=3),
    )
    session.add(row)
    return row


def build_answer_record(session: Session) -> Base:
    user = add_user(session)
    session.flush()
    row = AnswerRecord(
        diagnosis_id="diag-1",
        at=NOW,
        user_id=user.id,
        kind="ask",
        cause="connection.revoked",
        article="not-connected",
        fixed_at=NOW + timedelta(hours=3),
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class TableCase:
    model: type[Base]
    build: Callable[[Session], Base]
    change: dict[str, object]


TABLE_CASES = {
    "users": TableCase(User, build_user, {"name": "Ann Lee-Smith", "role": "rep"}),
    "calendar_connections": TableCase(
        CalendarConnection, build_connection, {"status": "connected", "status_code": None, "active": True}
    ),
    "appointments": TableCase(Appointment, build_appointment, {"title": "Moved", "status": "booked"}),
    "event_links": TableCase(EventLink, build_event_link, {"state": "deleted", "event_id": None}),
    "sync_runs": TableCase(SyncRun, build_sync_run, {"status": "ok", "counts": {"pulled": 0}}),
    "audit_log": TableCase(AuditEntry, build_audit_entry, {"result": "denied", "subject_user_id": None}),
    "processed_events": TableCase(
        ProcessedEvent, build_processed_event, {"received_at": NOW + timedelta(seconds=3)}
    ),
    "feedback": TableCase(Feedback, build_feedback, {"helpful": False, "article_id": None}),
    "oauth_sessions": TableCase(
        OAuthSession, build_oauth_session, {"outcome": "denied", "completed_at": None}
    ),
    "cancellation_holds": TableCase(
        CancellationHold, build_cancellation_hold, {"status": "kept", "appointment_ids": ["a1"]}
    ),
    "quota_keys": TableCase(QuotaKey, build_quota_key, {"touched_at": 1_800_000_060.75}),
    "quota_calls": TableCase(QuotaCall, build_quota_call, {"busy_until": None}),
    "report_views": TableCase(ReportView, build_report_view, {"claimed_at": NOW + timedelta(seconds=5)}),
    "queued_questions": TableCase(
        QueuedQuestion,
        build_queued_question,
        {"taken_by": "job-1", "answered_at": NOW + timedelta(seconds=2)},
    ),
    "incidents": TableCase(Incident, build_incident, {"ended_at": None, "support_claimed_by": None}),
    "incident_reps": TableCase(IncidentRep, build_incident_rep, {"recovered_at": None}),
    "answer_records": TableCase(AnswerRecord, build_answer_record, {"fixed_at": None, "article": None}),
}


def test_every_table_has_a_case() -> None:
    assert set(TABLE_CASES) == set(Base.metadata.tables)


def column_values(obj: Base) -> dict[str, object]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(obj).mapper.column_attrs}


@pytest.mark.parametrize("case", TABLE_CASES.values(), ids=TABLE_CASES.keys())
def test_round_trip(sessions: sessionmaker[Session], case: TableCase) -> None:
    with transaction(sessions) as session:
        written = case.build(session)
        session.flush()
        expected = column_values(written)
        key = inspect(written).identity
    assert all(value is not None for value in expected.values()), "the builder should set every column"

    with sessions() as session:
        read = session.get(case.model, key)
        assert read is not None
        assert column_values(read) == expected
        for name, value in expected.items():
            if isinstance(value, datetime):
                assert getattr(read, name).utcoffset() == timedelta(0), name

    with transaction(sessions) as session:
        read = session.get(case.model, key)
        assert read is not None
        for name, value in case.change.items():
            setattr(read, name, value)

    with sessions() as session:
        read = session.get(case.model, key)
        assert read is not None
        for name, value in case.change.items():
            assert getattr(read, name) == value, name

    with transaction(sessions) as session:
        session.delete(session.get(case.model, key))

    with sessions() as session:
        assert session.get(case.model, key) is None


def test_aware_datetimes_come_back_as_the_same_instant_in_utc(sessions: sessionmaker[Session]) -> None:
    start = datetime(2026, 11, 25, 9, 30, tzinfo=IST)
    with transaction(sessions) as session:
        appointment_id = add_appointment(
            session, add_user(session), start=start, end=start + timedelta(hours=1)
        ).id

    with sessions() as session:
        appointment = session.get(Appointment, appointment_id)
        assert appointment is not None
        assert appointment.start == start
        assert appointment.start.tzinfo is UTC
        assert appointment.start == datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
        # Comparisons in SQL see the instant too.
        found = session.scalars(
            select(Appointment).where(Appointment.start == datetime(2026, 11, 25, 4, 0, tzinfo=UTC))
        ).one()
        assert found.id == appointment_id


def test_naive_datetimes_are_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(StatementError, match="naive datetime"), transaction(sessions) as session:
        session.add(ProcessedEvent(event_id="Ev1", received_at=datetime(2026, 11, 24, 15, 0)))


def test_defaults_fill_ids_and_timestamps(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        user = User(email="bo@acme.com")
        session.add(user)
        appointment = Appointment(user=user, start=NOW, end=NOW + timedelta(minutes=30))
        session.add(appointment)
        session.flush()
        assert len(appointment.id) == 32
        assert appointment.status == "booked"
        assert user.role == "rep"
        assert user.created_at.tzinfo is not None


def test_email_is_stored_lowercase(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        user = add_user(session, email="  Ann.Lee@ACME.com ")
        add_connection(session, user, account_email="Ann.Lee@Gmail.COM")
    with sessions() as session:
        user = session.scalars(select(User)).one()
        assert user.email == "ann.lee@acme.com"
        assert user.connections[0].account_email == "ann.lee@gmail.com"


def duplicate_email(session: Session) -> None:
    add_user(session, email="ann@acme.com")
    add_user(session, email="ANN@acme.com")


def duplicate_slack_user(session: Session) -> None:
    add_user(session, email="ann@acme.com", slack_user_id="U1")
    add_user(session, email="bo@acme.com", slack_user_id="U1")


def duplicate_processed_event(session: Session) -> None:
    session.add(ProcessedEvent(event_id="Ev1", received_at=NOW))
    session.flush()
    session.add(ProcessedEvent(event_id="Ev1", received_at=NOW))


def duplicate_event_link(session: Session) -> None:
    user = add_user(session)
    appointment, connection = add_appointment(session, user), add_connection(session, user)
    for _ in range(2):
        session.add(EventLink(appointment=appointment, connection=connection, calendar_id="primary"))
        session.flush()


def unknown_role(session: Session) -> None:
    add_user(session, role="admin")


def unknown_provider(session: Session) -> None:
    add_connection(session, add_user(session), provider="yahoo")


def unknown_link_state(session: Session) -> None:
    user = add_user(session)
    session.add(
        EventLink(
            appointment=add_appointment(session, user),
            connection=add_connection(session, user),
            calendar_id="primary",
            state="lost",
        )
    )


def end_before_start(session: Session) -> None:
    add_appointment(session, add_user(session), start=NOW, end=NOW - timedelta(minutes=1))


def uppercase_email_behind_the_orm(session: Session) -> None:
    session.execute(
        text("INSERT INTO users (email, name, role, created_at) VALUES ('Ann@Acme.com', '', 'rep', :at)"),
        {"at": NOW},
    )


def connection_of_missing_user(session: Session) -> None:
    session.add(CalendarConnection(user_id=999, provider="google", account_email="x@y.z", created_at=NOW))


@pytest.mark.parametrize(
    "violation",
    [
        duplicate_email,
        duplicate_slack_user,
        duplicate_processed_event,
        duplicate_event_link,
        unknown_role,
        unknown_provider,
        unknown_link_state,
        end_before_start,
        uppercase_email_behind_the_orm,
        connection_of_missing_user,
    ],
    ids=lambda violation: violation.__name__,
)
def test_constraint_violations_are_refused(
    sessions: sessionmaker[Session], violation: Callable[[Session], None]
) -> None:
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        violation(session)
        session.flush()


def test_several_users_may_have_no_slack_id(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        add_user(session, email="ann@acme.com")
        add_user(session, email="bo@acme.com")
    with sessions() as session:
        assert len(session.scalars(select(User)).all()) == 2


def test_processed_event_dedupe_pattern(sessions: sessionmaker[Session]) -> None:
    """The Slack retry dedupe: the first insert wins, a retry's insert fails and changes nothing."""

    def first_time(event_id: str) -> bool:
        try:
            with transaction(sessions) as session:
                session.add(ProcessedEvent(event_id=event_id, received_at=NOW))
        except IntegrityError:
            return False
        return True

    assert first_time("Ev1") is True
    assert first_time("Ev1") is False
    assert first_time("Ev2") is True
    with sessions() as session:
        assert session.scalars(select(ProcessedEvent.event_id).order_by(ProcessedEvent.event_id)).all() == [
            "Ev1",
            "Ev2",
        ]


def test_relationships_and_deleting_a_user(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        user = add_user(session)
        google = add_connection(session, user)
        outlook = add_connection(
            session, user, provider="microsoft", account_email="ann@acme.onmicrosoft.com"
        )
        appointment = add_appointment(session, user)
        session.add_all(
            [
                EventLink(appointment=appointment, connection=google, calendar_id="primary"),
                EventLink(appointment=appointment, connection=outlook, calendar_id="AAMk"),
                SyncRun(connection=google, direction="push", started_at=NOW),
                AuditEntry(at=NOW, actor="system", action="diagnose", subject_user_id=user.id),
                Feedback(at=NOW, user_id=user.id, helpful=True),
            ]
        )
        user_id = user.id

    with sessions() as session:
        user = session.get_one(User, user_id)
        assert [c.provider for c in user.connections] == ["google", "microsoft"]
        assert len(user.active_connections) == 2  # allowed: the diagnostics report it as duplicates
        assert {link.connection.provider for link in user.appointments[0].links} == {"google", "microsoft"}
        assert user.connections[0].sync_runs[0].connection.user.email == "ann@acme.com"

    with transaction(sessions) as session:
        session.delete(session.get(User, user_id))

    with sessions() as session:
        for model in (CalendarConnection, Appointment, EventLink, SyncRun):
            assert session.scalars(select(model)).all() == [], model.__name__
        assert session.scalars(select(AuditEntry.subject_user_id)).all() == [None]
        assert session.scalars(select(Feedback.user_id)).all() == [None]


def test_json_counts_track_in_place_changes(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        run = SyncRun(connection=add_connection(session, add_user(session)), direction="push", started_at=NOW)
        session.add(run)
        session.flush()
        run_id = run.id
    with transaction(sessions) as session:
        run = session.get_one(SyncRun, run_id)
        assert run.counts == {}
        run.counts["created"] = 2
    with sessions() as session:
        assert session.get_one(SyncRun, run_id).counts == {"created": 2}


def test_repr_is_readable() -> None:
    user = User(id=7, email="ann@acme.com", role="rep")
    assert repr(user) == "User(id=7, email='ann@acme.com', role='rep', slack_user_id=None)"
    run = SyncRun(id=3, connection_id=1, direction="pull", status="error", error_code="timeout")
    assert repr(run).startswith("SyncRun(id=3, connection_id=1, direction='pull', status='error'")
