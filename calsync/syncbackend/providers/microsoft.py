"""Microsoft 365 / Outlook calendars: msal for the identity platform, Microsoft Graph over httpx.

Everything a caller sees is a type or an error from `base.py`. The identity platform (msal, the
token endpoint's errors, the interactive sign-in) is `microsoft_identity.py`; what is here is Graph:
calls honour the 4-concurrent-requests-per-mailbox limit with a semaphore per account, refresh the
access token under a per-account lock (Microsoft rotates refresh tokens), and retry through
`retry.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from calsync.syncbackend.providers.base import (
    AccessRole,
    Authorization,
    Calendar,
    Changes,
    Event,
    EventDraft,
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
from calsync.syncbackend.providers.microsoft_identity import (
    MicrosoftIdentity,
    TLSFailure,
    is_tls_failure,
    tls_error,
)
from calsync.syncbackend.providers.retry import parse_retry_after, with_retries
from calsync.syncbackend.providers.threads import BlockingCalls

log = logging.getLogger(__name__)

T = TypeVar("T")

APPOINTMENT_PROPERTY_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name calsyncAppointmentId"
MAILBOX_CONCURRENCY = 4  # Graph: at most 4 concurrent requests per app per mailbox
REFRESH_MARGIN = timedelta(minutes=2)  # refresh a little before the access token expires
PAGE_SIZE = 100
MAX_PAGES = 200  # a safety stop for a server that keeps answering nextLinks


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the provider ---------------------------------------------------------------------------------


@dataclass
class _LoopState:
    client: httpx.AsyncClient
    semaphores: dict[str, asyncio.Semaphore]
    refresh_locks: dict[str, asyncio.Lock]


class MicrosoftProvider:
    """`CalendarProvider` for Microsoft 365 / Outlook.com calendars."""

    name: ProviderName = "microsoft"
    # The window of a delta (changes) sync: Graph's calendarView delta needs one.
    delta_window_past = timedelta(days=30)
    delta_window_future = timedelta(days=365)
    page_size = PAGE_SIZE  # $top / odata.maxpagesize asked of Graph

    def __init__(
        self,
        *,
        authority: str,
        graph_url: str,
        client_id: str,
        client_secret: str,
        ca_bundle: Path | None = None,
        timeout: float = 8.0,
        retry_budget: float = 4.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.authority = authority.rstrip("/")
        self.graph_url = graph_url.rstrip("/")
        self.client_id = client_id
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.retry_budget = retry_budget
        self._sleep = sleep
        self._clock = clock
        self._identity = MicrosoftIdentity(
            authority=self.authority,
            client_id=client_id,
            client_secret=client_secret,
            verify=self._verify(),
            timeout=timeout,
            clock=clock,
            threads=BlockingCalls("microsoft"),
        )
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"MicrosoftProvider(authority={self.authority!r}, graph_url={self.graph_url!r})"

    # -- plumbing --------------------------------------------------------------------------------

    def _verify(self) -> str | bool:
        return str(self.ca_bundle) if self.ca_bundle else True

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None or state.client.is_closed:
            verify: str | bool | ssl.SSLContext = self._verify()
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            client = httpx.AsyncClient(
                verify=verify,
                trust_env=False,
                timeout=httpx.Timeout(self.timeout),
                # Idle connections kept for 30 s, not httpx's 5: a diagnosis's parallel reads open
                # several, and each one opened again costs a TLS handshake.
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=20, keepalive_expiry=30.0),
            )
            state = _LoopState(client=client, semaphores={}, refresh_locks={})
            self._loops[loop] = state
        return state

    async def aclose(self) -> None:
        """Close the HTTP clients (Graph and identity platform)."""
        loop = asyncio.get_running_loop()
        state = self._loops.pop(loop, None)
        if state is not None:
            await state.client.aclose()
        for other in list(self._loops.values()):
            if not other.client.is_closed:
                log.debug("an httpx client of another event loop is left for that loop to close")
        await self._identity.aclose()

    @staticmethod
    def _account_key(auth: Authorization) -> str:
        if auth.account_email:
            return auth.account_email.lower()
        return "rt:" + hashlib.sha256(auth.refresh_token.encode()).hexdigest()[:16]

    def _semaphore(self, auth: Authorization) -> asyncio.Semaphore:
        semaphores = self._loop_state().semaphores
        key = self._account_key(auth)
        if key not in semaphores:
            semaphores[key] = asyncio.Semaphore(MAILBOX_CONCURRENCY)
        return semaphores[key]

    def _refresh_lock(self, auth: Authorization) -> asyncio.Lock:
        locks = self._loop_state().refresh_locks
        key = self._account_key(auth)
        if key not in locks:
            locks[key] = asyncio.Lock()
        return locks[key]

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt`, retrying transient failures with backoff within `retry_budget` seconds
        (`retry.py`); an untrusted certificate does not go away by retrying."""
        return await with_retries(
            attempt,
            budget=self.retry_budget,
            sleep=self._sleep,
            retryable=lambda error: error.transient and not isinstance(error, TLSFailure),
            provider="microsoft",
        )

    # -- the identity platform -------------------------------------------------------------------

    async def _refresh(self, auth: Authorization) -> None:
        """Refresh `auth` in place (new access token, rotated refresh token), or raise classified."""
        await self._identity.refresh(auth)

    async def initiate_auth_code_flow(
        self, *, redirect_uri: str, state: str, login_hint: str | None = None
    ) -> dict[str, Any]:
        """The interactive sign-in's first half (see `MicrosoftIdentity.initiate_auth_code_flow`)."""
        return await self._identity.initiate_auth_code_flow(
            redirect_uri=redirect_uri, state=state, login_hint=login_hint
        )

    async def acquire_token_by_auth_code_flow(
        self, flow: dict[str, Any], query_params: dict[str, str]
    ) -> Authorization:
        """The interactive sign-in's second half: the new grant (classified `ProviderError`s)."""
        return await self._identity.acquire_token_by_auth_code_flow(flow, query_params)

    def _token_fresh(self, auth: Authorization) -> bool:
        return bool(
            auth.access_token
            and auth.expires_at is not None
            and auth.expires_at - REFRESH_MARGIN > self._clock()
        )

    async def _ensure_token(self, auth: Authorization, *, rejected: str | None = None) -> str:
        """A usable access token, refreshed under a per-account lock so two calls never race a rotation.

        `rejected` is a token Graph just answered 401 to: refresh, unless another call already replaced it.
        """
        if rejected is None and self._token_fresh(auth):
            assert auth.access_token is not None
            return auth.access_token
        async with self._refresh_lock(auth):
            if rejected is None and self._token_fresh(auth):
                pass  # refreshed by another call while we waited
            elif rejected is not None and auth.access_token and auth.access_token != rejected:
                pass
            else:
                await self._refresh(auth)
        assert auth.access_token is not None
        return auth.access_token

    # -- Graph -----------------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith("https://") or path_or_url.startswith("http://"):
            if not path_or_url.startswith(self.graph_url + "/"):
                # Never send a bearer token to a host that is not our Graph base URL.
                raise MalformedResponse("microsoft", "Microsoft Graph returned a link to an unexpected host.")
            return path_or_url
        return self.graph_url + path_or_url

    async def _send(
        self,
        method: str,
        url: str,
        token: str,
        *,
        params: dict[str, str] | None,
        json_body: Any,
        extra_headers: dict[str, str] | None,
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Prefer": 'outlook.timezone="UTC", outlook.body-content-type="text"',
        }
        if extra_headers:
            headers.update(extra_headers)
        client = self._loop_state().client
        try:
            return await client.request(method, url, params=params or None, json=json_body, headers=headers)
        except httpx.TimeoutException:
            raise ProviderTimeout(
                "microsoft", f"Microsoft Graph did not answer within {self.timeout:g} s."
            ) from None
        except httpx.TransportError as exc:
            if is_tls_failure(exc):
                raise tls_error("Microsoft Graph") from exc
            raise ProviderUnavailable(
                "microsoft", f"Could not reach Microsoft Graph ({type(exc).__name__})."
            ) from None

    async def _graph(
        self,
        auth: Authorization,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        expect_body: bool = True,
    ) -> dict[str, Any]:
        """One Graph call with token handling, retries and error classification; returns the JSON body."""
        url = self._url(path_or_url)

        async def attempt() -> dict[str, Any]:
            token = await self._ensure_token(auth)
            async with self._semaphore(auth):
                response = await self._send(
                    method, url, token, params=params, json_body=json_body, extra_headers=headers
                )
            if response.status_code == 401:
                token = await self._ensure_token(auth, rejected=token)
                async with self._semaphore(auth):
                    response = await self._send(
                        method, url, token, params=params, json_body=json_body, extra_headers=headers
                    )
                if response.status_code == 401:
                    code = _graph_error_code(response)
                    raise GrantError(
                        "microsoft",
                        GrantCause.UNKNOWN,
                        f"Microsoft Graph rejects the connection's freshly refreshed access token ({code}).",
                        error=code or "InvalidAuthenticationToken",
                        description=_graph_error_message(response),
                    )
            _raise_for_graph_status(response)
            if not expect_body or response.status_code == 204:
                return {}
            try:
                data = response.json()
            except ValueError:
                raise MalformedResponse(
                    "microsoft", "Microsoft Graph answered with something that is not JSON."
                ) from None
            if not isinstance(data, dict):
                raise MalformedResponse("microsoft", "Microsoft Graph answered with unexpected JSON.")
            return data

        return await self._retrying(attempt)

    async def _graph_pages(
        self, auth: Authorization, path: str, params: dict[str, str], *, stop_key: str | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Follow `@odata.nextLink` to the end; returns every `value` item and the last page."""
        items: list[dict[str, Any]] = []
        page = await self._graph(auth, "GET", path, params=params, headers=_page_size_header(self.page_size))
        for _ in range(MAX_PAGES):
            values = page.get("value")
            if not isinstance(values, list):
                raise MalformedResponse("microsoft", "Microsoft Graph answered a list without 'value'.")
            items.extend(v for v in values if isinstance(v, dict))
            next_link = page.get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link:
                return items, page
            page = await self._graph(auth, "GET", next_link, headers=_page_size_header(self.page_size))
        raise MalformedResponse("microsoft", "Microsoft Graph kept paging past any reasonable size.")

    # -- CalendarProvider ------------------------------------------------------------------------

    async def check_grant(self, auth: Authorization) -> GrantInfo:
        async def attempt() -> None:
            async with self._refresh_lock(auth):
                await self._refresh(auth)

        await self._retrying(attempt)
        if not auth.account_email:
            me = await self._graph(auth, "GET", "/me")
            email = me.get("mail") or me.get("userPrincipalName")
            if isinstance(email, str) and email:
                auth.account_email = email.lower()
        return GrantInfo(account_email=auth.account_email, expires_at=auth.expires_at, scopes=auth.scopes)

    async def list_calendars(self, auth: Authorization) -> list[Calendar]:
        items, _ = await self._graph_pages(auth, "/me/calendars", {"$top": str(self.page_size)})
        return [_calendar(item, auth.account_email) for item in items]

    async def list_events(
        self,
        auth: Authorization,
        calendar_id: str,
        start: datetime,
        end: datetime,
        *,
        appointment_id: str | None = None,
    ) -> list[Event]:
        params = {
            "startDateTime": _iso(start),
            "endDateTime": _iso(end),
            "$top": str(self.page_size),
            "$expand": _expand_property(),
        }
        if appointment_id is not None:
            params["$filter"] = (
                f"singleValueExtendedProperties/Any(ep: ep/id eq '{APPOINTMENT_PROPERTY_ID}' "
                f"and ep/value eq '{_odata_string(appointment_id)}')"
            )
        items, _ = await self._graph_pages(auth, f"/me/calendars/{_seg(calendar_id)}/calendarView", params)
        return [_event(item, calendar_id) for item in items]

    async def get_event(self, auth: Authorization, calendar_id: str, event_id: str) -> Event:
        data = await self._graph(
            auth,
            "GET",
            f"/me/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}",
            params={"$expand": _expand_property()},
        )
        return _event(data, calendar_id)

    async def insert_event(self, auth: Authorization, calendar_id: str, draft: EventDraft) -> Event:
        body = _event_body(draft)
        # Graph returns the event already created with this transactionId: a retry never duplicates.
        body["transactionId"] = _transaction_id(calendar_id, draft.appointment_id)
        data = await self._graph(auth, "POST", f"/me/calendars/{_seg(calendar_id)}/events", json_body=body)
        return _event(data, calendar_id, appointment_id=draft.appointment_id)

    async def update_event(
        self, auth: Authorization, calendar_id: str, event_id: str, draft: EventDraft
    ) -> Event:
        data = await self._graph(
            auth,
            "PATCH",
            f"/me/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}",
            json_body=_event_body(draft),
        )
        return _event(data, calendar_id, appointment_id=draft.appointment_id)

    async def delete_event(self, auth: Authorization, calendar_id: str, event_id: str) -> None:
        await self._graph(
            auth,
            "DELETE",
            f"/me/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}",
            expect_body=False,
        )

    async def changes(self, auth: Authorization, calendar_id: str, cursor: str | None) -> Changes:
        """The cursor is the deltaLink relative to the Graph base URL, so it stays good when that URL's
        host changes (the sandbox's emulators get new ports in every process) and can only ever be
        followed to this calendar's delta on our own Graph."""
        delta_path = _delta_path(calendar_id)
        link = self._stored_delta_link(cursor, delta_path)
        if link is not None:
            try:
                return await self._delta(auth, calendar_id, link, {})
            except _SyncStateGone:
                log.info("microsoft: delta link expired for a calendar, reading it in full")
        # No cursor, a stale one (410 syncStateNotFound) or one that is not this calendar's delta.
        now = self._clock()
        window = (now - self.delta_window_past, now + self.delta_window_future)
        params = {"startDateTime": _iso(window[0]), "endDateTime": _iso(window[1])}
        try:
            changes = await self._delta(auth, calendar_id, delta_path, params)
        except _SyncStateGone:
            raise ProviderUnavailable(
                "microsoft", "Microsoft Graph lost the sync state of a brand-new calendar sync.", 410
            ) from None
        return Changes(
            events=changes.events,
            cursor=changes.cursor,
            full_resync=cursor is not None,
            full_read=True,
            window=window,
        )

    def _stored_delta_link(self, cursor: str | None, delta_path: str) -> str | None:
        """The delta link a stored cursor stands for, or None when it is not one of this calendar."""
        if not cursor:
            return None
        if cursor.startswith(self.graph_url + "/"):  # stored whole (before cursors were relative)
            cursor = cursor[len(self.graph_url) :]
        if cursor.startswith(delta_path + "?"):
            return cursor
        return None

    async def _delta(
        self, auth: Authorization, calendar_id: str, link: str, params: dict[str, str]
    ) -> Changes:
        try:
            items, last = await self._graph_pages(auth, link, params)
        except _GraphGone as exc:
            raise _SyncStateGone() from exc
        delta_link = last.get("@odata.deltaLink")
        if not isinstance(delta_link, str) or not delta_link.startswith(self.graph_url + "/"):
            raise MalformedResponse("microsoft", "Microsoft Graph ended a delta query without a deltaLink.")
        events = [
            Event.removed(str(item.get("id", "")), calendar_id)
            if "@removed" in item
            else _event(item, calendar_id)
            for item in items
        ]
        return Changes(events=events, cursor=delta_link[len(self.graph_url) :])


# -- Graph wire format ----------------------------------------------------------------------------


class _GraphGone(NotFound):
    """HTTP 410 from Graph (syncStateNotFound on a delta query)."""


class _SyncStateGone(Exception):
    pass


def _calendar(item: dict[str, Any], account_email: str | None) -> Calendar:
    try:
        calendar_id = str(item["id"])
    except KeyError:
        raise MalformedResponse("microsoft", "Microsoft Graph returned a calendar without an id.") from None
    owner = item.get("owner") if isinstance(item.get("owner"), dict) else {}
    owner_address = owner.get("address") if owner else None
    can_edit = bool(item.get("canEdit", False))
    mine = bool(owner_address and account_email and owner_address.lower() == account_email)
    role: AccessRole = (
        ("owner" if mine or item.get("isDefaultCalendar") else "writer") if can_edit else "reader"
    )
    return Calendar(
        id=calendar_id,
        name=str(item.get("name") or ""),
        primary=bool(item.get("isDefaultCalendar", False)),
        access_role=role,
        owner=str(owner_address).lower() if owner_address else None,
    )


def _delta_path(calendar_id: str) -> str:
    return f"/me/calendars/{_seg(calendar_id)}/calendarView/delta"


def _page_size_header(size: int) -> dict[str, str]:
    return {"Prefer": f'outlook.timezone="UTC", outlook.body-content-type="text", odata.maxpagesize={size}'}


def _seg(value: str) -> str:
    return quote(value, safe="")


def _odata_string(value: str) -> str:
    return value.replace("'", "''")


def _expand_property() -> str:
    return f"singleValueExtendedProperties($filter=id eq '{APPOINTMENT_PROPERTY_ID}')"


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _transaction_id(calendar_id: str, appointment_id: str) -> str:
    digest = hashlib.sha256(f"{calendar_id}\n{appointment_id}".encode()).hexdigest()[:32]
    return f"calsync-{digest}"


def _event_body(draft: EventDraft) -> dict[str, Any]:
    try:
        zone = ZoneInfo(draft.time_zone)
        zone_name = draft.time_zone
    except (ZoneInfoNotFoundError, ValueError):
        zone, zone_name = ZoneInfo("UTC"), "UTC"
    return {
        "subject": draft.title,
        "body": {"contentType": "text", "content": draft.description},
        "start": {
            "dateTime": draft.start.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"),
            "timeZone": zone_name,
        },
        "end": {"dateTime": draft.end.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": zone_name},
        "singleValueExtendedProperties": [{"id": APPOINTMENT_PROPERTY_ID, "value": draft.appointment_id}],
    }


def _parse_graph_time(value: Any) -> datetime:
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise MalformedResponse(
            "microsoft", "Microsoft Graph returned an event without a valid start or end."
        )
    text = value["dateTime"]
    zone_name = str(value.get("timeZone") or "UTC")
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$", text)
    if match is None:
        raise MalformedResponse("microsoft", "Microsoft Graph returned an event time it could not read.")
    fraction = (match.group(2) or ".0")[1:7].ljust(6, "0")  # Graph sends 7 digits, Python reads 6
    parsed = datetime.fromisoformat(
        f"{match.group(1)}.{fraction}{match.group(3) or ''}".replace("Z", "+00:00")
    )
    if parsed.tzinfo is None:
        try:
            zone = ZoneInfo("UTC" if zone_name.upper() in ("UTC", "GMT") else zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise MalformedResponse(
                "microsoft", f"Microsoft Graph returned an unknown time zone {zone_name!r}."
            ) from None
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _parse_stamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _event(item: dict[str, Any], calendar_id: str, *, appointment_id: str | None = None) -> Event:
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedResponse("microsoft", "Microsoft Graph returned an event without an id.")
    found_appointment = appointment_id
    for prop in item.get("singleValueExtendedProperties") or []:
        if isinstance(prop, dict) and str(prop.get("id", "")).lower() == APPOINTMENT_PROPERTY_ID.lower():
            found_appointment = str(prop.get("value")) if prop.get("value") is not None else None
    body = item.get("body") if isinstance(item.get("body"), dict) else {}
    return Event(
        id=event_id,
        calendar_id=calendar_id,
        title=str(item.get("subject") or ""),
        description=str((body or {}).get("content") or ""),
        start=_parse_graph_time(item.get("start")),
        end=_parse_graph_time(item.get("end")),
        status="cancelled" if item.get("isCancelled") else "confirmed",
        appointment_id=found_appointment,
        ical_uid=item.get("iCalUId") if isinstance(item.get("iCalUId"), str) else None,
        updated=_parse_stamp(item.get("lastModifiedDateTime")),
    )


def _graph_error_json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _graph_error_code(response: httpx.Response) -> str:
    return str(_graph_error_json(response).get("code", ""))


def _graph_error_message(response: httpx.Response) -> str:
    return str(_graph_error_json(response).get("message", ""))


def _raise_for_graph_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    code = _graph_error_code(response)
    detail = f"HTTP {status}" + (f" {code}" if code else "")
    if status == 429:
        raise RateLimited(
            "microsoft",
            f"Microsoft Graph is throttling requests for this mailbox ({detail}).",
            parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        raise ProviderUnavailable("microsoft", f"Microsoft Graph is unavailable ({detail}).", status)
    if status == 410:
        raise _GraphGone("microsoft", f"Microsoft Graph no longer has this sync state ({detail}).")
    if status == 404:
        raise NotFound("microsoft", f"The calendar or event was not found in Microsoft Graph ({detail}).")
    if status == 403:
        raise PermissionDenied(
            "microsoft", f"The account may not change this calendar or event in Microsoft Graph ({detail})."
        )
    raise ProviderError("microsoft", f"Microsoft Graph refused the request ({detail}).")
