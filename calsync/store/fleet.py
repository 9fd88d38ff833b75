"""The fleet at a glance, for agents: every rep's state (healthy, needs reconnect, failing, duplicates,
no connection) with its cause and organisation, the last health sweep, the connections whose sync
runs failed over the last week, and the resolution stats of the answers given.

Everything is counted by the database: one statement classifies every rep (a connection's newest run
is one probe of `ix_sync_runs_connection_started`), `GROUP BY` counts the states, causes and
organisations, the failed runs of a week are read from the partial index `ix_sync_runs_failed_started`
only, and the stats are one grouped statement over `answer_records`. Python only shapes the grouped
rows (a few per state, cause and organisation), never one row per rep or run. Figures over 10 000 reps
and a week of runs on PostgreSQL: BENCHMARKS.md, *Fleet view*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    Integer,
    String,
    and_,
    case,
    distinct,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from calsync.db import UTCDateTime, core_reading, table_of
from calsync.diagnostics.fleet import (
    BROKEN,
    DUPLICATES_CAUSE,
    STATES,
    Filters,
    Fleet,
    FleetRep,
    State,
    StatsRow,
)
from calsync.syncbackend.incidents import IncidentView
from calsync.syncbackend.models import AnswerRecord, AuditEntry, CalendarConnection, Feedback, SyncRun, User

RUN_WINDOW = timedelta(days=7)
CHART_BUCKETS = 28  # 6-hour buckets over the week
FIXED_WITHIN_HOURS = 24
MAX_REPS_SHOWN = 200

OpenIncidents = Callable[[sessionmaker[Session], datetime], Sequence[IncidentView]]


# -- two expressions the databases spell differently ------------------------------------------------


class email_domain(FunctionElement[str]):
    """The part of an email after the `@` (the rep's organisation)."""

    type = String()
    inherit_cache = True
    name = "email_domain"


@compiles(email_domain)
def _domain_sqlite(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    email = compiler.process(next(iter(element.clauses)), **kw)
    return f"substr({email}, instr({email}, '@') + 1)"


@compiles(email_domain, "postgresql")
def _domain_postgresql(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    return f"split_part({compiler.process(next(iter(element.clauses)), **kw)}, '@', 2)"


class hours_after(FunctionElement[datetime]):
    """`moment + N hours` (N a literal integer), comparable with the moments stored beside it."""

    type = UTCDateTime()
    inherit_cache = True
    name = "hours_after"


def _hours(element: hours_after) -> int:
    hours = list(element.clauses)[1]
    return int(getattr(hours, "value", 0))


@compiles(hours_after)
def _hours_after_sqlite(element: hours_after, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text: strftime keeps that shape.
    moment = compiler.process(next(iter(element.clauses)), **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f000', {moment}, '+{_hours(element)} hours')"


@compiles(hours_after, "postgresql")
def _hours_after_postgresql(element: hours_after, compiler: SQLCompiler, **kw: Any) -> str:
    moment = compiler.process(next(iter(element.clauses)), **kw)
    return f"({moment} + interval '{_hours(element)} hours')"


# -- what the page and the command show ---------------------------------------------------------------


# -- the statements -----------------------------------------------------------------------------------

_USERS = table_of(User)
_CONNECTIONS = table_of(CalendarConnection)
_RUNS = table_of(SyncRun)
_ANSWERS = table_of(AnswerRecord)
_AUDIT = table_of(AuditEntry)
_FEEDBACK = table_of(Feedback)


def rep_states(since: datetime) -> Any:
    """A CTE: every rep's id, email, name, state, cause and organisation (PostgreSQL computes it once
    however often the statement reads it)."""
    # The connection's newest run of the window as "status:error_code", one probe of
    # ix_sync_runs_connection_started (no join back to sync_runs, whose week may be millions of rows).
    newest_run = (
        select(_RUNS.c.status.concat(":").concat(func.coalesce(_RUNS.c.error_code, "")))
        .where(_RUNS.c.connection_id == _CONNECTIONS.c.id, _RUNS.c.started_at >= since)
        .order_by(_RUNS.c.started_at.desc())
        .limit(1)
        .correlate(_CONNECTIONS)
        .scalar_subquery()
    )
    active = (
        select(
            _CONNECTIONS.c.user_id,
            _CONNECTIONS.c.status,
            _CONNECTIONS.c.status_code,
            _CONNECTIONS.c.refresh_token_encrypted.is_(None).label("no_tokens"),
            newest_run.label("newest"),
        )
        .where(_CONNECTIONS.c.active.is_(True))
        .offset(0)  # a fence: the probe runs once per connection, not once per use below
        .subquery("active")
    )
    needs = or_(active.c.status == "disconnected", active.c.no_tokens)
    failing = or_(active.c.status == "error", active.c.newest.like("error:%"))
    failed_code = func.nullif(func.substr(active.c.newest, len("error:") + 1), "")
    per_user = (
        select(
            active.c.user_id,
            func.count().label("active"),
            func.max(case((needs, 1), else_=0)).label("needs"),
            func.max(case((failing, 1), else_=0)).label("failing"),
            func.min(case((needs, func.coalesce(active.c.status_code, "disconnected")))).label("why_needs"),
            func.min(case((failing, func.coalesce(failed_code, active.c.status_code, "error")))).label(
                "why_failing"
            ),
        )
        .group_by(active.c.user_id)
        .subquery("per_user")
    )
    state = case(
        (per_user.c.active.is_(None), "no_connection"),
        (per_user.c.needs == 1, "needs_reconnect"),
        (per_user.c.active > 1, "duplicates"),
        (per_user.c.failing == 1, "failing"),
        else_="healthy",
    )
    cause = case(
        (per_user.c.active.is_(None), None),
        (per_user.c.needs == 1, per_user.c.why_needs),
        (per_user.c.active > 1, DUPLICATES_CAUSE),
        (per_user.c.failing == 1, per_user.c.why_failing),
        else_=None,
    )
    return (
        select(
            _USERS.c.id.label("user_id"),
            _USERS.c.email,
            _USERS.c.name,
            state.label("state"),
            cause.label("cause"),
            email_domain(_USERS.c.email).label("org"),
        )
        .select_from(_USERS.outerjoin(per_user, per_user.c.user_id == _USERS.c.id))
        .where(_USERS.c.role == "rep")
        .cte("reps")
    )


def _where(reps: Any, filters: Filters, *, state: bool = True) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if state and filters.state:
        conditions.append(reps.c.state == filters.state)
    if filters.cause:
        conditions.append(reps.c.cause == filters.cause)
    if filters.org:
        conditions.append(reps.c.org == filters.org.strip().lower())
    return conditions


def _state_rank(column: Any) -> Any:
    return case(*((column == name, rank) for rank, name in enumerate(STATES)), else_=len(STATES))


def fleet_statement(reps: Any, filters: Filters, limit: int) -> Any:
    """One statement, the reps classified once: the count of reps per state, cause and organisation
    (rows of kind "g"), then the reps to list (kind "r": filtered, broken first, then by email, at
    most `limit`)."""
    groups = select(
        literal("g").label("kind"),
        literal(0).label("position"),
        reps.c.state,
        reps.c.cause,
        reps.c.org,
        func.count().label("n"),
        null().label("user_id"),
        null().label("email"),
        null().label("name"),
    ).group_by(reps.c.state, reps.c.cause, reps.c.org)
    position = func.row_number().over(order_by=(_state_rank(reps.c.state), reps.c.email))
    listed = (
        select(
            literal("r").label("kind"),
            position.label("position"),
            reps.c.state,
            reps.c.cause,
            reps.c.org,
            literal(1).label("n"),
            reps.c.user_id,
            reps.c.email,
            reps.c.name,
        )
        .where(*_where(reps, filters))
        .order_by(_state_rank(reps.c.state), reps.c.email)
        .limit(limit)
        .subquery("listed")
    )
    both = union_all(groups, select(*listed.c)).subquery("fleet")
    return select(both).order_by(both.c.kind, both.c.position)


def chart_edges(
    now: datetime, buckets: int = CHART_BUCKETS, window: timedelta = RUN_WINDOW
) -> list[datetime]:
    step = window / buckets
    start = now - window
    return [start + step * i for i in range(buckets + 1)]


def chart_statement(edges: Sequence[datetime]) -> Any:
    """Per bucket between `edges`: how many connections had a failed sync run in it. One scan of the
    failed runs (the partial index), a COUNT(DISTINCT …) per bucket."""
    buckets = len(edges) - 1
    columns = [
        func.count(
            distinct(
                case(
                    (
                        and_(_RUNS.c.started_at >= edges[i], _RUNS.c.started_at < edges[i + 1]),
                        _RUNS.c.connection_id,
                    )
                )
            )
        ).label(f"b{i}")
        for i in range(buckets)
    ]
    return select(*columns).where(text("sync_runs.status = 'error'"), _RUNS.c.started_at >= edges[0])


def failed_connections_chart(connection: Any, now: datetime) -> tuple[tuple[datetime, int], ...]:
    edges = chart_edges(now)
    row = connection.execute(chart_statement(edges)).one()
    return tuple((edges[i], int(row[i] or 0)) for i in range(len(edges) - 1))


def last_sweep_statement() -> Any:
    return select(func.max(_CONNECTIONS.c.last_checked_at))


def stats_statement(since: datetime, by: Literal["cause", "article"]) -> Any:
    """Per cause (and its article) or per article: answers given, 👍/👎 on them, reconnects the rep
    started and completed within 24 hours after, and answers whose rep a later diagnosis found
    healthy within 24 hours."""
    answers = _ANSWERS
    feedback = (
        select(
            _FEEDBACK.c.diagnosis_id,
            func.sum(case((_FEEDBACK.c.helpful.is_(True), 1), else_=0)).label("up"),
            func.sum(case((_FEEDBACK.c.helpful.is_(True), 0), else_=1)).label("down"),
        )
        .where(_FEEDBACK.c.at >= since, _FEEDBACK.c.diagnosis_id.is_not(None))
        .group_by(_FEEDBACK.c.diagnosis_id)
        .subquery("fb")
    )

    def reconnected(action: str) -> Any:
        followed = exists(
            select(literal(1)).where(
                _AUDIT.c.action == action,
                _AUDIT.c.subject_user_id == answers.c.user_id,
                _AUDIT.c.at > answers.c.at,
                _AUDIT.c.at <= hours_after(answers.c.at, literal(FIXED_WITHIN_HOURS, Integer)),
            )
        )
        return func.sum(case((followed, 1), else_=0))

    keys = [answers.c.cause, answers.c.article] if by == "cause" else [answers.c.article]
    return (
        select(
            *keys,
            func.count().label("answered"),
            func.coalesce(func.sum(feedback.c.up), 0).label("helped"),
            func.coalesce(func.sum(feedback.c.down), 0).label("not_helped"),
            reconnected("reconnect_started").label("started"),
            reconnected("reconnect_completed").label("completed"),
            func.sum(case((answers.c.fixed_at.is_not(None), 1), else_=0)).label("fixed"),
        )
        .select_from(answers.outerjoin(feedback, feedback.c.diagnosis_id == answers.c.diagnosis_id))
        .where(answers.c.at >= since)
        .group_by(*keys)
        .order_by(func.count().desc(), *keys)
    )


class FleetStore:
    """The fleet's figures, read in one short connection per call (run it in a worker thread)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        *,
        open_incidents: OpenIncidents | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        # Another part of calsync may recognise incidents; when it is wired in, the fleet shows them.
        self.open_incidents = open_incidents

    def fleet(
        self, filters: Filters = Filters(), *, limit: int = MAX_REPS_SHOWN, chart: bool = True
    ) -> Fleet:
        now = self.clock()
        reps = rep_states(now - RUN_WINDOW)
        with core_reading(self.sessions) as connection:
            rows = connection.execute(fleet_statement(reps, filters, limit)).all()
            groups = [(r.state, r.cause, r.org, r.n) for r in rows if r.kind == "g"]
            shown = [r for r in rows if r.kind == "r"]
            last_sweep = connection.execute(last_sweep_statement()).scalar()
            series = failed_connections_chart(connection, now) if chart else ()
        incidents = tuple(self.open_incidents(self.sessions, now)) if self.open_incidents else ()
        return _shape(now, filters, groups, shown, last_sweep, series, incidents)

    def stats(self, *, by: Literal["cause", "article"] = "cause", days: int = 30) -> list[StatsRow]:
        """Per cause (and its article) or per article: answers given, 👍/👎 on them, reconnects the rep
        started and completed within 24 hours after, and answers whose rep a later diagnosis found
        healthy within 24 hours."""
        statement = stats_statement(self.clock() - timedelta(days=days), by)
        with core_reading(self.sessions) as connection:
            rows = connection.execute(statement).all()
        return [
            StatsRow(
                cause=row.cause if by == "cause" else None,
                article=row.article,
                answered=int(row.answered),
                helped=int(row.helped or 0),
                not_helped=int(row.not_helped or 0),
                reconnects_started=int(row.started or 0),
                reconnects_completed=int(row.completed or 0),
                fixed_within_24h=int(row.fixed or 0),
            )
            for row in rows
        ]


def _shape(
    now: datetime,
    filters: Filters,
    groups: Sequence[Any],
    shown: Sequence[Any],
    last_sweep: datetime | None,
    chart: tuple[tuple[datetime, int], ...],
    incidents: tuple[IncidentView, ...],
) -> Fleet:
    """The grouped rows (one per state × cause × organisation) summed under the filters."""
    counts: dict[State, int] = dict.fromkeys(STATES, 0)
    causes: dict[str, int] = {}
    orgs: dict[str, int] = {}
    every_org: set[str] = set()
    matching = 0
    for state, cause, org, n in groups:
        every_org.add(org)
        if (filters.cause and cause != filters.cause) or (filters.org and org != filters.org.strip().lower()):
            continue
        counts[state] += n
        if filters.state and state != filters.state:
            continue
        matching += n
        if state != "healthy":
            if cause:
                causes[cause] = causes.get(cause, 0) + n
            orgs[org] = orgs.get(org, 0) + n
    return Fleet(
        now=now,
        filters=filters,
        counts=counts,
        causes=tuple(sorted(causes.items(), key=lambda item: (-item[1], item[0]))),
        orgs=tuple(sorted(orgs.items(), key=lambda item: (-item[1], item[0]))),
        all_orgs=tuple(sorted(every_org)),
        reps=tuple(
            FleetRep(row.user_id, row.email, row.name or "", row.state, row.cause, row.org) for row in shown
        ),
        matching=matching,
        last_sweep=last_sweep,
        chart=chart,
        incidents=incidents,
    )


__all__ = [
    "BROKEN",
    "STATES",
    "Filters",
    "Fleet",
    "FleetRep",
    "FleetStore",
    "OpenIncidents",
    "State",
    "StatsRow",
    "failed_connections_chart",
    "fleet_statement",
    "rep_states",
]
