"""Shared causes are one incident: detection, its rows, and the claim of its one support message.

Two shapes of incident, each found by a few indexed SQL statements (no Python loop over reps or
runs: the loops below are over the handful of candidate groups and open incidents):

- **An organisation's grant** (`org_consent_removed`, `org_access_revoked`): at least
  `org_min_reps` reps of one account domain, on one provider, whose connections were marked
  disconnected with the same cause within `org_window` — Microsoft's AADSTS65001 for every rep of
  a tenant once its admin removes SalesPartner's consent, Google's "revoked" for every rep of a
  Workspace whose admin revoked or blocked the app. The scope is the account domain: in practice one
  tenant is one work domain (the tenant is stored, `CalendarConnection.tenant_id`, but not grouped
  by yet: the sandbox's identity emulator has one tenant for every account). Consumer domains (gmail.com,
  outlook.com, ...) are no organisation and never make one. It grows as more reps of that domain fail
  the same way, and ends once none of its connections is still disconnected for that cause (each rep
  reconnected, or turned the connection off): until then reconnecting cannot work.
- **A provider outage** (`provider_outage`): sync runs that failed as `provider_unavailable` or
  `timeout` for at least `outage_min_reps` distinct reps of at least `outage_min_orgs` domains within
  `outage_window`. A rep recovers with a successful run after their last failure; the outage ends
  when every affected rep has recovered, or when no run failed that way within the window.

Why these thresholds (defaults; settings in `calsync.settings`): three reps of one domain in 30 min
is not chance — a single rep revoking, or one password change, makes one; an admin's change reaches
every rep within one or two sync cycles (5–15 min) and the health sweep's hour, so 30 min catches the
wave while it comes. An outage needs more reps and more than one organisation, so one company's
network trouble or a single rep's flaky proxy is not called the provider's outage; 15 minutes is the
longest a connection waits between two cycles, so every rep's cycle has had a chance to see it.

Codes, never words: `calsync.render.incidents` words them, `calsync.flows.incidents` posts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import table_of, transaction
from calsync.syncbackend.models import CalendarConnection, Incident, IncidentKind, IncidentRep, SyncRun, User

# GrantCause value -> the incident kind it makes when it hits many reps of one organisation.
ORG_CAUSES: dict[str, IncidentKind] = {
    "consent_removed": "org_consent_removed",  # Microsoft AADSTS65001: the tenant's consent removed
    "revoked": "org_access_revoked",  # Google invalid_grant "revoked": a Workspace admin's revocation
}
OUTAGE_CODES = ("provider_unavailable", "timeout")  # `SyncRun.error_code`s of a provider in trouble
# Domains of personal accounts: the people on them share no admin, so they make no organisation.
CONSUMER_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
    }
)


@dataclass(frozen=True)
class IncidentPolicy:
    """When many failures are one incident (see the module docstring for why these defaults)."""

    org_min_reps: int = 3
    org_window: timedelta = timedelta(minutes=30)
    outage_min_reps: int = 5
    outage_min_orgs: int = 2
    outage_window: timedelta = timedelta(minutes=15)
    claim: timedelta = timedelta(minutes=2)  # how long a worker holds the support message's claim


@dataclass(frozen=True)
class IncidentView:
    """One incident as other surfaces (the fleet page, `/calsync status`) show it."""

    id: int
    kind: IncidentKind
    provider: str
    scope: str  # the account domain, or the provider for an outage
    cause_code: str
    started_at: datetime
    last_seen_at: datetime
    affected: int  # reps still affected
    ended_at: datetime | None

    def __str__(self) -> str:
        """One line of codes and figures for a list (the fleet page shows it as it is):
        "org_consent_removed · microsoft · tallgrass.example · 5 affected · since 2026-12-04 09:12 UTC"."""
        since = self.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts = [self.kind, self.provider, *([self.scope] if self.scope != self.provider else [])]
        parts += [f"{self.affected} affected", f"since {since}"]
        if self.ended_at is not None:
            parts.append(f"ended {self.ended_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}")
        return " · ".join(parts)


@dataclass(frozen=True)
class AffectedRep:
    name: str
    email: str
    slack_user_id: str | None


@dataclass(frozen=True)
class IncidentNotice:
    """What the support channel's one message about an incident shows, claimed for one worker."""

    incident: IncidentView
    version: int
    support_ts: str | None  # the message to update; None: post it
    reps: tuple[AffectedRep, ...]  # the first few still affected, in the order they joined
    recovered: int  # reps who were affected and are healthy again


FollowUpKind = Literal["followup", "access_back"]


@dataclass(frozen=True)
class IncidentFollowUp:
    """One message to one rep of an organisation's incident, in their disconnection DM's thread,
    claimed for one worker: `followup` when they were told to reconnect before the incident was
    recognised (it cannot work yet), `access_back` when they were told reconnecting won't help and a
    colleague has reconnected since (now it will)."""

    kind: FollowUpKind
    incident: IncidentView
    connection_id: int
    user_email: str
    provider: str
    account_email: str
    channel: str  # the disconnection DM's conversation
    thread_ts: str  # and its ts
    reconnected: int  # colleagues who reconnected since


@dataclass(frozen=True)
class Detected:
    opened: tuple[int, ...] = ()
    changed: tuple[int, ...] = ()  # grew, shrank (recoveries) or ended
    ended: tuple[int, ...] = ()


_CONNECTIONS = table_of(CalendarConnection)
_RUNS = table_of(SyncRun)
_INCIDENTS = table_of(Incident)
_REPS = table_of(IncidentRep)
NOTICE_REPS = 10  # reps named in the support message; the rest are counted


def domain_of(column: Any, dialect: str) -> ColumnElement[str]:
    """The domain of an email column, in SQL (emails are stored lowercase)."""
    if dialect == "postgresql":
        return func.split_part(column, "@", 2)
    return func.substr(column, func.instr(column, "@") + 1)


def _view(row: Any) -> IncidentView:
    return IncidentView(
        id=row.id,
        kind=row.kind,
        provider=row.provider,
        scope=row.scope,
        cause_code=row.cause_code,
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        affected=row.affected_count,
        ended_at=row.ended_at,
    )


def open_incidents(sessions: sessionmaker[Session], now: datetime) -> list[IncidentView]:
    """The incidents open at `now`, newest first (for the fleet page and `/calsync status`)."""
    with sessions() as session:
        rows = session.execute(
            select(_INCIDENTS)
            .where(
                _INCIDENTS.c.started_at <= now,
                or_(_INCIDENTS.c.ended_at.is_(None), _INCIDENTS.c.ended_at > now),
            )
            .order_by(_INCIDENTS.c.started_at.desc(), _INCIDENTS.c.id.desc())
        ).all()
    return [_view(row) for row in rows]


# -- detection -------------------------------------------------------------------------------------


def detect(session: Session, now: datetime, policy: IncidentPolicy) -> Detected:
    """Open, grow, shrink and end incidents as the connections and sync runs say, in `session`'s
    transaction. Two workers may run it at once: the partial unique index lets one open a given
    incident, and the other's attempt is dropped (a savepoint)."""
    dialect = session.get_bind().dialect.name
    opened = _open_org_incidents(session, now, policy, dialect) + _open_outages(session, now, policy, dialect)
    changed: list[int] = []
    ended: list[int] = []
    # Locked in id order (PostgreSQL): two workers' detections refresh one after the other, so neither
    # loses the other's count and they never wait on each other in opposite orders.
    open_ones = select(Incident).where(Incident.ended_at.is_(None)).order_by(Incident.id).with_for_update()
    for incident in session.scalars(open_ones).all():
        if incident.kind == "provider_outage":
            _refresh_outage(session, incident, now, policy, dialect)
        else:
            _refresh_org(session, incident, now, policy, dialect)
        affected = session.scalar(
            select(func.count())
            .select_from(_REPS)
            .where(_REPS.c.incident_id == incident.id, _REPS.c.recovered_at.is_(None))
        )
        affected = int(affected or 0)
        quiet = incident.kind == "provider_outage" and incident.last_seen_at < now - policy.outage_window
        if affected == 0 or quiet:
            # Over: whoever is still listed is counted as recovered, so the count says who was hit.
            session.execute(
                update(_REPS)
                .where(_REPS.c.incident_id == incident.id, _REPS.c.recovered_at.is_(None))
                .values(recovered_at=now)
            )
            incident.ended_at = now
            incident.version += 1
            incident.affected_count = 0
            ended.append(incident.id)
            changed.append(incident.id)
        elif affected != incident.affected_count:
            incident.version += 1
            incident.affected_count = affected
            changed.append(incident.id)
    session.flush()
    return Detected(tuple(opened), tuple(changed), tuple(ended))


def _already_open(kind: str, provider: str, scope: str) -> ColumnElement[bool]:
    return exists().where(
        _INCIDENTS.c.kind == kind,
        _INCIDENTS.c.provider == provider,
        _INCIDENTS.c.scope == scope,
        _INCIDENTS.c.ended_at.is_(None),
    )


def _open(session: Session, **values: Any) -> int | None:
    """Insert one incident unless another worker just did (the partial unique index says so)."""
    try:
        with session.begin_nested():
            incident = Incident(affected_count=0, version=1, posted_version=0, **values)
            session.add(incident)
            session.flush()
            return incident.id
    except IntegrityError:
        return None


def _open_org_incidents(session: Session, now: datetime, policy: IncidentPolicy, dialect: str) -> list[int]:
    c = _CONNECTIONS.c
    domain = domain_of(c.account_email, dialect).label("domain")
    groups = session.execute(
        select(c.provider, domain, c.status_code, func.min(c.disconnected_at), func.max(c.disconnected_at))
        .where(
            c.status == "disconnected",
            c.disconnected_at >= now - policy.org_window,
            c.active.is_(True),
            c.status_code.in_(list(ORG_CAUSES)),
        )
        .group_by(c.provider, domain, c.status_code)
        .having(func.count(func.distinct(c.user_id)) >= policy.org_min_reps)
    ).all()
    opened = []
    for provider, scope, cause, first, last in groups:
        kind = ORG_CAUSES[cause]
        if scope in CONSUMER_DOMAINS or session.scalar(select(_already_open(kind, provider, scope))):
            continue
        new = _open(
            session,
            kind=kind,
            provider=provider,
            scope=scope,
            cause_code=cause,
            started_at=first,
            last_seen_at=last,
        )
        if new is not None:
            opened.append(new)
    return opened


def _outage_failures(dialect: str) -> Any:
    """Failed runs of the outage codes, with their connection's provider, rep and domain."""
    r, c = _RUNS.c, _CONNECTIONS.c
    return (
        select(
            r.connection_id,
            r.started_at,
            c.provider,
            c.user_id,
            domain_of(c.account_email, dialect).label("domain"),
        )
        .join(_CONNECTIONS, c.id == r.connection_id)
        .where(r.status == "error", r.error_code.in_(OUTAGE_CODES))
    )


def _open_outages(session: Session, now: datetime, policy: IncidentPolicy, dialect: str) -> list[int]:
    failures = _outage_failures(dialect).where(_RUNS.c.started_at >= now - policy.outage_window).subquery()
    groups = session.execute(
        select(failures.c.provider, func.min(failures.c.started_at), func.max(failures.c.started_at))
        .group_by(failures.c.provider)
        .having(
            func.count(func.distinct(failures.c.user_id)) >= policy.outage_min_reps,
            func.count(func.distinct(failures.c.domain)) >= policy.outage_min_orgs,
        )
    ).all()
    opened = []
    for provider, first, last in groups:
        if session.scalar(select(_already_open("provider_outage", provider, provider))):
            continue
        new = _open(
            session,
            kind="provider_outage",
            provider=provider,
            scope=provider,
            cause_code="provider_unavailable",
            started_at=first,
            last_seen_at=last,
        )
        if new is not None:
            opened.append(new)
    return opened


def _join_new(session: Session, incident: Incident, members: Any) -> None:
    """Add the connections of `members` (connection_id, user_id, joined_at) not in the incident yet;
    one that had recovered and fails again is affected again."""
    m = members.subquery()
    session.execute(
        insert(_REPS).from_select(
            ["incident_id", "connection_id", "user_id", "joined_at"],
            select(literal(incident.id), m.c.connection_id, m.c.user_id, m.c.joined_at).where(
                ~exists().where(
                    _REPS.c.incident_id == incident.id, _REPS.c.connection_id == m.c.connection_id
                )
            ),
        )
    )


def _refresh_org(
    session: Session, incident: Incident, now: datetime, policy: IncidentPolicy, dialect: str
) -> None:
    c = _CONNECTIONS.c
    still = and_(
        c.status == "disconnected",
        c.active.is_(True),
        c.status_code == incident.cause_code,
        c.provider == incident.provider,
        c.disconnected_at >= incident.started_at - policy.org_window,
        domain_of(c.account_email, dialect) == incident.scope,
    )
    _join_new(
        session,
        incident,
        select(c.id.label("connection_id"), c.user_id, c.disconnected_at.label("joined_at")).where(still),
    )
    # Healthy again: the connection is no longer disconnected for this cause (reconnected, turned off).
    session.execute(
        update(_REPS)
        .where(
            _REPS.c.incident_id == incident.id,
            _REPS.c.recovered_at.is_(None),
            ~exists().where(c.id == _REPS.c.connection_id, still),
        )
        .values(recovered_at=now)
    )
    last = session.scalar(select(func.max(c.disconnected_at)).where(still))
    if last is not None and last > incident.last_seen_at:
        incident.last_seen_at = last


def _refresh_outage(
    session: Session, incident: Incident, now: datetime, policy: IncidentPolicy, dialect: str
) -> None:
    since = incident.started_at - policy.outage_window
    failures = _outage_failures(dialect).where(
        _RUNS.c.started_at >= since, _CONNECTIONS.c.provider == incident.provider
    )
    f = failures.subquery()
    _join_new(
        session,
        incident,
        select(f.c.connection_id, f.c.user_id, func.min(f.c.started_at).label("joined_at")).group_by(
            f.c.connection_id, f.c.user_id
        ),
    )
    last = session.scalar(select(func.max(f.c.started_at)))
    if last is not None and last > incident.last_seen_at:
        incident.last_seen_at = last
    # A member recovers with a successful run after its last failure, and is affected again when a
    # run fails after that. Correlated per member, so each probe is an index range of one connection.
    ok, failed = _RUNS.alias("ok"), _RUNS.alias("failed")
    directions = ("pull", "push", "health")

    def failure_after(moment: Any) -> Any:
        return exists().where(
            failed.c.connection_id == _REPS.c.connection_id,
            failed.c.direction.in_(directions),
            failed.c.started_at > moment,
            failed.c.status == "error",
            failed.c.error_code.in_(OUTAGE_CODES),
        )

    healthy_since = exists().where(
        ok.c.connection_id == _REPS.c.connection_id,
        ok.c.direction.in_(directions),
        ok.c.started_at >= since,
        ok.c.status == "ok",
        ~failure_after(ok.c.started_at),
    )
    session.execute(
        update(_REPS)
        .where(_REPS.c.incident_id == incident.id, _REPS.c.recovered_at.is_(None), healthy_since)
        .values(recovered_at=now)
    )
    session.execute(
        update(_REPS)
        .where(
            _REPS.c.incident_id == incident.id,
            _REPS.c.recovered_at.is_not(None),
            failure_after(_REPS.c.recovered_at),
        )
        .values(recovered_at=None)
    )


# -- the rep's side ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepIncident:
    """An open incident one of the rep's connections is in."""

    incident: IncidentView
    connection_id: int
    # Members of an organisation's incident who have reconnected since: access is back, so
    # reconnecting works again for the others.
    reconnected: int = 0


def _reconnected() -> Any:
    """How many members of the enclosing query's incident have reconnected since (recovered, and
    their connection is connected): access is back once one has."""
    others, connections = _REPS.alias("others"), _CONNECTIONS.alias("others_connections")
    return (
        select(func.count())
        .select_from(others.join(connections, connections.c.id == others.c.connection_id))
        .where(
            others.c.incident_id == _INCIDENTS.c.id,
            others.c.recovered_at.is_not(None),
            connections.c.status == "connected",
            connections.c.active.is_(True),
        )
        .correlate(_INCIDENTS)
        .scalar_subquery()
    )


def _rep_incidents_statement() -> Select[Any]:
    return (
        select(
            _INCIDENTS,
            _REPS.c.connection_id.label("member_connection"),
            _reconnected().label("reconnected"),
        )
        .join(_REPS, _REPS.c.incident_id == _INCIDENTS.c.id)
        .where(
            _REPS.c.user_id == bindparam("user_id"),
            _REPS.c.recovered_at.is_(None),
            _INCIDENTS.c.ended_at.is_(None),
        )
        .order_by(_INCIDENTS.c.started_at, _INCIDENTS.c.id)
    )


# Built once: every answer reads it (building it, and its cache key, cost more than running it).
_REP_INCIDENTS = _rep_incidents_statement()


def incidents_of_rep(database: Session | Connection, user_id: int) -> list[RepIncident]:
    """The open incidents the rep is affected by (not recovered), oldest first."""
    rows = database.execute(_REP_INCIDENTS, {"user_id": user_id}).all()
    return [RepIncident(_view(row), row.member_connection, int(row.reconnected or 0)) for row in rows]


def incidents_of_connections(
    database: Session | Connection, connection_ids: Sequence[int]
) -> dict[int, IncidentView]:
    """The open incident each of these connections is affected by (the newest when several)."""
    if not connection_ids:
        return {}
    rows = database.execute(
        select(_INCIDENTS, _REPS.c.connection_id.label("member_connection"))
        .join(_REPS, _REPS.c.incident_id == _INCIDENTS.c.id)
        .where(
            _REPS.c.connection_id.in_(list(connection_ids)),
            _REPS.c.recovered_at.is_(None),
            _INCIDENTS.c.ended_at.is_(None),
        )
        .order_by(_INCIDENTS.c.started_at, _INCIDENTS.c.id)
    ).all()
    return {row.member_connection: _view(row) for row in rows}


# -- the support channel's one message ------------------------------------------------------------


class IncidentStore:
    """The incidents of one database: detection in a transaction of its own, and the claim of each
    incident's support message (one conditional UPDATE, so two workers never both post it)."""

    def __init__(self, sessions: sessionmaker[Session], policy: IncidentPolicy, worker_id: str) -> None:
        self.sessions = sessions
        self.policy = policy
        self.worker_id = worker_id

    def detect(self, now: datetime) -> Detected:
        with transaction(self.sessions) as session:
            return detect(session, now, self.policy)

    def claim_notices(self, now: datetime) -> list[IncidentNotice]:
        """Every incident whose message is behind (or not posted), claimed for this worker. An
        incident that ended before its message was ever posted is marked done instead: support
        needs no message about an incident that is already over."""
        i = _INCIDENTS.c
        with transaction(self.sessions) as session:
            session.execute(
                update(_INCIDENTS)
                .where(i.posted_version < i.version, i.support_ts.is_(None), i.ended_at.is_not(None))
                .values(posted_version=i.version)
            )
            due = session.execute(
                select(i.id, i.version).where(
                    i.posted_version < i.version,
                    or_(i.support_claim_until.is_(None), i.support_claim_until < now),
                )
            ).all()
            notices = []
            for incident_id, version in due:
                taken = session.execute(
                    update(_INCIDENTS)
                    .where(
                        i.id == incident_id,
                        i.version == version,
                        or_(i.support_claim_until.is_(None), i.support_claim_until < now),
                    )
                    .values(support_claimed_by=self.worker_id, support_claim_until=now + self.policy.claim)
                )
                if getattr(taken, "rowcount", 0) == 1:
                    notices.append(self._notice(session, incident_id))
            return notices

    def _notice(self, session: Session, incident_id: int) -> IncidentNotice:
        row = session.execute(select(_INCIDENTS).where(_INCIDENTS.c.id == incident_id)).one()
        reps = session.execute(_affected(incident_id).limit(NOTICE_REPS)).all()
        recovered = session.scalar(
            select(func.count())
            .select_from(_REPS)
            .where(_REPS.c.incident_id == incident_id, _REPS.c.recovered_at.is_not(None))
        )
        return IncidentNotice(
            incident=_view(row),
            version=row.version,
            support_ts=row.support_ts,
            reps=tuple(AffectedRep(name, email, slack) for name, email, slack in reps),
            recovered=int(recovered or 0),
        )

    def posted(self, notice: IncidentNotice, ts: str) -> None:
        """The message for `notice` is in the channel at `ts`: remember it, release the claim."""
        i = _INCIDENTS.c
        with transaction(self.sessions) as session:
            session.execute(
                update(_INCIDENTS)
                .where(i.id == notice.incident.id, i.support_claimed_by == self.worker_id)
                .values(
                    support_ts=ts,
                    posted_version=notice.version,
                    support_claimed_by=None,
                    support_claim_until=None,
                )
            )

    def release(self, notice: IncidentNotice) -> None:
        """Sending failed: the next worker round tries again."""
        i = _INCIDENTS.c
        with transaction(self.sessions) as session:
            session.execute(
                update(_INCIDENTS)
                .where(i.id == notice.incident.id, i.support_claimed_by == self.worker_id)
                .values(support_claimed_by=None, support_claim_until=None)
            )

    # -- the reps' follow-ups ------------------------------------------------------------------------

    def claim_follow_ups(self, now: datetime) -> list[IncidentFollowUp]:
        """Every follow-up due to a rep of an open organisation's incident, claimed for this worker
        (one conditional UPDATE each, as the support message's claim): to reps still disconnected
        whose DM offered Reconnect before the incident was recognised, while access is not back; and
        to reps told reconnecting won't help (by that follow-up or their DM), once it is back."""
        r, c, i = _REPS.c, _CONNECTIONS.c, _INCIDENTS.c
        users = table_of(User)
        back = _reconnected()
        free = or_(r.notice_claim_until.is_(None), r.notice_claim_until < now)
        told_reconnect = or_(
            c.disconnect_dm_incident_id.is_(None), c.disconnect_dm_incident_id != r.incident_id
        )
        told_wait = or_(r.followup_sent_at.is_not(None), c.disconnect_dm_incident_id == r.incident_id)
        followup = and_(r.followup_sent_at.is_(None), told_reconnect, back == 0)
        access_back = and_(r.access_back_sent_at.is_(None), told_wait, back > 0)
        with transaction(self.sessions) as session:
            due = session.execute(
                select(
                    _INCIDENTS,
                    r.connection_id.label("member_connection"),
                    users.c.email.label("rep_email"),
                    c.provider.label("connection_provider"),
                    c.account_email,
                    c.disconnect_dm_channel,
                    c.disconnect_dm_ts,
                    followup.label("followup"),
                    back.label("reconnected"),
                )
                .select_from(
                    _REPS.join(_INCIDENTS, i.id == r.incident_id)
                    .join(_CONNECTIONS, c.id == r.connection_id)
                    .join(users, users.c.id == r.user_id)
                )
                .where(
                    i.ended_at.is_(None),
                    i.kind.in_(list(ORG_CAUSES.values())),
                    r.recovered_at.is_(None),
                    c.status == "disconnected",
                    c.active.is_(True),
                    c.disconnect_dm_ts.is_not(None),
                    c.disconnect_dm_channel.is_not(None),
                    free,
                    or_(followup, access_back),
                )
                .order_by(r.joined_at, r.connection_id)
            ).all()
            claimed = []
            for row in due:
                kind: FollowUpKind = "followup" if row.followup else "access_back"
                unsent = r.followup_sent_at if kind == "followup" else r.access_back_sent_at
                taken = session.execute(
                    update(_REPS)
                    .where(
                        r.incident_id == row.id,
                        r.connection_id == row.member_connection,
                        unsent.is_(None),
                        free,
                    )
                    .values(notice_claimed_by=self.worker_id, notice_claim_until=now + self.policy.claim)
                )
                if getattr(taken, "rowcount", 0) == 1:
                    claimed.append(
                        IncidentFollowUp(
                            kind=kind,
                            incident=_view(row),
                            connection_id=row.member_connection,
                            user_email=row.rep_email,
                            provider=row.connection_provider,
                            account_email=row.account_email,
                            channel=row.disconnect_dm_channel,
                            thread_ts=row.disconnect_dm_ts,
                            reconnected=int(row.reconnected or 0),
                        )
                    )
            return claimed

    def follow_up_sent(self, follow_up: IncidentFollowUp, now: datetime) -> None:
        """The follow-up is in the rep's thread: never again for this rep and incident; claim released."""
        sent = {"followup_sent_at" if follow_up.kind == "followup" else "access_back_sent_at": now}
        with transaction(self.sessions) as session:
            session.execute(
                update(_REPS)
                .where(*self._mine(follow_up))
                .values(notice_claimed_by=None, notice_claim_until=None, **sent)
            )

    def release_follow_up(self, follow_up: IncidentFollowUp) -> None:
        """Sending failed: the next round tries again."""
        with transaction(self.sessions) as session:
            session.execute(
                update(_REPS)
                .where(*self._mine(follow_up))
                .values(notice_claimed_by=None, notice_claim_until=None)
            )

    def _mine(self, follow_up: IncidentFollowUp) -> tuple[ColumnElement[bool], ...]:
        r = _REPS.c
        return (
            r.incident_id == follow_up.incident.id,
            r.connection_id == follow_up.connection_id,
            r.notice_claimed_by == self.worker_id,
        )


def affected_reps(sessions: sessionmaker[Session], incident_id: int) -> Sequence[AffectedRep]:
    """Every rep an incident still affects, in the order they joined (for tests and agents)."""
    with sessions() as session:
        rows = session.execute(_affected(incident_id)).all()
    return [AffectedRep(name, email, slack) for name, email, slack in rows]


def _affected(incident_id: int) -> Any:
    """The reps an incident still affects (name, email, Slack id), in the order they joined."""
    users = table_of(User)
    return (
        select(users.c.name, users.c.email, users.c.slack_user_id)
        .join(_REPS, _REPS.c.user_id == users.c.id)
        .where(_REPS.c.incident_id == incident_id, _REPS.c.recovered_at.is_(None))
        .order_by(_REPS.c.joined_at, users.c.id)
    )
