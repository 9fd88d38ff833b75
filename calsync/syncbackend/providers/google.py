"""Google Calendar behind the `CalendarProvider` protocol (google-api-python-client + google-auth).

Threads: both client libraries are synchronous, so every blocking call runs in a worker thread of
the provider's own pool (`threads.BlockingCalls`). httplib2 is not thread-safe (one `Http` shared
between threads hands one request's response to another), so no HTTP object is ever shared between
threads: each API request executes on its own `google_auth_httplib2.AuthorizedHttp` (the rep's
token) over its worker thread's own `httplib2.Http(timeout=...)`, kept for the thread's next
requests so that its connection is reused (a fresh `Http` per request costs a new connection, and
in production a TLS handshake, per API call); a request that fails drops its thread's connections,
and a connection the server closed while it was idle is not reused.
What is shared is what is read-only once built — the discovery-built service and its `events()` /
`calendarList()` resources, built once per provider (building the resources costs ~1.5 ms each, the
service ~1 ms) — and the token endpoint's connections: token refreshes go through google-auth's
urllib3 transport over one `urllib3.PoolManager` per provider, whose connection pools are
thread-safe (about half the CPU of a refresh through a `requests.Session`, which is not documented
as thread-safe, made for each).

Errors: every failure leaves as one of `base.py`'s classes. A token endpoint that answers 429/5xx or
garbage is a transient failure, never a `GrantError`: only an `invalid_grant` answer means that
the user must connect again.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google.auth.exceptions
import google.auth.transport
import google.auth.transport.urllib3
import google_auth_httplib2
import httplib2
import urllib3
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from urllib3.util.wait import wait_for_read

from calsync.syncbackend.providers.base import (
    NO_TIME,
    AccessRole,
    Authorization,
    Calendar,
    Changes,
    Event,
    EventDraft,
    EventStatus,
    GrantCause,
    GrantError,
    GrantInfo,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProviderError,
    ProviderName,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from calsync.syncbackend.providers.retry import parse_retry_after, with_retries
from calsync.syncbackend.providers.threads import MAX_THREADS, BlockingCalls

logger = logging.getLogger(__name__)

APPOINTMENT_PROPERTY = "calsyncAppointmentId"
PROVIDER: ProviderName = "google"
REFRESH_MARGIN = timedelta(seconds=60)
DEFAULT_PAGE_SIZE = 250
GOOGLE_REVOKED_OR_EXPIRED = "Token has been expired or revoked."
_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_ACCESS_ROLES: frozenset[str] = frozenset({"owner", "writer", "reader", "freeBusyReader"})
_MAX_ATTEMPTS = 6

T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- internal signals -----------------------------------------------------------------------------


class _Unauthorized(Exception):
    """The API answered 401: the access token is not (any longer) accepted."""


class _SyncTokenGone(NotFound):
    """410 fullSyncRequired on an incremental read."""


@dataclass(frozen=True)
class _Refreshed:
    access_token: str = field(repr=False)
    expires_at: datetime | None
    scopes: tuple[str, ...]
    account_email: str | None


# -- token endpoint transport ---------------------------------------------------------------------


class _TokenTransport(google.auth.transport.Request):
    """google-auth's urllib3 transport with our timeout, and the token endpoint's failures classified.

    google-auth turns every failed token response into a `RefreshError` and retries 429/5xx itself
    with real sleeps. Raising our classified error from the transport stops both: a flaky endpoint
    is reported as what it is (at once, to our own retry loop, `retry.py`) and never mistaken for a dead grant.
    """

    def __init__(self, http: urllib3.PoolManager, timeout: float) -> None:
        self._inner = google.auth.transport.urllib3.Request(http)
        self._timeout = timeout
        self.payload: dict[str, Any] | None = None

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        try:
            response = self._inner(
                url, method=method, body=body, headers=headers, timeout=self._timeout, **kwargs
            )
        except google.auth.exceptions.TransportError as exc:
            raise _transport_failure(exc.__cause__ or exc, "the token endpoint") from None
        status = response.status
        if status == 429:
            raise RateLimited(
                PROVIDER,
                "Google's token endpoint is rate limiting (HTTP 429)",
                parse_retry_after(response.headers.get("Retry-After")),
            )
        if status == 408:
            raise ProviderTimeout(PROVIDER, "Google's token endpoint timed out (HTTP 408)")
        if status >= 500:
            raise ProviderUnavailable(PROVIDER, f"Google's token endpoint failed (HTTP {status})", status)
        if status == 200:
            try:
                payload = json.loads(response.data)
            except ValueError:
                raise MalformedResponse(
                    PROVIDER, "Google's token endpoint answered with invalid JSON"
                ) from None
            if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
                raise MalformedResponse(PROVIDER, "Google's token endpoint answered without an access token")
            self.payload = payload
        return response


def _transport_failure(exc: BaseException, what: str) -> ProviderError:
    """A failure to get any answer: timeout, refused, reset, name not found."""
    # urllib3's NewConnectionError (refused, unreachable) is a ConnectTimeoutError, but no timeout.
    timed_out = isinstance(exc, (TimeoutError, socket.timeout, urllib3.exceptions.TimeoutError))
    if timed_out and not isinstance(exc, urllib3.exceptions.NewConnectionError):
        return ProviderTimeout(PROVIDER, f"{what} did not answer in time")
    return ProviderUnavailable(PROVIDER, f"could not reach {what} ({type(exc).__name__})")


def grant_cause(description: str) -> GrantCause:
    """What Google's invalid_grant description says about why the grant is dead."""
    text = description.strip().lower()
    if text == GOOGLE_REVOKED_OR_EXPIRED.lower():
        return GrantCause.REVOKED
    if "revoked" in text:
        return GrantCause.REVOKED
    if "expired" in text:
        return GrantCause.EXPIRED
    if "deleted" in text:
        return GrantCause.ACCOUNT_DELETED
    return GrantCause.UNKNOWN


def _refresh_error(exc: google.auth.exceptions.RefreshError) -> ProviderError:
    """Classify a RefreshError that reached us (the transport already took 429/5xx/garbage)."""
    payload = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else None
    if payload is None:
        if "reauthentication is needed" in str(exc).lower():  # Workspace reauth policy (invalid_rapt)
            return GrantError(
                PROVIDER,
                GrantCause.INTERACTION_REQUIRED,
                "Google requires the user to sign in again (reauthentication policy)",
                description="invalid_rapt",
            )
        if getattr(exc, "retryable", False):
            return ProviderUnavailable(PROVIDER, "Google's token endpoint failed (retryable)")
        return MalformedResponse(PROVIDER, "Google's token endpoint answered with an unexpected error body")
    error = str(payload.get("error") or "")
    description = str(payload.get("error_description") or "")
    if error == "invalid_grant":
        cause = grant_cause(description)
        if description.strip().lower() == GOOGLE_REVOKED_OR_EXPIRED.lower():
            message = (
                "Google refused the refresh token: it was revoked or it expired "
                f"(Google does not say which): {description}"
            )
        else:
            message = f"Google refused the refresh token ({cause.value}): {description or error}"
        return GrantError(PROVIDER, cause, message, error=error, description=description)
    if getattr(exc, "retryable", False):
        return ProviderUnavailable(PROVIDER, f"Google's token endpoint failed: {error}")
    if error in ("invalid_client", "unauthorized_client"):
        return ProviderError(
            PROVIDER,
            f"Google rejected calsync's OAuth client ({error}: {description}); check the configuration",
        )
    return ProviderError(PROVIDER, f"Google's token endpoint refused the refresh ({error}: {description})")


def _decode_id_token_email(id_token: str | None) -> str | None:
    """The email claim of an id_token received straight from the token endpoint over TLS.

    OpenID Connect lets a client skip signature validation for an id_token it got directly from the
    token endpoint; we only read the email from it, never authorize anything with it.
    """
    if not id_token or id_token.count(".") != 2:
        return None
    try:
        part = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except ValueError:
        return None
    email = claims.get("email") if isinstance(claims, dict) else None
    return email.lower() if isinstance(email, str) else None


# -- API errors -----------------------------------------------------------------------------------


def _close_dropped_connections(http: httplib2.Http) -> None:
    """Close the kept connections that the server closed or reset while they were idle (a keep-alive
    timeout, a restarted front end), so the next request opens a new one. An idle kept socket that
    is readable holds an EOF or a reset. httplib2 itself retries a request only for some of what it
    then gets (a reset is raised), and an insert is never retried by us, so it would fail without
    reaching Google. urllib3 makes the same check before it reuses a pooled connection."""
    for connection in list(http.connections.values()):
        sock = connection.sock
        if sock is not None and wait_for_read(sock, timeout=0.0):
            connection.close()


def _http_error(exc: HttpError, operation: str) -> ProviderError | _Unauthorized:
    status = int(exc.resp.status)
    reason, message = "", ""
    try:
        body = json.loads(exc.content)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            details = error.get("errors")
            if isinstance(details, list) and details and isinstance(details[0], dict):
                reason = str(details[0].get("reason") or "")
    except (ValueError, TypeError):
        pass
    said = f"{operation}: Google answered HTTP {status}" + (f" {reason}" if reason else "")
    if message:
        said += f" ({message})"
    if status == 401:
        return _Unauthorized()
    if status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS):
        return RateLimited(PROVIDER, said, parse_retry_after(exc.resp.get("retry-after")))
    if status == 403:
        return PermissionDenied(PROVIDER, said)
    if status == 410 and reason == "fullSyncRequired":
        return _SyncTokenGone(PROVIDER, said)
    if status in (404, 410):
        return NotFound(PROVIDER, said)
    if status == 408:
        return ProviderTimeout(PROVIDER, said)
    if status >= 500:
        return ProviderUnavailable(PROVIDER, said, status)
    return ProviderError(PROVIDER, said)


def _classify(exc: BaseException, operation: str) -> ProviderError | _Unauthorized:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, HttpError):
        return _http_error(exc, operation)
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return _refresh_error(exc)
    if isinstance(exc, google.auth.exceptions.TransportError):
        return _transport_failure(exc.__cause__ or exc, "Google")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return ProviderTimeout(PROVIDER, f"{operation}: Google did not answer in time")
    if isinstance(exc, (ValueError, KeyError, TypeError)):  # JSON that is not JSON, or not the shape
        return MalformedResponse(PROVIDER, f"{operation}: Google answered with an unexpected body")
    if isinstance(exc, (OSError, http.client.HTTPException, httplib2.HttpLib2Error)):
        return ProviderUnavailable(PROVIDER, f"{operation}: could not reach Google ({type(exc).__name__})")
    return ProviderError(PROVIDER, f"{operation}: unexpected failure ({type(exc).__name__})")


# -- wire format ----------------------------------------------------------------------------------


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse_rfc3339(value: Any, zone: ZoneInfo | None = None) -> datetime:
    """An aware UTC datetime; a time without offset is read in `zone` (UTC when None)."""
    if not isinstance(value, str):
        raise MalformedResponse(PROVIDER, "Google sent a time that is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedResponse(PROVIDER, "Google sent a time that is not RFC 3339") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone or UTC)
    return parsed.astimezone(UTC)


def _event_time(value: Any, *, cancelled: bool) -> datetime:
    if not isinstance(value, dict):
        if cancelled:
            return NO_TIME
        raise MalformedResponse(PROVIDER, "Google sent an event without start/end")
    zone = _zone(value.get("timeZone"))
    if "dateTime" in value:
        return _parse_rfc3339(value["dateTime"], zone)  # no offset given: the event's own zone
    if "date" in value:  # all-day: midnight in the event's zone
        try:
            day = datetime.fromisoformat(str(value["date"]))
        except ValueError:
            raise MalformedResponse(PROVIDER, "Google sent an all-day date that is not a date") from None
        return day.replace(tzinfo=zone).astimezone(UTC)
    if cancelled:
        return NO_TIME
    raise MalformedResponse(PROVIDER, "Google sent an event time without dateTime or date")


def _event(item: Any, calendar_id: str) -> Event:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise MalformedResponse(PROVIDER, "Google sent an event without an id")
    raw_status = item.get("status")
    status: EventStatus = "confirmed"
    if raw_status == "tentative":
        status = "tentative"
    elif raw_status == "cancelled":
        status = "cancelled"
    cancelled = status == "cancelled"
    extended = item.get("extendedProperties")
    private = extended.get("private") if isinstance(extended, dict) else None
    appointment_id = private.get(APPOINTMENT_PROPERTY) if isinstance(private, dict) else None
    updated = item.get("updated")
    return Event(
        id=item["id"],
        calendar_id=calendar_id,
        title=str(item.get("summary") or ""),
        description=str(item.get("description") or ""),
        start=_event_time(item.get("start"), cancelled=cancelled),
        end=_event_time(item.get("end"), cancelled=cancelled),
        status=status,
        appointment_id=str(appointment_id) if appointment_id is not None else None,
        ical_uid=item.get("iCalUID") if isinstance(item.get("iCalUID"), str) else None,
        updated=_parse_rfc3339(updated) if updated else None,
    )


def _calendar(item: Any) -> Calendar:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise MalformedResponse(PROVIDER, "Google sent a calendar without an id")
    raw_role = item.get("accessRole")
    role: AccessRole = raw_role if raw_role in _ACCESS_ROLES else "freeBusyReader"
    primary = bool(item.get("primary", False))
    owner = item.get("dataOwner") or (item["id"] if primary else None)
    return Calendar(
        id=item["id"],
        name=str(item.get("summaryOverride") or item.get("summary") or item["id"]),
        primary=primary,
        access_role=role,
        owner=str(owner) if owner else None,
    )


def _draft_body(draft: EventDraft) -> dict[str, Any]:
    for moment in (draft.start, draft.end):
        if moment.tzinfo is None:
            raise ValueError("EventDraft times must be timezone-aware")
    zone = _zone(draft.time_zone)
    return {
        "summary": draft.title,
        "description": draft.description,
        "start": {"dateTime": draft.start.astimezone(zone).isoformat(), "timeZone": draft.time_zone},
        "end": {"dateTime": draft.end.astimezone(zone).isoformat(), "timeZone": draft.time_zone},
        "extendedProperties": {"private": {APPOINTMENT_PROPERTY: draft.appointment_id}},
    }


def _items(page: Any, what: str) -> list[Any]:
    if not isinstance(page, dict):
        raise MalformedResponse(PROVIDER, f"Google sent a {what} page that is not an object")
    items = page.get("items", [])
    if not isinstance(items, list):
        raise MalformedResponse(PROVIDER, f"Google sent a {what} page whose items are not a list")
    return items


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("list_events needs timezone-aware start and end")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- the provider ---------------------------------------------------------------------------------


class _NoSharedHttp:
    """The service's own `http`: never used, since every request executes on its own HTTP object."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("GoogleProvider executes every request on a per-request Http")


class GoogleProvider:
    """`CalendarProvider` for Google Calendar. One instance serves every connection, from any task."""

    name: ProviderName = "google"

    def __init__(
        self,
        *,
        api_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        timeout: float = 8.0,
        retry_budget: float = 4.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _utcnow,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.endpoint = self.api_url + "/calendar/v3/"
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.timeout = timeout
        self.retry_budget = retry_budget
        self._sleep = sleep
        self._clock = clock
        self.page_size = page_size
        self._resources: tuple[Any, Any] | None = None
        self._build_lock = threading.Lock()
        self._threads = BlockingCalls(PROVIDER)
        self._per_thread = threading.local()  # each worker thread's `Http`
        # No proxy from the environment; no retries (ours are in `retry.py`); a kept connection per
        # provider thread (with fewer, each refresh beyond them would open and drop one).
        self._token_http = urllib3.PoolManager(retries=False, maxsize=MAX_THREADS)

    def __repr__(self) -> str:
        return f"GoogleProvider(api_url={self.api_url!r}, token_url={self.token_url!r})"

    # -- building blocks (worker threads) ---------------------------------------------------------

    def _api(self) -> tuple[Any, Any]:
        """(events, calendarList) resources, built once: read-only afterwards, so safe to share."""
        if self._resources is None:
            with self._build_lock:
                if self._resources is None:
                    service = build(
                        "calendar",
                        "v3",
                        static_discovery=True,
                        cache_discovery=False,
                        client_options={"api_endpoint": self.endpoint},
                        http=_NoSharedHttp(),
                    )
                    self._resources = (service.events(), service.calendarList())
        return self._resources

    def _execute(self, access_token: str, make: Callable[[Any, Any], Any], operation: str) -> Any:
        """Build one request and execute it on its own HTTP object (httplib2 is not thread-safe)."""
        events, calendar_list = self._api()
        credentials = Credentials(token=access_token)  # no refresh here: `_run` owns refreshing
        transport = self._thread_http()
        authorized = google_auth_httplib2.AuthorizedHttp(credentials, http=transport, refresh_status_codes=())
        request = make(events, calendar_list)
        try:
            return request.execute(http=authorized, num_retries=0)
        except Exception as exc:
            # httplib2 leaves the socket open after a timeout, mid-response: never reuse it.
            transport.close()
            classified = _classify(exc, operation)
            raise classified from None

    def _thread_http(self) -> httplib2.Http:
        """This worker thread's own `Http` (see the module's docstring)."""
        http: httplib2.Http | None = getattr(self._per_thread, "http", None)
        if http is None:
            http = self._per_thread.http = httplib2.Http(timeout=self.timeout, proxy_info=None)
        else:
            _close_dropped_connections(http)
        return http

    def _refresh_blocking(self, refresh_token: str) -> _Refreshed:
        transport = _TokenTransport(self._token_http, self.timeout)
        credentials = Credentials(
            token=None,
            refresh_token=refresh_token,
            token_uri=self.token_url,
            client_id=self.client_id,
            client_secret=self._client_secret,
        )
        now = self._clock()
        try:
            credentials.refresh(transport)
        except Exception as exc:
            classified = _classify(exc, "refresh")
            if isinstance(classified, _Unauthorized):  # pragma: no cover - a refresh never yields it
                classified = ProviderError(PROVIDER, "refresh: unexpected 401")
            raise classified from None
        payload = transport.payload or {}
        if not credentials.token:
            raise MalformedResponse(PROVIDER, "Google's token endpoint answered without an access token")
        expires_in = payload.get("expires_in")
        try:
            expires_at = now + timedelta(seconds=int(expires_in)) if expires_in is not None else None
        except (TypeError, ValueError):
            raise MalformedResponse(PROVIDER, "Google's token endpoint sent a bad expires_in") from None
        scope = payload.get("scope")
        return _Refreshed(
            access_token=credentials.token,
            expires_at=expires_at,
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
            account_email=_decode_id_token_email(payload.get("id_token")),
        )

    # -- the loop every operation goes through ------------------------------------------------------

    async def _refresh(self, auth: Authorization) -> _Refreshed:
        result = await self._threads.run(self._refresh_blocking, auth.refresh_token)
        auth.access_token = result.access_token
        auth.expires_at = result.expires_at
        if result.scopes:
            auth.scopes = result.scopes
        if auth.account_email is None and result.account_email:
            auth.account_email = result.account_email
        auth.refreshed = True
        return result

    def _needs_refresh(self, auth: Authorization) -> bool:
        if not auth.access_token:
            return True
        return auth.expires_at is not None and auth.expires_at - self._clock() <= REFRESH_MARGIN

    async def _with_retries(self, attempt_once: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        """Run `attempt_once` until it succeeds or fails for good, within `retry_budget` seconds."""

        def retryable(error: ProviderError) -> bool:
            # A 5xx or a timeout does not say the request was not carried out: an insert is not sent
            # again (the sync engine looks for it by our appointment id before inserting on its next
            # cycle). Grant, not found, permission, malformed, configuration: retrying changes nothing.
            return isinstance(error, RateLimited) or (
                idempotent and isinstance(error, ProviderUnavailable | ProviderTimeout)
            )

        return await with_retries(
            attempt_once,
            budget=self.retry_budget,
            sleep=self._sleep,
            retryable=retryable,
            max_attempts=_MAX_ATTEMPTS,
            provider=PROVIDER,
        )

    async def _run(
        self, auth: Authorization, operation: str, make: Callable[[Any, Any], Any], *, idempotent: bool = True
    ) -> Any:
        """One API request: fresh token, retries for transient failures, one refresh on a 401."""
        retried_401 = False

        async def once() -> Any:
            nonlocal retried_401
            while True:
                if self._needs_refresh(auth):
                    await self._refresh(auth)
                token = auth.access_token
                assert token is not None
                try:
                    return await self._threads.run(self._execute, token, make, operation)
                except _Unauthorized:
                    if retried_401:
                        raise GrantError(
                            PROVIDER,
                            GrantCause.UNKNOWN,
                            f"{operation}: Google rejects freshly refreshed access tokens (HTTP 401)",
                            error="unauthorized",
                        ) from None
                    retried_401 = True
                    auth.access_token = None  # refresh once, then try again

        return await self._with_retries(once, idempotent=idempotent)

    async def _list_all(
        self, auth: Authorization, calendar_id: str, operation: str, params: dict[str, Any]
    ) -> tuple[list[Event], str | None]:
        """Every page of an events list; (events, nextSyncToken)."""
        events: list[Event] = []
        page_token: str | None = None
        while True:
            query = dict(params, calendarId=calendar_id, maxResults=self.page_size)
            if page_token:
                query["pageToken"] = page_token

            def make(events_api: Any, _calendars: Any, query: dict[str, Any] = query) -> Any:
                return events_api.list(**query)

            page = await self._run(auth, operation, make)
            events.extend(_event(item, calendar_id) for item in _items(page, "events"))
            page_token = page.get("nextPageToken")
            if not page_token:
                sync_token = page.get("nextSyncToken")
                return events, sync_token if isinstance(sync_token, str) else None

    # -- CalendarProvider ---------------------------------------------------------------------------

    async def check_grant(self, auth: Authorization) -> GrantInfo:
        result = await self._with_retries(lambda: self._refresh(auth))
        return GrantInfo(
            account_email=result.account_email or auth.account_email,
            expires_at=result.expires_at,
            scopes=result.scopes,
        )

    async def list_calendars(self, auth: Authorization) -> list[Calendar]:
        calendars: list[Calendar] = []
        page_token: str | None = None
        while True:

            def make(_events: Any, calendar_list: Any, page_token: str | None = page_token) -> Any:
                size = min(self.page_size, 250)  # the calendar list's own maximum
                if page_token:
                    return calendar_list.list(maxResults=size, pageToken=page_token)
                return calendar_list.list(maxResults=size)

            page = await self._run(auth, "list_calendars", make)
            calendars.extend(_calendar(item) for item in _items(page, "calendar list"))
            page_token = page.get("nextPageToken")
            if not page_token:
                return calendars

    async def list_events(
        self,
        auth: Authorization,
        calendar_id: str,
        start: datetime,
        end: datetime,
        *,
        appointment_id: str | None = None,
    ) -> list[Event]:
        params: dict[str, Any] = {
            "timeMin": _utc(start),
            "timeMax": _utc(end),
            "singleEvents": True,
            "orderBy": "startTime",
        }
        if appointment_id is not None:
            params["privateExtendedProperty"] = f"{APPOINTMENT_PROPERTY}={appointment_id}"
        events, _ = await self._list_all(auth, calendar_id, "list_events", params)
        return events

    async def get_event(self, auth: Authorization, calendar_id: str, event_id: str) -> Event:
        item = await self._run(
            auth, "get_event", lambda events, _c: events.get(calendarId=calendar_id, eventId=event_id)
        )
        return _event(item, calendar_id)

    async def insert_event(self, auth: Authorization, calendar_id: str, draft: EventDraft) -> Event:
        body = _draft_body(draft)
        # Not retried after a timeout: the insert may have happened, and a second one is a duplicate.
        item = await self._run(
            auth,
            "insert_event",
            lambda events, _c: events.insert(calendarId=calendar_id, body=body),
            idempotent=False,
        )
        return _event(item, calendar_id)

    async def update_event(
        self, auth: Authorization, calendar_id: str, event_id: str, draft: EventDraft
    ) -> Event:
        body = _draft_body(draft)  # PATCH: what the user added to the event (guests, notes) stays
        item = await self._run(
            auth,
            "update_event",
            lambda events, _c: events.patch(calendarId=calendar_id, eventId=event_id, body=body),
        )
        return _event(item, calendar_id)

    async def delete_event(self, auth: Authorization, calendar_id: str, event_id: str) -> None:
        await self._run(
            auth, "delete_event", lambda events, _c: events.delete(calendarId=calendar_id, eventId=event_id)
        )

    async def changes(self, auth: Authorization, calendar_id: str, cursor: str | None) -> Changes:
        if cursor is not None:
            try:
                events, next_cursor = await self._list_all(
                    auth, calendar_id, "changes", {"syncToken": cursor, "singleEvents": True}
                )
                return Changes(events=events, cursor=self._cursor(next_cursor))
            except _SyncTokenGone:
                logger.info("google: sync token expired for a calendar, reading it in full")
        # A full read lists every event; deleted ones only while Google still keeps them (showDeleted).
        events, next_cursor = await self._list_all(
            auth, calendar_id, "changes", {"showDeleted": True, "singleEvents": True}
        )
        return Changes(
            events=events, cursor=self._cursor(next_cursor), full_resync=cursor is not None, full_read=True
        )

    @staticmethod
    def _cursor(sync_token: str | None) -> str:
        if not sync_token:
            raise MalformedResponse(PROVIDER, "changes: Google's last page carried no nextSyncToken")
        return sync_token
