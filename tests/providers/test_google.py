"""GoogleProvider against the Google emulator, over real HTTP on loopback, through the real libraries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.world import SandboxRequest, World
from calsync.syncbackend.providers.base import (
    NO_TIME,
    Authorization,
    CalendarProvider,
    EventDraft,
    GrantCause,
    GrantError,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from calsync.syncbackend.providers.google import GoogleProvider, grant_cause
from tests.conftest import FrozenClock
from tests.providers.conftest import (
    GOOGLE_BUSY_ID,
    GOOGLE_CLIENT_ID,
    GOOGLE_CLIENT_SECRET,
    GOOGLE_HOLIDAYS_ID,
    GoogleSeed,
    GoogleSleeps,
    google_add_events,
    google_seed_account,
)

T = TypeVar("T")
ProviderFactory = Callable[..., GoogleProvider]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def api_requests(world: World, path_part: str = "/calendar/v3/") -> list[SandboxRequest]:
    return [r for r in world.requests("google") if path_part in r.path]


def token_requests(world: World) -> list[SandboxRequest]:
    return [r for r in world.requests("google") if r.path == "/token"]


def draft(clock: FrozenClock, appointment_id: str = "appt-42", title: str = "Demo with Acme") -> EventDraft:
    start = clock() + timedelta(days=1)
    return EventDraft(
        title=title,
        description="Booked via SalesPartner",
        start=start,
        end=start + timedelta(minutes=45),
        appointment_id=appointment_id,
        time_zone="America/New_York",
    )


def test_provider_satisfies_the_protocol(google_provider: GoogleProvider) -> None:
    assert isinstance(google_provider, CalendarProvider)
    assert google_provider.name == "google"
    assert GOOGLE_CLIENT_SECRET not in repr(google_provider)


# -- grants ---------------------------------------------------------------------------------------


def test_check_grant_refreshes_and_updates_the_authorization(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    auth = Authorization(refresh_token=google_seed.refresh_token)

    info = run(google_provider.check_grant(auth))

    assert info.account_email == "rep@example.com"  # read from the id_token
    assert info.expires_at == clock() + timedelta(seconds=3599)
    assert "https://www.googleapis.com/auth/calendar" in info.scopes
    assert auth.refreshed and auth.access_token and auth.access_token.startswith("at-")
    assert auth.expires_at == info.expires_at and auth.expires_at.tzinfo is not None
    assert auth.account_email == "rep@example.com"
    assert auth.access_token not in repr(auth) and google_seed.refresh_token not in repr(auth)
    (logged,) = token_requests(google_world)
    assert logged.body == {
        "grant_type": "refresh_token",
        "client_id": GOOGLE_CLIENT_ID,
        "client_secret": "[redacted]",
        "refresh_token": "[redacted]",
    }


@pytest.mark.parametrize(
    ("expires_in", "refreshes"),
    [(timedelta(minutes=30), False), (timedelta(seconds=59), True), (None, True)],
    ids=["fresh-token-used", "expiring-within-60s-refreshed", "no-token-refreshed"],
)
def test_refresh_only_when_needed(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    clock: FrozenClock,
    expires_in: timedelta | None,
    refreshes: bool,
) -> None:
    auth = google_seed.auth()
    if expires_in is not None:  # a live access token from an earlier refresh
        run(google_provider.check_grant(auth))
        auth.refreshed = False
        clock.advance(seconds=3599 - expires_in.total_seconds())
    before = len(token_requests(google_world))

    run(google_provider.list_calendars(auth))

    assert (len(token_requests(google_world)) - before == 1) is refreshes
    assert auth.refreshed is refreshes


def test_stale_access_token_gets_one_refresh_on_401(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    auth = google_seed.auth(access_token="at-not-known-to-google", expires_at=clock() + timedelta(hours=1))

    calendars = run(google_provider.list_calendars(auth))

    assert len(calendars) == 4 and auth.refreshed
    assert [r.status for r in google_world.requests("google")] == [401, 200, 200]


def test_revoked_grant_behind_a_live_access_token_is_a_grant_error(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World
) -> None:
    auth = google_seed.auth()
    run(google_provider.check_grant(auth))
    google_world.revoke_grant(google_seed.refresh_token)  # the access token dies with the grant

    with pytest.raises(GrantError) as caught:
        run(google_provider.list_calendars(auth))

    assert caught.value.cause is GrantCause.REVOKED


REVOCATIONS = [
    ("Token has been expired or revoked.", GrantCause.REVOKED),
    ("", GrantCause.REVOKED),  # the emulator's default is Google's usual wording
    ("Token has been revoked.", GrantCause.REVOKED),
    ("Token has expired.", GrantCause.EXPIRED),
    ("Account has been deleted", GrantCause.ACCOUNT_DELETED),
    ("Bad Request", GrantCause.UNKNOWN),
]


@pytest.mark.parametrize(
    ("description", "cause"), REVOCATIONS, ids=[c.value + "-" + d for d, c in REVOCATIONS]
)
@pytest.mark.parametrize("how", ["revoked-grant", "invalid-grant-fault"])
@pytest.mark.parametrize("call", ["check_grant", "list_calendars"])
def test_dead_grant_is_a_grant_error_with_its_cause(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    description: str,
    cause: GrantCause,
    how: str,
    call: str,
) -> None:
    if how == "revoked-grant":
        google_world.revoke_grant(google_seed.refresh_token, description=description)
    else:
        google_world.add_fault(
            "google", "invalid_grant", endpoint="token", params={"description": description}
        )
    auth = google_seed.auth()

    with pytest.raises(GrantError) as caught:
        run(getattr(google_provider, call)(auth))

    error = caught.value
    assert error.cause is cause and error.provider == "google" and error.error == "invalid_grant"
    assert error.description == (description or "Token has been expired or revoked.")
    assert google_seed.refresh_token not in str(error)
    if cause is GrantCause.REVOKED and not description.startswith("Token has been revoked"):
        assert "revoked or it expired" in error.message  # Google does not tell the two apart
    assert google_sleeps == [] and len(token_requests(google_world)) == 1  # never retried
    assert not auth.refreshed and auth.access_token is None


def test_unknown_refresh_token_is_an_unknown_grant_error(google_provider: GoogleProvider) -> None:
    with pytest.raises(GrantError) as caught:
        run(google_provider.check_grant(Authorization(refresh_token="rt-never-issued")))
    assert caught.value.cause is GrantCause.UNKNOWN and caught.value.description == "Bad Request"
    assert "rt-never-issued" not in str(caught.value)


@pytest.mark.parametrize(
    ("description", "cause"),
    [
        ("Token has been expired or revoked.", GrantCause.REVOKED),
        ("token has been REVOKED by the admin", GrantCause.REVOKED),
        ("Refresh token expired", GrantCause.EXPIRED),
        ("Account deleted", GrantCause.ACCOUNT_DELETED),
        ("", GrantCause.UNKNOWN),
    ],
)
def test_grant_cause_from_description(description: str, cause: GrantCause) -> None:
    assert grant_cause(description) is cause


def test_wrong_client_secret_is_a_configuration_error_not_a_grant_error(
    google_provider_factory: ProviderFactory, google_seed: GoogleSeed
) -> None:
    provider = google_provider_factory(client_secret="not-the-secret")
    with pytest.raises(ProviderError) as caught:
        run(provider.check_grant(google_seed.auth()))
    assert not isinstance(caught.value, GrantError) and not caught.value.transient
    assert "invalid_client" in str(caught.value) and "not-the-secret" not in str(caught.value)


# -- token endpoint faults: never "disconnected" --------------------------------------------------

TOKEN_FAULTS = [
    ("rate_limit", {"retry_after": 1}, RateLimited),
    ("unavailable", {}, ProviderUnavailable),
    ("unavailable", {"status": 500}, ProviderUnavailable),
    ("malformed", {"style": "html"}, MalformedResponse),
    ("malformed", {"style": "truncated"}, MalformedResponse),
    ("malformed", {"style": "shape"}, MalformedResponse),
]


@pytest.mark.parametrize(
    ("kind", "params", "expected"), TOKEN_FAULTS, ids=[f"{k}-{p}" for k, p, _ in TOKEN_FAULTS]
)
def test_token_endpoint_failures_are_transient_not_grant_errors(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    kind: Any,
    params: dict[str, Any],
    expected: type[ProviderError],
) -> None:
    google_world.add_fault("google", kind, endpoint="token", params=params)
    auth = google_seed.auth()

    with pytest.raises(ProviderError) as caught:
        run(
            google_provider.list_events(
                auth,
                google_seed.primary_id,
                datetime(2026, 1, 1, tzinfo=UTC),
                datetime(2026, 2, 1, tzinfo=UTC),
            )
        )

    assert type(caught.value) is expected and caught.value.transient
    assert not isinstance(caught.value, GrantError)
    assert api_requests(google_world) == []
    if expected is MalformedResponse:
        assert google_sleeps == []  # garbage is not retried
    else:
        assert google_sleeps and sum(google_sleeps) <= 4.0  # retried within the budget
    if expected is RateLimited:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 1.0
    if "status" in params:
        assert isinstance(caught.value, ProviderUnavailable) and caught.value.status == 500


def test_token_endpoint_503_once_is_retried(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, google_sleeps: GoogleSleeps
) -> None:
    google_world.add_fault("google", "unavailable", endpoint="token", remaining=1)

    info = run(google_provider.check_grant(google_seed.auth()))

    assert info.account_email == google_seed.email
    assert google_sleeps == [0.5]
    assert [r.status for r in token_requests(google_world)] == [503, 200]


def test_token_endpoint_hang_is_a_timeout(
    google_provider_factory: ProviderFactory, google_seed: GoogleSeed, google_world: World
) -> None:
    google_world.add_fault("google", "hang", endpoint="token", params={"seconds": 2})
    provider = google_provider_factory(timeout=0.5, retry_budget=0.4)

    with pytest.raises(ProviderTimeout):
        run(provider.check_grant(google_seed.auth()))


# -- calendars ------------------------------------------------------------------------------------


def test_list_calendars(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World
) -> None:
    calendars = run(google_provider.list_calendars(google_seed.auth()))

    summary = [(c.id, c.name, c.primary, c.access_role, c.owner, c.writable) for c in calendars]
    assert summary == [
        ("rep@example.com", "rep@example.com", True, "owner", "rep@example.com", True),
        (GOOGLE_BUSY_ID, "Boss", False, "freeBusyReader", GOOGLE_BUSY_ID, False),
        (GOOGLE_HOLIDAYS_ID, "Holidays in United States", False, "reader", None, False),
        (google_seed.team_id, "Team", False, "writer", "lead@example.com", True),
    ]
    (logged,) = api_requests(google_world)
    assert logged.path == "/calendar/v3/users/me/calendarList" and logged.account_email == "rep@example.com"


def test_calendar_list_paging_is_followed(
    google_provider_factory: ProviderFactory, google_seed: GoogleSeed, google_world: World
) -> None:
    provider = google_provider_factory(page_size=3)

    calendars = run(provider.list_calendars(google_seed.auth()))

    assert len(calendars) == 4 and len({c.id for c in calendars}) == 4
    queries = [parse_qs(r.query) for r in api_requests(google_world)]
    assert [q["maxResults"] for q in queries] == [["3"], ["3"]]
    assert ["pageToken" in q for q in queries] == [False, True]


# -- events ---------------------------------------------------------------------------------------


def test_list_events_in_a_window(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    start = clock()
    google_add_events(google_world, google_seed.primary_pk, start - timedelta(hours=3), 10)
    cancelled = google_add_events(google_world, google_seed.primary_pk, start + timedelta(hours=1), 1)[0]
    google_world.google_cancel_event(google_seed.primary_pk, cancelled, start)

    events = run(
        google_provider.list_events(google_seed.auth(), "primary", start, start + timedelta(hours=4))
    )

    # [start, start+4h) overlaps the events beginning at -2h+1 .. +3h: indices 3..6 (index 2 ends at start).
    assert [e.title for e in events] == ["Event 3", "Event 4", "Event 5", "Event 6"]
    first = events[0]
    assert first.start == start and first.end == start + timedelta(hours=1)  # New York times, read as UTC
    assert first.start.tzinfo is UTC and first.status == "confirmed" and first.appointment_id == "appt-3"
    assert first.ical_uid == f"{first.id}@google.com" and first.calendar_id == "primary"
    (logged,) = api_requests(google_world)
    query = parse_qs(logged.query)
    assert query["timeMin"] == ["2026-11-24T15:00:00Z"] and query["timeMax"] == ["2026-11-24T19:00:00Z"]
    assert query["singleEvents"] == ["true"] and query["orderBy"] == ["startTime"]


def test_list_events_by_appointment_id(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    google_add_events(google_world, google_seed.primary_pk, clock(), 5)

    events = run(
        google_provider.list_events(
            google_seed.auth(),
            google_seed.primary_id,
            clock(),
            clock() + timedelta(days=1),
            appointment_id="appt-2",
        )
    )

    assert [(e.title, e.appointment_id) for e in events] == [("Event 2", "appt-2")]
    (logged,) = api_requests(google_world)
    assert parse_qs(logged.query)["privateExtendedProperty"] == ["calsyncAppointmentId=appt-2"]


def test_list_events_follows_pages_past_max_results(
    google_provider_factory: ProviderFactory, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    google_add_events(google_world, google_seed.primary_pk, clock(), 12)
    provider = google_provider_factory(page_size=5)

    events = run(provider.list_events(google_seed.auth(), "primary", clock(), clock() + timedelta(days=1)))

    assert [e.title for e in events] == [f"Event {i}" for i in range(12)]
    queries = [parse_qs(r.query) for r in api_requests(google_world)]
    assert [q["maxResults"] for q in queries] == [["5"]] * 3
    assert ["pageToken" in q for q in queries] == [False, True, True]


def test_free_busy_calendar_shows_times_only(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    google_add_events(google_world, google_seed.busy_pk, clock(), 1, prefix="Secret")

    (event,) = run(
        google_provider.list_events(google_seed.auth(), GOOGLE_BUSY_ID, clock(), clock() + timedelta(hours=2))
    )

    assert event.title == "" and event.appointment_id is None and event.start == clock()


def test_insert_get_update_delete(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    auth = google_seed.auth()
    wanted = draft(clock)

    async def scenario() -> tuple[Any, ...]:
        inserted = await google_provider.insert_event(auth, "primary", wanted)
        fetched = await google_provider.get_event(auth, "primary", inserted.id)
        moved = EventDraft(
            title="Demo with Acme (moved)",
            description=wanted.description,
            start=wanted.start + timedelta(hours=2),
            end=wanted.end + timedelta(hours=2),
            appointment_id=wanted.appointment_id,
        )
        updated = await google_provider.update_event(auth, "primary", inserted.id, moved)
        await google_provider.delete_event(auth, "primary", inserted.id)
        gone = await google_provider.get_event(auth, "primary", inserted.id)
        return inserted, fetched, updated, gone

    inserted, fetched, updated, gone = run(scenario())

    assert inserted.title == "Demo with Acme" and inserted.appointment_id == "appt-42"
    assert inserted.start == wanted.start and inserted.end == wanted.end and inserted.ical_uid
    assert fetched == inserted
    assert updated.title == "Demo with Acme (moved)" and updated.start == wanted.start + timedelta(hours=2)
    assert updated.appointment_id == "appt-42"
    assert gone.status == "cancelled"
    logged = api_requests(google_world)
    assert [r.method for r in logged] == ["POST", "GET", "PATCH", "DELETE", "GET"]
    body = logged[0].body
    assert body is not None
    assert body["extendedProperties"] == {"private": {"calsyncAppointmentId": "appt-42"}}
    assert body["start"] == {"dateTime": "2026-11-25T10:00:00-05:00", "timeZone": "America/New_York"}
    assert (
        logged[2].body
        and logged[2].body["extendedProperties"]["private"]["calsyncAppointmentId"] == "appt-42"
    )

    with pytest.raises(NotFound):  # Google answers 410 deleted for a second delete
        run(google_provider.delete_event(auth, "primary", inserted.id))


@pytest.mark.parametrize(
    "calendar_id", [GOOGLE_HOLIDAYS_ID, GOOGLE_BUSY_ID], ids=["reader", "freeBusyReader"]
)
def test_writing_a_read_only_calendar_is_permission_denied(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
    calendar_id: str,
) -> None:
    with pytest.raises(PermissionDenied) as caught:
        run(google_provider.insert_event(google_seed.auth(), calendar_id, draft(clock)))
    assert "requiredAccessLevel" in str(caught.value)
    assert [r.status for r in api_requests(google_world)] == [403] and google_sleeps == []


NOT_FOUND_CALLS: list[tuple[str, Callable[[GoogleProvider, Authorization, FrozenClock], Any]]] = [
    ("get-unknown-event", lambda p, a, c: p.get_event(a, "primary", "nosuchevent")),
    ("update-unknown-event", lambda p, a, c: p.update_event(a, "primary", "nosuchevent", draft(c))),
    ("delete-unknown-event", lambda p, a, c: p.delete_event(a, "primary", "nosuchevent")),
    ("events-of-unknown-calendar", lambda p, a, c: p.list_events(a, "gone@example.com", c(), c())),
    ("insert-into-unknown-calendar", lambda p, a, c: p.insert_event(a, "gone@example.com", draft(c))),
    ("changes-of-unknown-calendar", lambda p, a, c: p.changes(a, "gone@example.com", None)),
]


@pytest.mark.parametrize("call", [c for _, c in NOT_FOUND_CALLS], ids=[n for n, _ in NOT_FOUND_CALLS])
def test_unknown_calendar_or_event_is_not_found(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
    call: Callable[[GoogleProvider, Authorization, FrozenClock], Any],
) -> None:
    with pytest.raises(NotFound):
        run(call(google_provider, google_seed.auth(), clock))
    assert google_sleeps == []


# -- changes --------------------------------------------------------------------------------------


def test_changes_full_then_incremental_then_resync(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    auth = google_seed.auth()
    ids = google_add_events(google_world, google_seed.primary_pk, clock(), 3)
    google_world.google_cancel_event(google_seed.primary_pk, ids[2], clock())

    full = run(google_provider.changes(auth, "primary", None))
    assert not full.full_resync
    assert {(e.id, e.status) for e in full.events} == {
        (ids[0], "confirmed"),
        (ids[1], "confirmed"),
        (ids[2], "cancelled"),
    }
    assert next(e for e in full.events if e.status == "cancelled").start == NO_TIME

    nothing = run(google_provider.changes(auth, "primary", full.cursor))
    assert nothing.events == [] and not nothing.full_resync

    clock.advance(minutes=5)
    google_world.google_update_event(google_seed.primary_pk, ids[0], {"title": "Renamed in Google"}, clock())
    run(google_provider.delete_event(auth, "primary", ids[1]))
    new = google_add_events(google_world, google_seed.primary_pk, clock(), 1, prefix="Added")[0]

    incremental = run(google_provider.changes(auth, "primary", nothing.cursor))
    assert [(e.id, e.status, e.title) for e in incremental.events] == [
        (ids[0], "confirmed", "Renamed in Google"),
        (ids[1], "cancelled", ""),
        (new, "confirmed", "Added 0"),
    ]
    assert incremental.cursor != nothing.cursor and not incremental.full_resync
    assert "syncToken" in api_requests(google_world)[-1].query

    google_world.add_fault("google", "sync_token_expired", endpoint="changes", remaining=1)
    resync = run(google_provider.changes(auth, "primary", incremental.cursor))
    assert resync.full_resync and len(resync.events) == 4
    statuses = [r.status for r in api_requests(google_world)[-2:]]
    assert statuses == [410, 200]

    after = run(google_provider.changes(auth, "primary", resync.cursor))
    assert after.events == [] and not after.full_resync


@pytest.mark.parametrize(
    "cursor", ["not-a-sync-token", "gsync1.eyJjIjo5OTksInYiOjF9"], ids=["garbage", "other-calendar"]
)
def test_unknown_cursor_means_a_full_resync(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    clock: FrozenClock,
    cursor: str,
) -> None:
    google_add_events(google_world, google_seed.primary_pk, clock(), 2)
    result = run(google_provider.changes(google_seed.auth(), "primary", cursor))
    assert result.full_resync and len(result.events) == 2


def test_changes_follow_pages(
    google_provider_factory: ProviderFactory, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    provider = google_provider_factory(page_size=4)
    google_add_events(google_world, google_seed.primary_pk, clock(), 10)
    full = run(provider.changes(google_seed.auth(), "primary", None))
    assert len(full.events) == 10 and len(api_requests(google_world)) == 3


# -- API faults -----------------------------------------------------------------------------------


def _list_primary(provider: GoogleProvider, seed: GoogleSeed, clock: FrozenClock) -> Any:
    return provider.list_events(seed.auth(), "primary", clock(), clock() + timedelta(days=1))


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("events", _list_primary),
        ("calendars", lambda p, s, c: p.list_calendars(s.auth())),
        ("events", lambda p, s, c: p.insert_event(s.auth(), "primary", draft(c))),
    ],
    ids=["list_events", "list_calendars", "insert_event"],
)
def test_429_with_retry_after_is_retried_then_succeeds(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
    endpoint: Any,
    call: Callable[..., Any],
) -> None:
    google_world.add_fault("google", "rate_limit", endpoint=endpoint, params={"retry_after": 2}, remaining=1)

    run(call(google_provider, google_seed, clock))

    assert google_sleeps == [2.0]
    assert [r.status for r in api_requests(google_world)] == [429, 200]


@pytest.mark.parametrize(
    ("params", "sleeps", "retry_after"),
    [
        # 3 waits of 1 s plus the attempts' own time: a fourth wait would overrun the 4 s budget
        ({"retry_after": 1}, [1.0, 1.0, 1.0], 1.0),
        ({"retry_after": 30}, [], 30.0),  # more than the whole budget: give up at once
        ({"status": 403, "reason": "userRateLimitExceeded"}, [0.5, 1.0, 2.0], None),
    ],
    ids=["persistent-429", "retry-after-beyond-budget", "403-userRateLimitExceeded"],
)
def test_persistent_rate_limit_is_rate_limited(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
    params: dict[str, Any],
    sleeps: list[float],
    retry_after: float | None,
) -> None:
    google_world.add_fault("google", "rate_limit", endpoint="events", params=params)

    with pytest.raises(RateLimited) as caught:
        run(_list_primary(google_provider, google_seed, clock))

    assert caught.value.retry_after == retry_after
    assert google_sleeps == sleeps
    assert len(api_requests(google_world)) == len(sleeps) + 1


def test_503_once_is_retried(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
) -> None:
    google_world.add_fault("google", "unavailable", endpoint="events", remaining=1)
    assert run(_list_primary(google_provider, google_seed, clock)) == []
    assert google_sleeps == [0.5] and [r.status for r in api_requests(google_world)] == [503, 200]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_persistent_5xx_is_unavailable(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
    status: int,
) -> None:
    auth = google_seed.auth()
    run(google_provider.check_grant(auth))  # a live token first: the fault then hits the API
    google_world.add_fault("google", "unavailable", endpoint="calendars", params={"status": status})

    with pytest.raises(ProviderUnavailable) as caught:
        run(google_provider.list_calendars(auth))

    assert caught.value.status == status and not isinstance(caught.value, GrantError)
    assert google_sleeps == [0.5, 1.0, 2.0]
    assert len(api_requests(google_world)) == 4


@pytest.mark.parametrize("style", ["html", "truncated", "shape"])
@pytest.mark.parametrize("endpoint", ["events", "calendars", "changes"])
def test_malformed_body_is_malformed_response(
    google_provider: GoogleProvider,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
    style: str,
    endpoint: Any,
) -> None:
    auth = google_seed.auth()
    cursor = run(google_provider.changes(auth, "primary", None)).cursor if endpoint == "changes" else None
    google_world.add_fault("google", "malformed", endpoint=endpoint, params={"style": style})
    calls = {
        "events": lambda: _list_primary(google_provider, google_seed, clock),
        "calendars": lambda: google_provider.list_calendars(auth),
        "changes": lambda: google_provider.changes(auth, "primary", cursor),
    }

    with pytest.raises(MalformedResponse):
        run(calls[endpoint]())
    assert google_sleeps == []


def test_hang_once_times_out_then_the_retry_succeeds(
    google_provider_factory: ProviderFactory,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
) -> None:
    provider = google_provider_factory(timeout=0.5)
    auth = google_seed.auth()
    run(provider.check_grant(auth))
    google_world.add_fault("google", "hang", endpoint="events", params={"seconds": 2}, remaining=1)

    assert run(_list_primary(provider, google_seed, clock)) == []
    assert google_sleeps == [0.5]


def test_persistent_hang_is_a_timeout(
    google_provider_factory: ProviderFactory, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    provider = google_provider_factory(timeout=0.5, retry_budget=0.4)
    auth = google_seed.auth()
    run(provider.check_grant(auth))
    google_world.add_fault("google", "hang", endpoint="calendars", params={"seconds": 2})

    with pytest.raises(ProviderTimeout):
        run(provider.list_calendars(auth))


def test_insert_is_not_retried_after_a_timeout(
    google_provider_factory: ProviderFactory,
    google_seed: GoogleSeed,
    google_world: World,
    google_sleeps: GoogleSleeps,
    clock: FrozenClock,
) -> None:
    """The insert may have happened: a second one would be the duplicate reps complain about."""
    provider = google_provider_factory(timeout=0.5)
    auth = google_seed.auth()
    run(provider.check_grant(auth))
    google_world.add_fault("google", "hang", endpoint="events", params={"seconds": 2}, remaining=1)

    with pytest.raises(ProviderTimeout):
        run(provider.insert_event(auth, "primary", draft(clock)))
    assert google_sleeps == []


def test_latency_fault_delays_but_succeeds(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    google_world.add_fault("google", "latency", endpoint="events", params={"seconds": 0.2}, remaining=1)
    assert run(_list_primary(google_provider, google_seed, clock)) == []
    (logged,) = api_requests(google_world)
    assert logged.duration_ms >= 200


def test_connection_refused_is_unavailable(
    google_provider_factory: ProviderFactory, google_seed: GoogleSeed, google_sleeps: GoogleSleeps
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = google_provider_factory(api_url=closed, token_url=closed + "/token", retry_budget=1.0)

    with pytest.raises(ProviderUnavailable):
        run(provider.list_calendars(google_seed.auth()))
    assert google_sleeps == [0.5]


class DropsIdleConnections:
    """An HTTP server on 127.0.0.1 that answers every request with one event and, when told, resets
    the first connection it accepted while that connection is idle (what a keep-alive timeout or a
    restarted front end does to a client's kept connection)."""

    EVENT = json.dumps(
        {
            "id": "evt-1",
            "summary": "Demo with Acme",
            "start": {"dateTime": "2026-12-05T15:00:00Z"},
            "end": {"dateTime": "2026-12-05T15:45:00Z"},
        }
    ).encode()

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self.requests: list[bytes] = []
        self.drop = threading.Event()
        self.dropped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head.split(b"\r\n")[0])
        payload = self.EVENT
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        return True

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted == 1:
                self._answer(conn)
                self.drop.wait(10)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # linger 0: a reset, not a FIN
                self.dropped.set()
                continue
            with conn:
                while self._answer(conn):
                    pass

    def close(self) -> None:
        self.drop.set()
        self.listener.close()


def test_a_kept_connection_the_server_dropped_is_not_reused(
    google_provider_factory: ProviderFactory, clock: FrozenClock
) -> None:
    """An insert is never sent twice (it may have happened), so it must not go out on a connection
    the server has dropped since the thread's last request: it would fail without reaching Google."""
    server = DropsIdleConnections()
    try:
        provider = google_provider_factory(api_url=server.url, token_url=server.url + "/token")
        auth = Authorization(refresh_token="rt", access_token="at", expires_at=clock() + timedelta(hours=1))
        assert run(provider.insert_event(auth, "primary", draft(clock))).id == "evt-1"
        server.drop.set()
        assert server.dropped.wait(10)

        assert run(provider.insert_event(auth, "primary", draft(clock))).id == "evt-1"
        assert server.accepted == 2 and len(server.requests) == 2
    finally:
        server.close()


def test_faults_for_another_account_do_not_apply(
    google_provider: GoogleProvider, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    google_world.add_fault("google", "unavailable", account_email="someone-else@example.com")
    assert run(_list_primary(google_provider, google_seed, clock)) == []


# -- concurrency: httplib2 is not thread-safe ------------------------------------------------------


def test_concurrent_requests_for_two_accounts_get_their_own_answers(
    google_provider: GoogleProvider, google_world: World, google_seed: GoogleSeed, clock: FrozenClock
) -> None:
    other = google_seed_account(google_world, "boss@example.com")
    google_add_events(google_world, google_seed.primary_pk, clock(), 3, prefix="Rep")
    google_add_events(google_world, other.primary_pk, clock(), 3, prefix="Boss")
    auths = {google_seed.email: google_seed.auth(), other.email: other.auth()}
    for auth in auths.values():
        run(google_provider.check_grant(auth))

    async def both() -> list[tuple[str, list[str]]]:
        async def one(email: str) -> tuple[str, list[str]]:
            events = await google_provider.list_events(
                auths[email], "primary", clock(), clock() + timedelta(days=1)
            )
            return email, [e.title for e in events]

        emails = [google_seed.email, other.email] * 10
        return list(await asyncio.gather(*(one(email) for email in emails)))

    results = run(both())

    assert len(results) == 20
    for email, titles in results:
        prefix = "Rep" if email == google_seed.email else "Boss"
        assert titles == [f"{prefix} {i}" for i in range(3)], email


# -- the emulator itself: OAuth consent, code exchange with PKCE, error shapes ---------------------


def _pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(b"v" * 48).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


REDIRECT = "http://127.0.0.1:9/oauth/google/callback"


def _authorize(
    server: BackgroundServer, challenge: str, decision: str, account: str = "rep@example.com"
) -> httpx.Response:
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        params = {
            "client_id": GOOGLE_CLIENT_ID,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid email https://www.googleapis.com/auth/calendar",
            "state": "st-123",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": account,
            "access_type": "offline",
            "prompt": "consent",
        }
        page = client.get("/o/oauth2/auth", params=params)
        assert page.status_code == 200
        form = {
            key: params[key]
            for key in (
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "code_challenge",
                "code_challenge_method",
            )
        }
        return client.post("/o/oauth2/auth/decision", data=form | {"account": account, "decision": decision})


def _exchange(server: BackgroundServer, code: str, verifier: str | None, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": GOOGLE_CLIENT_ID,
        "client_secret": GOOGLE_CLIENT_SECRET,
    } | extra
    if verifier is not None:
        data["code_verifier"] = verifier
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        return client.post("/token", data=data)


def test_consent_page_lists_accounts_with_the_hint_chosen(
    google_server: BackgroundServer, google_world: World, google_seed: GoogleSeed
) -> None:
    google_seed_account(google_world, "boss@example.com")
    with httpx.Client(base_url=google_server.url, trust_env=False) as client:
        page = client.get(
            "/o/oauth2/auth",
            params={
                "client_id": GOOGLE_CLIENT_ID,
                "redirect_uri": REDIRECT,
                "response_type": "code",
                "scope": "openid",
                "state": "<script>",
                "login_hint": "rep@example.com",
            },
        )
    assert page.status_code == 200 and "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "value='rep@example.com' checked" in page.text and "value='boss@example.com'>" in page.text
    assert "value='allow'>Allow</button>" in page.text and "value='deny'>Deny</button>" in page.text
    assert "<form method='post' action='/o/oauth2/auth/decision'>" in page.text


def test_consent_page_rejects_an_unknown_client(google_server: BackgroundServer) -> None:
    with httpx.Client(base_url=google_server.url, trust_env=False) as client:
        page = client.get(
            "/o/oauth2/auth", params={"client_id": "evil", "redirect_uri": REDIRECT, "response_type": "code"}
        )
    assert page.status_code == 400 and "invalid_client" in page.text


def test_allow_then_code_exchange_with_pkce(
    google_server: BackgroundServer,
    google_world: World,
    google_seed: GoogleSeed,
    google_provider: GoogleProvider,
) -> None:
    verifier, challenge = _pkce()
    allowed = _authorize(google_server, challenge, "allow")
    assert allowed.status_code == 302
    location = urlsplit(allowed.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT and query["state"] == [
        "st-123"
    ]

    tokens = _exchange(google_server, query["code"][0], verifier)

    assert tokens.status_code == 200
    body = tokens.json()
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    assert body["scope"] == "openid email https://www.googleapis.com/auth/calendar"
    assert (
        body["refresh_token"].startswith("rt-")
        and body["access_token"].startswith("at-")
        and body["id_token"]
    )
    # the new grant works for the provider, and the code is single-use
    info = run(google_provider.check_grant(Authorization(refresh_token=body["refresh_token"])))
    assert info.account_email == "rep@example.com"
    again = _exchange(google_server, query["code"][0], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    logged = next(r for r in google_world.requests("google") if r.path == "/token")
    assert logged.body is not None
    assert {logged.body[k] for k in ("code", "code_verifier", "client_secret")} == {"[redacted]"}


@pytest.mark.parametrize(
    ("verifier", "extra", "error", "description"),
    [
        ("wrong-verifier-" + "x" * 40, {}, "invalid_grant", "Invalid code verifier."),
        (None, {}, "invalid_grant", "Missing code verifier."),
        ("good", {"redirect_uri": "http://127.0.0.1:9/elsewhere"}, "redirect_uri_mismatch", "Bad Request"),
    ],
    ids=["wrong-verifier", "missing-verifier", "other-redirect-uri"],
)
def test_code_exchange_failures(
    google_server: BackgroundServer,
    google_seed: GoogleSeed,
    verifier: str | None,
    extra: dict[str, str],
    error: str,
    description: str,
) -> None:
    good, challenge = _pkce()
    allowed = _authorize(google_server, challenge, "allow")
    code = parse_qs(urlsplit(allowed.headers["location"]).query)["code"][0]

    answer = _exchange(google_server, code, good if verifier == "good" else verifier, **extra)

    assert answer.status_code == 400
    assert answer.json() == {"error": error, "error_description": description}


def test_token_endpoint_rejects_a_bad_client(
    google_server: BackgroundServer, google_seed: GoogleSeed
) -> None:
    answer = _exchange(google_server, "whatever", None, client_secret="nope")
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_deny_redirects_with_access_denied(google_server: BackgroundServer, google_seed: GoogleSeed) -> None:
    _, challenge = _pkce()
    denied = _authorize(google_server, challenge, "deny")
    assert denied.status_code == 302
    assert parse_qs(urlsplit(denied.headers["location"]).query) == {
        "error": ["access_denied"],
        "state": ["st-123"],
    }


def test_api_errors_have_googles_shape(
    google_server: BackgroundServer, google_seed: GoogleSeed, google_world: World, clock: FrozenClock
) -> None:
    with httpx.Client(base_url=google_server.url, trust_env=False) as client:
        anonymous = client.get("/calendar/v3/users/me/calendarList")
        grant = google_world.grant_by_refresh_token(google_seed.refresh_token)
        assert grant is not None
        token = google_world.issue_access_token(grant[0].id, clock(), timedelta(hours=1)).token
        headers = {"Authorization": f"Bearer {token}"}
        missing = client.get("/calendar/v3/users/me/calendarList/nope@example.com", headers=headers)
        expired = client.get(
            "/calendar/v3/calendars/primary/events", params={"syncToken": "bogus"}, headers=headers
        )
        info = client.get("/oauth2/v2/userinfo", headers=headers)

    assert anonymous.status_code == 401 and anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "code": 404,
            "message": "Not Found",
            "errors": [{"domain": "global", "reason": "notFound", "message": "Not Found"}],
            "status": "NOT_FOUND",
        }
    }
    assert expired.status_code == 410
    assert expired.json()["error"]["message"] == "Sync token is no longer valid, a full sync is required."
    assert expired.json()["error"]["errors"][0]["reason"] == "fullSyncRequired"
    assert info.json()["email"] == "rep@example.com"
    assert all(token not in json.dumps([r.query, r.body]) for r in google_world.requests("google"))
