"""Scenario files: a YAML description of reps, their connections and sync history (the backend),
the provider-side world (accounts, grants, calendars, events, faults) and the Slack workspace (a
Slack user per user with a `slack_user_id`, plus the `slack:` section), loaded in one transaction.

The format is documented in the README ("Scenario files"). Times are written relative to the moment
of loading ("-4m", "+1d", "today 14:00", "tomorrow 09:30", "now") or as ISO 8601 instants, so a
scenario stays true whenever it is loaded. A malformed file is refused with the line of the
mistake and nothing is written.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.sandbox.world import (
    Endpoint,
    FaultKind,
    SandboxAccount,
    SandboxCalendar,
    SandboxEvent,
    SandboxFault,
    SandboxGrant,
    SandboxSlackChannel,
    SandboxSlackDm,
    SandboxSlackHomeView,
    SandboxSlackMessage,
    SandboxSlackResponseUrl,
    SandboxSlackUser,
    SandboxSlackUsergroup,
    World,
)
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.models import Appointment, CalendarConnection, EventLink, SyncRun, User

Clock = Callable[[], datetime]

_RELATIVE = re.compile(r"^(?P<sign>[+-])(?P<parts>(\d+[dhms])+)$")
_RELATIVE_PART = re.compile(r"(\d+)([dhms])")
_DAY_AT = re.compile(r"^(?P<day>yesterday|today|tomorrow)(?:\s+(?P<hour>\d{1,2}):(?P<minute>\d{2}))?$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DAY_OFFSET = {"yesterday": -1, "today": 0, "tomorrow": 1}


class ScenarioError(ValueError):
    """A scenario file that cannot be loaded; the message names the file and the line."""


def parse_when(value: str | datetime, now: datetime) -> datetime:
    """A scenario time: "now", "-4m", "+1d2h", "today 14:00", "tomorrow", or ISO 8601 (UTC if naive)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip().lower()
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        delta = timedelta(
            **{_UNITS[unit]: int(amount) for amount, unit in _RELATIVE_PART.findall(relative["parts"])}
        )
        return now - delta if relative["sign"] == "-" else now + delta
    day_at = _DAY_AT.match(text)
    if day_at:
        day = (now + timedelta(days=_DAY_OFFSET[day_at["day"]])).date()
        if day_at["hour"] is None:
            return datetime.combine(day, time(9, 0), tzinfo=UTC)
        return datetime.combine(day, time(int(day_at["hour"]), int(day_at["minute"])), tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use 'now', '-4m', '+1d', 'today 14:00' or an ISO 8601 instant"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Scenario times lie between these, so an end computed from a start stays a datetime Python can hold.
_EARLIEST, _LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
MAX_DURATION_MINUTES = 366 * 24 * 60
MAX_INT32 = 2**31 - 1


def _valid_when(value: str | datetime) -> str | datetime:
    try:
        when = parse_when(value, datetime.now(UTC))  # raises with a readable message
        in_range = _EARLIEST <= when <= _LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValueError(f"{value!r} is too far from now: scenario times lie between 1900 and 9000")
    return value


When = Annotated[str | datetime, AfterValidator(_valid_when)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GrantSpec(_Spec):
    """The state of the account's OAuth grant at the provider."""

    status: Literal["valid", "revoked"] = "valid"
    description: str = ""  # Google's invalid_grant description, or Microsoft's error description
    # Microsoft: the AADSTS code refreshing answers with
    aadsts: int | None = Field(default=None, ge=0, le=MAX_INT32)
    suberror: str = ""


class EventSpec(_Spec):
    id: str | None = None
    title: str
    description: str = ""
    start: When
    end: When | None = None
    duration_minutes: int = Field(default=30, gt=0, le=MAX_DURATION_MINUTES)
    appointment: str | None = None  # the id of the appointment this event carries (our property)
    status: Literal["confirmed", "cancelled"] = "confirmed"
    updated: When | None = None


class CalendarSpec(_Spec):
    id: str
    name: str
    primary: bool = False
    access_role: Literal["owner", "writer", "reader", "freeBusyReader"] = "owner"
    owner: str = ""
    time_zone: str = "UTC"
    events: list[EventSpec] = []


class AccountSpec(_Spec):
    provider: Literal["google", "microsoft"]
    email: str
    name: str = ""
    grant: GrantSpec = GrantSpec()
    calendars: list[CalendarSpec] = []

    @model_validator(mode="after")
    def _one_primary(self) -> AccountSpec:
        if sum(calendar.primary for calendar in self.calendars) > 1:
            raise ValueError("an account has at most one primary calendar")
        return self


class ConnectionSpec(_Spec):
    provider: Literal["google", "microsoft"]
    account: str  # the email of an account in `accounts`
    status: Literal["connected", "disconnected", "error"] = "connected"
    status_reason: str | None = None
    status_code: str | None = None
    selected_calendar: str | None = None  # a calendar id of that account (it may have been deleted)
    selected_calendar_name: str | None = None
    active: bool = True
    authorized: When = "-30d"
    last_refreshed: When | None = None
    disconnected: When | None = None


class LinkSpec(_Spec):
    connection: str  # the account email of one of the user's connections
    # Which provider's connection, when the same email is connected on both (a provider switch).
    provider: Literal["google", "microsoft"] | None = None
    event: str | None = None  # the event id on that calendar (None: not pushed yet)
    calendar: str | None = None  # default: the connection's selected calendar
    state: Literal["pending", "synced", "deleted", "failed"] = "synced"
    last_pushed: When | None = None
    last_pulled: When | None = None
    error: str | None = None


class AppointmentSpec(_Spec):
    id: str
    title: str
    description: str = ""
    start: When
    end: When | None = None
    duration_minutes: int = Field(default=30, gt=0, le=MAX_DURATION_MINUTES)
    time_zone: str = "UTC"
    status: Literal["booked", "cancelled"] = "booked"
    cancellation_reason: str | None = None
    booked: When = "-1d"
    updated: When | None = None
    links: list[LinkSpec] = []

    @field_validator("id")
    @classmethod
    def _short_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value):
            raise ValueError("appointment ids are 1-32 letters, digits, '-' or '_'")
        return value


class SyncRunSpec(_Spec):
    connection: str  # account email of one of the user's connections
    provider: Literal["google", "microsoft"] | None = None  # needed when the email is on both
    direction: Literal["push", "pull", "health"]
    started: When
    finished: When | None = None
    status: Literal["running", "ok", "error"] = "ok"
    error_code: str | None = None
    error_message: str | None = None
    counts: dict[str, int] = {}


class UserSpec(_Spec):
    email: str
    name: str = ""
    role: Literal["rep", "agent"] = "rep"
    slack_user_id: str | None = None
    problem: str = ""  # one line for people reading the scenario: what this rep shows
    connections: list[ConnectionSpec] = []
    appointments: list[AppointmentSpec] = []
    sync_runs: list[SyncRunSpec] = []


class FaultSpec(_Spec):
    provider: Literal["google", "microsoft", "slack", "*"]
    kind: FaultKind
    account: str | None = None
    endpoint: Endpoint = "*"
    params: dict[str, Any] = {}
    remaining: int | None = Field(default=None, ge=0, le=MAX_INT32)


class SlackUserSpec(_Spec):
    """A Slack-only person (no SalesPartner account), or another bot."""

    id: Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,30}$")]
    email: str = ""
    name: str = ""
    is_bot: bool = False
    deleted: bool = False
    tz: str = "UTC"


class SlackUsergroupSpec(_Spec):
    id: Annotated[str, Field(pattern=r"^S[A-Z0-9]{2,30}$")]
    handle: str
    members: list[str] = []  # Slack user ids: scenario users' `slack_user_id` or `slack.users`


class SlackChannelSpec(_Spec):
    id: Annotated[str, Field(pattern=r"^[CG][A-Z0-9]{2,30}$")]
    name: str
    is_private: bool = False


class SlackSpec(_Spec):
    """The Slack workspace beyond the users' own Slack accounts (which come from `slack_user_id`)."""

    users: list[SlackUserSpec] = []
    usergroups: list[SlackUsergroupSpec] = []
    channels: list[SlackChannelSpec] = []


class Scenario(_Spec):
    description: str = ""
    accounts: list[AccountSpec] = []
    users: list[UserSpec] = []
    faults: list[FaultSpec] = []
    slack: SlackSpec = SlackSpec()


@dataclass(frozen=True)
class LoadedScenario:
    path: Path
    users: int
    accounts: int
    events: int
    appointments: int
    faults: int
    slack_users: int = 0


# -- reading and validating ---------------------------------------------------------------------------


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Every path in the document -> the 1-based line where its value starts."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            lines.update(_line_index(value_node, (*path, key_node.value)))
            lines[(*path, key_node.value, "__key__")] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, index)))
    return lines


def _line_for(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest known part of a validation error's location."""
    for end in range(len(loc), -1, -1):
        prefix = tuple(loc[:end])
        if (*prefix, "__key__") in lines:
            return lines[(*prefix, "__key__")]
        if prefix in lines:
            return lines[prefix]
    return None


def read_scenario(path: Path) -> Scenario:
    """Parse and validate a scenario file; every problem is reported with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read the file: {error}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}" if mark else "somewhere"
        raise ScenarioError(f"{path}: {where}: not valid YAML: {error.problem}") from None
    except yaml.reader.ReaderError as error:  # a character YAML never allows (a control character)
        at = text.count("\n", 0, error.position) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise ScenarioError(
            f"{path}: line {at}: not valid YAML: the character U+{code:04X} is not allowed"
        ) from None
    if node is None or data is None:
        raise ScenarioError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: line 1: a scenario is a mapping with accounts, users and faults")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        lines = _line_index(node)
        problems = []
        for item in error.errors():
            loc = tuple(item["loc"])
            field = ".".join(str(part) for part in loc) or "(top)"
            line = _line_for(lines, loc)
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: line {line}: {field}: {message}")
        raise ScenarioError("\n".join(problems)) from None
    _check_references(path, scenario, _line_index(node))
    return scenario


def _matching_connections(user: UserSpec, email: str, provider: str | None) -> list[int]:
    return [
        index
        for index, connection in enumerate(user.connections)
        if connection.account.lower() == email.lower() and provider in (None, connection.provider)
    ]


def _reference_problem(user: UserSpec, email: str, provider: str | None) -> str | None:
    """Why a link's or sync run's `connection` (+ `provider`) does not name exactly one connection."""
    matches = _matching_connections(user, email, provider)
    if not matches:
        where = f" on {provider}" if provider else ""
        return f"{email}{where} is not one of this user's connections"
    if len(matches) > 1:
        return f"{email} is connected on more than one provider: say which with `provider:`"
    return None


def _check_references(path: Path, scenario: Scenario, lines: dict[tuple[Any, ...], int]) -> None:
    problems: list[str] = []

    def problem(loc: tuple[Any, ...], message: str) -> None:
        problems.append(f"{path}: line {_line_for(lines, loc)}: {'.'.join(map(str, loc))}: {message}")

    accounts = {(account.provider, account.email.lower()): account for account in scenario.accounts}
    if len(accounts) != len(scenario.accounts):
        problem(("accounts",), "the same provider account is listed twice")
    emails = [user.email.lower() for user in scenario.users]
    for index, email in enumerate(emails):
        if emails.index(email) != index:
            problem(("users", index, "email"), f"{email} is listed twice")
    slack_ids = [user.slack_user_id for user in scenario.users]
    for index, slack_id in enumerate(slack_ids):
        if slack_id is not None and slack_ids.index(slack_id) != index:
            problem(("users", index, "slack_user_id"), f"{slack_id} is used by two users")
    appointment_ids: set[str] = set()
    for user_index, user in enumerate(scenario.users):
        active: set[tuple[str, str]] = set()
        for index, connection in enumerate(user.connections):
            if (connection.provider, connection.account.lower()) not in accounts:
                problem(
                    ("users", user_index, "connections", index, "account"),
                    f"no {connection.provider} account {connection.account} in `accounts`",
                )
            if connection.active and (connection.provider, connection.account.lower()) in active:
                problem(
                    ("users", user_index, "connections", index, "account"),
                    f"{connection.account} is already an active {connection.provider} connection of this "
                    "user (one active connection per account)",
                )
            if connection.active:
                active.add((connection.provider, connection.account.lower()))
        for index, appointment in enumerate(user.appointments):
            if appointment.id in appointment_ids:
                problem(("users", user_index, "appointments", index, "id"), f"{appointment.id} is used twice")
            appointment_ids.add(appointment.id)
            for link_index, link in enumerate(appointment.links):
                trouble = _reference_problem(user, link.connection, link.provider)
                if trouble:
                    problem(
                        ("users", user_index, "appointments", index, "links", link_index, "connection"),
                        trouble,
                    )
        for index, run in enumerate(user.sync_runs):
            trouble = _reference_problem(user, run.connection, run.provider)
            if trouble:
                problem(("users", user_index, "sync_runs", index, "connection"), trouble)
    for account_index, account in enumerate(scenario.accounts):
        for calendar_index, calendar in enumerate(account.calendars):
            for event_index, event in enumerate(calendar.events):
                if event.appointment and event.appointment not in appointment_ids:
                    problem(
                        (
                            "accounts",
                            account_index,
                            "calendars",
                            calendar_index,
                            "events",
                            event_index,
                            "appointment",
                        ),
                        f"no appointment with id {event.appointment}",
                    )
    _check_slack(scenario, problem)
    if problems:
        raise ScenarioError("\n".join(problems))


def _check_slack(scenario: Scenario, problem: Callable[[tuple[Any, ...], str], None]) -> None:
    """Slack ids are unique across users and `slack.users`; user groups name known Slack users."""
    known = {user.slack_user_id for user in scenario.users if user.slack_user_id is not None}
    for index, user in enumerate(scenario.slack.users):
        if user.id in known:
            problem(("slack", "users", index, "id"), f"{user.id} is used twice")
        known.add(user.id)
    groups: set[str] = set()
    for index, group in enumerate(scenario.slack.usergroups):
        if group.id in groups:
            problem(("slack", "usergroups", index, "id"), f"{group.id} is used twice")
        groups.add(group.id)
        for member_index, member in enumerate(group.members):
            if member not in known:
                problem(
                    ("slack", "usergroups", index, "members", member_index),
                    f"{member} is neither a user's slack_user_id nor in slack.users",
                )
    channels: set[str] = set()
    for index, channel in enumerate(scenario.slack.channels):
        if channel.id in channels:
            problem(("slack", "channels", index, "id"), f"{channel.id} is used twice")
        channels.add(channel.id)


# -- loading ------------------------------------------------------------------------------------------


def load_scenario(
    path: Path,
    *,
    sessions: sessionmaker[Session],
    world: World,
    cipher: TokenCipher,
    clock: Clock,
    replace: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> LoadedScenario:
    """Validate `path`, then write the backend rows and the sandbox world in one transaction.

    With `replace`, the users named in the scenario and the sandbox world are cleared first, so a
    scenario can be loaded again; without it the scenario is added to what is there, and a user,
    provider account or Slack user it names that is already there is refused. On any error nothing
    is written. `progress` hears `(done, total)` of the accounts and users written.
    """
    scenario = read_scenario(path)
    now = clock()
    world.create_tables()
    try:
        with transaction(sessions) as session:
            if replace:
                _clear(session, scenario)
            elif taken := _already_there(session, scenario):
                shown = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
                raise ScenarioError(
                    f"{path}: nothing was loaded: already in the sandbox: {shown} (--replace replaces them)"
                )
            counts = _write(session, world, scenario, cipher, now, progress)
    except ScenarioError:
        raise
    except (ValueError, TypeError, OverflowError, IntegrityError) as error:
        raise ScenarioError(f"{path}: nothing was loaded: {error}") from None
    return LoadedScenario(path=path, **counts)


def _already_there(session: Session, scenario: Scenario) -> list[str]:
    """What adding `scenario` would make twice: its users, provider accounts and Slack users."""
    emails = [user.email.lower() for user in scenario.users]
    taken = [f"user {email}" for email in session.scalars(select(User.email).where(User.email.in_(emails)))]
    wanted = {(account.provider, account.email.lower()) for account in scenario.accounts}
    for provider, email in session.execute(select(SandboxAccount.provider, SandboxAccount.email)):
        if (provider, email.lower()) in wanted:
            taken.append(f"{provider} account {email}")
    slack_ids = [user.slack_user_id for user in scenario.users if user.slack_user_id is not None]
    slack_ids += [user.id for user in scenario.slack.users]
    found = session.scalars(select(SandboxSlackUser.id).where(SandboxSlackUser.id.in_(slack_ids)))
    taken += [f"Slack user {slack_id}" for slack_id in found]
    return taken


def _clear(session: Session, scenario: Scenario) -> None:
    emails = [user.email.lower() for user in scenario.users]
    for user in session.scalars(select(User).where(User.email.in_(emails))):
        session.delete(user)
    for table in (SandboxFault, SandboxEvent, SandboxCalendar, SandboxGrant, SandboxAccount):
        session.execute(delete(table))
    # The Slack workspace goes with the world (the call log stays, like the request log).
    for slack_table in (
        SandboxSlackMessage,
        SandboxSlackHomeView,
        SandboxSlackResponseUrl,
        SandboxSlackDm,
        SandboxSlackChannel,
        SandboxSlackUsergroup,
        SandboxSlackUser,
    ):
        session.execute(delete(slack_table))
    session.flush()


def _write(
    session: Session,
    world: World,
    scenario: Scenario,
    cipher: TokenCipher,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    total = len(scenario.accounts) + len(scenario.users)
    written = 0

    def one_more() -> None:
        nonlocal written
        written += 1
        if progress is not None:
            progress(written, total)

    def when(value: When | None) -> datetime | None:
        return None if value is None else parse_when(value, now)

    def ends(start: datetime, end: When | None, minutes: int) -> datetime:
        return parse_when(end, now) if end is not None else start + timedelta(minutes=minutes)

    refresh_tokens: dict[tuple[str, str], str] = {}
    calendar_names: dict[tuple[str, str, str], str] = {}
    events = 0
    for account in scenario.accounts:
        row = SandboxAccount(
            provider=account.provider, email=account.email.lower(), display_name=account.name
        )
        session.add(row)
        session.flush()
        token = "rt-" + secrets.token_urlsafe(24)
        refresh_tokens[(account.provider, row.email)] = token
        session.add(
            SandboxGrant(
                account_id=row.id,
                refresh_token=token,
                scopes="",
                status=account.grant.status,
                error_description=account.grant.description,
                aadsts=account.grant.aadsts,
                suberror=account.grant.suberror,
            )
        )
        for calendar in account.calendars:
            calendar_row = SandboxCalendar(
                account_id=row.id,
                calendar_id=calendar.id,
                name=calendar.name,
                primary=calendar.primary,
                access_role=calendar.access_role,
                owner_email=calendar.owner or (row.email if calendar.primary else ""),
                time_zone=calendar.time_zone,
            )
            session.add(calendar_row)
            session.flush()
            calendar_names[(account.provider, row.email, calendar.id)] = calendar.name
            for event in calendar.events:
                start = parse_when(event.start, now)
                session.add(
                    SandboxEvent(
                        calendar_pk=calendar_row.pk,
                        event_id=event.id or "ev" + secrets.token_hex(8),
                        title=event.title,
                        description=event.description,
                        start=start,
                        end=ends(start, event.end, event.duration_minutes),
                        time_zone=calendar.time_zone,
                        status=event.status,
                        appointment_id=event.appointment,
                        ical_uid=secrets.token_hex(12) + "@sandbox",
                        updated=when(event.updated) or now - timedelta(hours=1),
                        version=world.next_version(session),
                    )
                )
                events += 1
        one_more()

    appointments = 0
    for spec in scenario.users:
        user = User(email=spec.email, name=spec.name, role=spec.role, slack_user_id=spec.slack_user_id)
        session.add(user)
        session.flush()
        connections: list[CalendarConnection] = []  # in the order of spec.connections
        for connection_spec in spec.connections:
            account_email = connection_spec.account.lower()
            connection = CalendarConnection(
                user_id=user.id,
                provider=connection_spec.provider,
                account_email=account_email,
                status=connection_spec.status,
                status_reason=connection_spec.status_reason,
                status_code=connection_spec.status_code,
                selected_calendar_id=connection_spec.selected_calendar,
                selected_calendar_name=connection_spec.selected_calendar_name
                or calendar_names.get(
                    (connection_spec.provider, account_email, connection_spec.selected_calendar or "")
                ),
                active=connection_spec.active,
                authorized_at=when(connection_spec.authorized),
                last_refreshed_at=when(connection_spec.last_refreshed),
                disconnected_at=when(connection_spec.disconnected),
                created_at=when(connection_spec.authorized) or now,
            )
            connection.set_tokens(
                cipher, refresh_token=refresh_tokens[(connection_spec.provider, account_email)]
            )
            session.add(connection)
            session.flush()
            connections.append(connection)
        for appointment_spec in spec.appointments:
            start = parse_when(appointment_spec.start, now)
            booked = parse_when(appointment_spec.booked, now)
            session.add(
                Appointment(
                    id=appointment_spec.id,
                    user_id=user.id,
                    title=appointment_spec.title,
                    description=appointment_spec.description,
                    start=start,
                    end=ends(start, appointment_spec.end, appointment_spec.duration_minutes),
                    time_zone=appointment_spec.time_zone,
                    status=appointment_spec.status,
                    cancellation_reason=appointment_spec.cancellation_reason,
                    booked_at=booked,
                    updated_at=when(appointment_spec.updated) or booked,
                )
            )
            session.flush()
            appointments += 1
            for link in appointment_spec.links:
                connection = connections[_matching_connections(spec, link.connection, link.provider)[0]]
                session.add(
                    EventLink(
                        appointment_id=appointment_spec.id,
                        connection_id=connection.id,
                        calendar_id=link.calendar or connection.selected_calendar_id or "",
                        event_id=link.event,
                        state=link.state,
                        # What the calendar holds is the appointment as booked (revision 1).
                        pushed_revision=1 if link.event and link.state in ("synced", "deleted") else 0,
                        last_pushed_at=when(link.last_pushed),
                        last_pulled_at=when(link.last_pulled),
                        error=link.error,
                    )
                )
        for run in spec.sync_runs:
            session.add(
                SyncRun(
                    connection_id=connections[
                        _matching_connections(spec, run.connection, run.provider)[0]
                    ].id,
                    direction=run.direction,
                    started_at=parse_when(run.started, now),
                    finished_at=None
                    if run.status == "running"
                    else when(run.finished) or parse_when(run.started, now) + timedelta(seconds=2),
                    status=run.status,
                    error_code=run.error_code,
                    error_message=run.error_message,
                    counts=dict(run.counts),
                )
            )
        one_more()
    for fault in scenario.faults:
        session.add(
            SandboxFault(
                provider=fault.provider,
                account_email=fault.account.lower() if fault.account else None,
                endpoint=fault.endpoint,
                kind=fault.kind,
                params=dict(fault.params),
                remaining=fault.remaining,
            )
        )
    slack_users = _write_slack(session, scenario)
    return {
        "users": len(scenario.users),
        "accounts": len(scenario.accounts),
        "events": events,
        "appointments": appointments,
        "faults": len(scenario.faults),
        "slack_users": slack_users,
    }


def _write_slack(session: Session, scenario: Scenario) -> int:
    """A Slack user for every user with a `slack_user_id`, then the `slack:` section."""
    rows = [
        SandboxSlackUser(id=user.slack_user_id, email=user.email.lower(), name=user.name)
        for user in scenario.users
        if user.slack_user_id is not None
    ]
    rows += [
        SandboxSlackUser(
            id=user.id,
            email=user.email.lower(),
            name=user.name,
            is_bot=user.is_bot,
            deleted=user.deleted,
            tz=user.tz,
        )
        for user in scenario.slack.users
    ]
    session.add_all(rows)
    for group in scenario.slack.usergroups:
        session.add(SandboxSlackUsergroup(id=group.id, handle=group.handle, members=list(group.members)))
    for channel in scenario.slack.channels:
        session.add(SandboxSlackChannel(id=channel.id, name=channel.name, is_private=channel.is_private))
    session.flush()
    return len(rows)
