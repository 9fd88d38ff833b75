"""An emulator of Google OAuth 2.0 and a Calendar API v3 subset, served from one base URL.

Point calsync at it with `GOOGLE_API_URL=<base>`, `GOOGLE_TOKEN_URL=<base>/token` and
`GOOGLE_AUTH_URL=<base>/o/oauth2/auth`. It reads and writes the sandbox world only through `World`,
answers with Google's JSON shapes (tokens, resources and errors), applies the world's faults and
logs every request (secrets redacted) for tests to assert on.

Routes:
- `GET /o/oauth2/auth`: a server-rendered consent page (no JavaScript), `POST /o/oauth2/auth/decision`
- `POST /token` (also `/o/oauth2/token`): authorization_code (+ PKCE S256) and refresh_token grants
- `GET /oauth2/v2/userinfo`, `GET /oauth2/v3/userinfo`
- `/calendar/v3/users/me/calendarList[/{calendarId}]`,
  `/calendar/v3/calendars/{calendarId}/events[/{eventId}]`

Fault endpoints: `token` (the token endpoint), `calendars` (calendar list), `events` (event reads and
writes), `changes` (an event list with a `syncToken`, i.e. an incremental read).

The emulator is in three parts: `google_common.py` (wire format, and the plumbing every route shares:
authentication, faults via `calsync.sandbox.faults`, the request log), `google_oauth.py` (consent,
token endpoint, userinfo) and this module (the Calendar API, and the app).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.sandbox.google_common import (
    _EVENT_ID_ALPHABET,
    _PAGE_PREFIX,
    _SYNC_PREFIX,
    APPOINTMENT_PROPERTY,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    WRITER_ROLES,
    _bad_request,
    _Call,
    _decode_token,
    _encode_token,
    _Handler,
    _not_found,
    _Reject,
    _rfc3339,
    _zone,
    google_error,
    oauth_error,
)
from calsync.sandbox.google_oauth import GoogleOAuth
from calsync.sandbox.world import SandboxCalendar, SandboxEvent, World


def _parse_time_param(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad_request(f"Bad Request: invalid {name}", "badRequest") from None
    if parsed.tzinfo is None:  # Google insists on an offset in timeMin/timeMax
        raise _bad_request(f"Bad Request: {name} needs a time zone offset", "badRequest")
    return parsed.astimezone(UTC)


def _parse_event_time(value: Any, which: str, default_zone: str) -> tuple[datetime, str]:
    """A start/end object -> (aware UTC datetime, time zone name)."""
    if not isinstance(value, dict):
        raise _bad_request(f"Missing {which} time.", "required")
    zone_name = value.get("timeZone") or default_zone
    if not isinstance(zone_name, str):
        raise _bad_request(f"Invalid {which} time zone.", "invalid")
    zone = _zone(zone_name)
    try:
        if isinstance(value.get("dateTime"), str):
            parsed = datetime.fromisoformat(value["dateTime"])
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=zone)
            return parsed.astimezone(UTC), zone_name
        if isinstance(value.get("date"), str):
            day = datetime.fromisoformat(value["date"]).replace(tzinfo=zone)
            return day.astimezone(UTC), zone_name
    except ValueError:
        raise _bad_request(f"Invalid {which} time.", "invalid") from None
    raise _bad_request(f"Missing {which} time.", "required")


def _calendar_entry(calendar: SandboxCalendar) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": "calendar#calendarListEntry",
        "etag": f'"{calendar.pk}"',
        "id": calendar.calendar_id,
        "summary": calendar.name,
        "timeZone": calendar.time_zone,
        "accessRole": calendar.access_role,
        "defaultReminders": [],
        "selected": True,
    }
    if calendar.primary:
        entry["primary"] = True
    if calendar.owner_email:
        entry["dataOwner"] = calendar.owner_email
    return entry


def _event_resource(event: SandboxEvent, calendar: SandboxCalendar, *, in_list: bool) -> dict[str, Any]:
    """An event as Google returns it; cancelled events in lists carry only what Google guarantees."""
    base: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": f'"{event.version}"',
        "id": event.event_id,
        "status": event.status,
    }
    if event.status == "cancelled" and in_list:
        return base
    zone = _zone(event.time_zone)
    times = {
        "start": {"dateTime": event.start.astimezone(zone).isoformat(), "timeZone": event.time_zone},
        "end": {"dateTime": event.end.astimezone(zone).isoformat(), "timeZone": event.time_zone},
    }
    if calendar.access_role == "freeBusyReader":
        return {**base, **times, "updated": _rfc3339(event.updated)}
    resource: dict[str, Any] = {
        **base,
        "created": _rfc3339(event.updated),
        "updated": _rfc3339(event.updated),
        "summary": event.title,
        "creator": {"email": calendar.owner_email or calendar.calendar_id},
        "organizer": {"email": calendar.calendar_id, "self": True},
        **times,
        "iCalUID": event.ical_uid,
        "sequence": 0,
        "reminders": {"useDefault": True},
        "eventType": "default",
    }
    if event.description:
        resource["description"] = event.description
    if event.appointment_id:
        resource["extendedProperties"] = {"private": {APPOINTMENT_PROPERTY: event.appointment_id}}
    return resource


def _private_properties(body: dict[str, Any]) -> dict[str, Any] | None:
    """`extendedProperties.private` of a request body; None when the body does not mention it."""
    extended = body.get("extendedProperties")
    if not isinstance(extended, dict) or "private" not in extended:
        return None
    private = extended["private"]
    if private is None:
        return {}
    if not isinstance(private, dict):
        raise _bad_request("Invalid extendedProperties.private.", "invalid")
    return private


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad_request(f"Invalid value for {name}.", "invalid")
    return value


def _paging(request: Request, *, default: int, maximum: int) -> tuple[int, int]:
    """(offset, page size) from `pageToken` and `maxResults`."""
    query = request.query_params
    try:
        size = int(query.get("maxResults", default))
    except ValueError:
        raise _bad_request("Invalid value for maxResults.") from None
    if size < 1:
        raise _bad_request("Invalid value for maxResults.")
    offset = 0
    if "pageToken" in query:
        state = _decode_token(_PAGE_PREFIX, query["pageToken"])
        if state is None or not isinstance(state.get("o"), int) or state["o"] < 0:
            raise _bad_request("Invalid page token value.", "invalid")
        offset = state["o"]
    return offset, min(size, maximum)


# -- the emulator ---------------------------------------------------------------------------------


class GoogleEmulator(GoogleOAuth):
    """Google OAuth 2.0 and the Calendar API v3 subset calsync uses, as Starlette routes."""

    def routes(self) -> list[Route]:
        events = "/calendar/v3/calendars/{calendar_id}/events"
        return [
            Route("/o/oauth2/auth", self.consent_page, methods=["GET"]),
            Route("/o/oauth2/auth/decision", self.consent_decision, methods=["POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/o/oauth2/token", self.token, methods=["POST"]),
            Route("/oauth2/v2/userinfo", self.userinfo, methods=["GET"]),
            Route("/oauth2/v3/userinfo", self.userinfo, methods=["GET"]),
            Route("/calendar/v3/users/me/calendarList", self.calendar_list, methods=["GET"]),
            Route("/calendar/v3/users/me/calendarList/{calendar_id}", self.calendar_get, methods=["GET"]),
            Route(events, self.events_collection, methods=["GET", "POST"]),
            Route(events + "/{event_id}", self.event_item, methods=["GET", "PATCH", "PUT", "DELETE"]),
        ]

    # -- plumbing ---------------------------------------------------------------------------------

    # -- Calendar API: calendar list ----------------------------------------------------------------

    async def calendar_list(self, request: Request) -> Response:
        def handler(call: _Call) -> Response:
            calendars = self.world.google_calendars(call.account.id)
            offset, size = _paging(call.request, default=100, maximum=250)
            page = calendars[offset : offset + size]
            body: dict[str, Any] = {
                "kind": "calendar#calendarList",
                "etag": f'"{self.world.current_version()}"',
                "items": [_calendar_entry(calendar) for calendar in page],
            }
            if offset + size < len(calendars):
                body["nextPageToken"] = _encode_token(_PAGE_PREFIX, {"o": offset + size})
            else:
                body["nextSyncToken"] = _encode_token(_SYNC_PREFIX, {"cl": call.account.id})
            return JSONResponse(body)

        return await self._api(request, "calendars", handler)

    async def calendar_get(self, request: Request) -> Response:
        calendar_id = request.path_params["calendar_id"]

        def handler(call: _Call) -> Response:
            calendar = self.world.google_calendar(call.account.id, calendar_id)
            if calendar is None:
                raise _not_found()
            return JSONResponse(_calendar_entry(calendar))

        return await self._api(request, "calendars", handler)

    # -- Calendar API: events -----------------------------------------------------------------------

    def _calendar(self, call: _Call) -> SandboxCalendar:
        calendar = self.world.google_calendar(call.account.id, call.request.path_params["calendar_id"])
        if calendar is None:
            raise _not_found()
        return calendar

    @staticmethod
    def _require_writer(calendar: SandboxCalendar) -> None:
        if calendar.access_role not in WRITER_ROLES:
            raise _Reject(
                google_error(403, "You need to have writer access to this calendar.", "requiredAccessLevel")
            )

    async def events_collection(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._api(request, "events", self._insert_event)
        endpoint = "changes" if "syncToken" in request.query_params else "events"
        return await self._api(request, endpoint, self._list_events)

    async def event_item(self, request: Request) -> Response:
        handlers: dict[str, _Handler] = {
            "GET": self._get_event,
            "PATCH": self._patch_event,
            "PUT": self._put_event,
            "DELETE": self._delete_event,
        }
        return await self._api(request, "events", handlers[request.method])

    def _list_events(self, call: _Call) -> Response:
        calendar = self._calendar(call)
        query = call.request.query_params
        sync_token = query.get("syncToken")
        single_events = query.get("singleEvents") == "true"
        order_by = query.get("orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise _bad_request("Invalid value for orderBy.")
        if order_by == "startTime" and not single_events:
            raise _bad_request("The requested ordering is not available for the particular query.")
        filters = ("timeMin", "timeMax", "orderBy", "privateExtendedProperty", "updatedMin", "q", "iCalUID")
        if sync_token is not None and any(name in query for name in filters):
            raise _bad_request("Sync token cannot be combined with these query parameters.")
        appointment_ids: set[str] = set()
        for pair in query.getlist("privateExtendedProperty"):
            key, sep, value = pair.partition("=")
            if not sep:
                raise _bad_request("Invalid value for privateExtendedProperty.")
            appointment_ids.add(value if key == APPOINTMENT_PROPERTY else "\0no-such-property")
        if len(appointment_ids) > 1:
            return JSONResponse(self._events_page(calendar, [], None, 0, 0, self.world.current_version()))
        offset, size = _paging(call.request, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        snapshot = self.world.current_version()
        if "pageToken" in query:
            page_state = _decode_token(_PAGE_PREFIX, query["pageToken"]) or {}
            snapshot = int(page_state.get("v", snapshot))
        since: int | None = None
        if sync_token is not None:
            state = _decode_token(_SYNC_PREFIX, sync_token)
            if (
                state is None
                or state.get("c") != calendar.pk
                or not isinstance(state.get("v"), int)
                or state["v"] > self.world.current_version()
            ):
                raise _Reject(self._sync_token_gone())
            since = int(state["v"])
        rows = self.world.google_events(
            calendar.pk,
            time_min=_parse_time_param("timeMin", query.get("timeMin")),
            time_max=_parse_time_param("timeMax", query.get("timeMax")),
            appointment_id=next(iter(appointment_ids)) if appointment_ids else None,
            include_cancelled=since is not None or query.get("showDeleted") == "true",
            since_version=since,
            order_by_start=order_by == "startTime",
        )
        if order_by == "updated":
            rows.sort(key=lambda row: (row.updated, row.pk))
        # A stable listing: what changed after the first page is left for the next incremental read.
        rows = [row for row in rows if row.version <= snapshot]
        return JSONResponse(self._events_page(calendar, rows, since, offset, size, snapshot))

    def _events_page(
        self,
        calendar: SandboxCalendar,
        rows: list[SandboxEvent],
        since: int | None,
        offset: int,
        size: int,
        snapshot: int,
    ) -> dict[str, Any]:
        page = rows[offset : offset + size]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{snapshot}"',
            "summary": calendar.name,
            "description": "",
            "updated": _rfc3339(max((row.updated for row in rows), default=self.clock())),
            "timeZone": calendar.time_zone,
            "accessRole": calendar.access_role,
            "defaultReminders": [],
            "items": [_event_resource(row, calendar, in_list=True) for row in page],
        }
        if offset + size < len(rows):
            body["nextPageToken"] = _encode_token(_PAGE_PREFIX, {"o": offset + size, "v": snapshot})
        else:
            body["nextSyncToken"] = _encode_token(_SYNC_PREFIX, {"c": calendar.pk, "v": snapshot})
        return body

    def _get_event(self, call: _Call) -> Response:
        calendar = self._calendar(call)
        event = self.world.google_event(calendar.pk, call.request.path_params["event_id"])
        if event is None:
            raise _not_found()
        return JSONResponse(_event_resource(event, calendar, in_list=False))

    def _insert_event(self, call: _Call) -> Response:
        calendar = self._calendar(call)
        self._require_writer(calendar)
        body = call.body or {}
        start, zone = _parse_event_time(body.get("start"), "start", calendar.time_zone)
        end, _ = _parse_event_time(body.get("end"), "end", calendar.time_zone)
        if end < start:
            raise _bad_request("The specified time range is empty.", "timeRangeEmpty")
        event_id = body.get("id")
        if event_id is not None:
            if (
                not isinstance(event_id, str)
                or not (5 <= len(event_id) <= 1024)
                or (set(event_id) - _EVENT_ID_ALPHABET)
            ):
                raise _bad_request("Invalid resource id value.", "invalid")
            if self.world.google_event(calendar.pk, event_id) is not None:
                raise _Reject(google_error(409, "The requested identifier already exists.", "duplicate"))
        private = _private_properties(body) or {}
        appointment_id = private.get(APPOINTMENT_PROPERTY)
        status = body.get("status", "confirmed")
        if status not in ("confirmed", "tentative"):
            raise _bad_request("Invalid value for status.")
        event = self.world.google_add_event(
            calendar.pk,
            title=_text_field(body, "summary"),
            description=_text_field(body, "description"),
            start=start,
            end=end,
            time_zone=zone,
            appointment_id=str(appointment_id) if appointment_id is not None else None,
            event_id=event_id,
            status=status,
            now=self.clock(),
        )
        return JSONResponse(_event_resource(event, calendar, in_list=False))

    def _event_changes(
        self, body: dict[str, Any], calendar: SandboxCalendar, *, replace: bool
    ) -> dict[str, Any]:
        """The world columns a PATCH (merge) or PUT (replace) body sets."""
        changes: dict[str, Any] = {}
        for field, column in (("summary", "title"), ("description", "description")):
            if replace or field in body:
                changes[column] = _text_field(body, field)
        if replace or "start" in body:
            changes["start"], changes["time_zone"] = _parse_event_time(
                body.get("start"), "start", calendar.time_zone
            )
        if replace or "end" in body:
            changes["end"], _ = _parse_event_time(body.get("end"), "end", calendar.time_zone)
        if "status" in body:
            if body["status"] not in ("confirmed", "tentative", "cancelled"):
                raise _bad_request("Invalid value for status.")
            changes["status"] = body["status"]
        private = _private_properties(body)
        if private is not None and (replace or APPOINTMENT_PROPERTY in private):
            value = private.get(APPOINTMENT_PROPERTY)
            changes["appointment_id"] = str(value) if value is not None else None
        elif replace:
            changes["appointment_id"] = None
        return changes

    def _writable_event(self, call: _Call) -> tuple[SandboxCalendar, SandboxEvent]:
        """The calendar and the event a write names; 403 without write access, 404 when absent."""
        calendar = self._calendar(call)
        self._require_writer(calendar)
        existing = self.world.google_event(calendar.pk, call.request.path_params["event_id"])
        if existing is None:
            raise _not_found()
        return calendar, existing

    def _write_event(self, call: _Call, *, replace: bool) -> Response:
        calendar, existing = self._writable_event(call)
        event_id = existing.event_id
        changes = self._event_changes(call.body or {}, calendar, replace=replace)
        start, end = changes.get("start", existing.start), changes.get("end", existing.end)
        if end < start:
            raise _bad_request("The specified time range is empty.", "timeRangeEmpty")
        event = self.world.google_update_event(calendar.pk, event_id, changes, self.clock())
        if event is None:
            raise _not_found()
        return JSONResponse(_event_resource(event, calendar, in_list=False))

    def _patch_event(self, call: _Call) -> Response:
        return self._write_event(call, replace=False)

    def _put_event(self, call: _Call) -> Response:
        return self._write_event(call, replace=True)

    def _delete_event(self, call: _Call) -> Response:
        calendar, existing = self._writable_event(call)
        event_id = existing.event_id
        if existing.status == "cancelled":
            raise _Reject(google_error(410, "Resource has been deleted", "deleted"))
        self.world.google_cancel_event(calendar.pk, event_id, self.clock())
        return Response(status_code=204)


def build_google_app(
    world: World, *, client_id: str, client_secret: str, clock: Callable[[], datetime]
) -> Starlette:
    """The emulator as an ASGI app (serve it with `BackgroundServer` or uvicorn)."""
    emulator = GoogleEmulator(world, client_id=client_id, client_secret=client_secret, clock=clock)
    return Starlette(routes=emulator.routes())


__all__ = ["GoogleEmulator", "build_google_app", "google_error", "oauth_error"]
