"""The Microsoft emulator's Graph subset under `/v1.0/`: `/me`, calendars, calendarView (window, `$filter`
on our extended property, `$expand`, `$top`/`$skip` paging), calendarView delta (`@odata.nextLink`/
`@odata.deltaLink`, `@removed`, 410 `syncStateNotFound`), event CRUD with `transactionId` de-duplication."""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import html
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from calsync.sandbox.microsoft_common import (
    APPOINTMENT_PROPERTY_ID,
    CALENDAR_VIEW_DEFAULT_TOP,
    CALENDAR_VIEW_MAX_TOP,
    DELTA_DEFAULT_PAGE_SIZE,
    MicrosoftBase,
    _b64url,
    _b64url_decode,
    _Exchange,
    _graph_error,
    _object_id,
    _Reply,
    _utc_stamp,
    _zone,
    base_url,
    sync_state_not_found,
)
from calsync.sandbox.world import SandboxAccount, SandboxCalendar, SandboxEvent


def _graph_time(value: datetime) -> str:
    """Graph's dateTime format: no offset, seven fractional digits."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def _parse_query_time(value: str | None, name: str) -> datetime:
    if not value:
        raise _Reply(
            _graph_error(
                400,
                "ErrorInvalidParameter",
                f"This request requires a time window specified by the query string parameters "
                f"StartDateTime and EndDateTime. '{name}' is missing.",
            )
        )
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Reply(
            _graph_error(
                400, "ErrorInvalidParameter", f"The value '{value}' of parameter '{name}' is invalid."
            )
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_date_time_zone(value: Any, field: str) -> tuple[datetime, str]:
    """A Graph dateTimeTimeZone object -> (aware UTC datetime, time zone name)."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise _Reply(
            _graph_error(400, "ErrorInvalidRequest", f"'{field}' must be a dateTimeTimeZone object.")
        )
    zone_name = str(value.get("timeZone") or "UTC")
    zone = _zone(zone_name)
    if zone is None:
        raise _Reply(
            _graph_error(
                400,
                "TimeZoneNotSupportedException",
                f"A valid TimeZone value must be specified. "
                f"The following TimeZone value is not supported: '{zone_name}'.",
            )
        )
    try:
        parsed = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
    except ValueError:
        raise _Reply(
            _graph_error(400, "ErrorInvalidRequest", f"Cannot convert the literal '{value['dateTime']}'.")
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC), zone_name


def _prefer(request: Request) -> dict[str, str]:
    """The `Prefer` header(s) as {name: value}, e.g. outlook.timezone -> "UTC"."""
    prefs: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                prefs[name.strip().lower()] = value.strip().strip('"')
    return prefs


def calendar_json(calendar: SandboxCalendar, account: SandboxAccount) -> dict[str, Any]:
    can_edit = calendar.access_role in ("owner", "writer")
    owner_address = calendar.owner_email or account.email
    return {
        "id": calendar.calendar_id,
        "name": calendar.name,
        "color": "auto",
        "hexColor": "",
        "isDefaultCalendar": calendar.primary,
        "changeKey": _b64url(hashlib.sha1(f"{calendar.pk}:{calendar.name}".encode()).digest()),
        "canShare": calendar.access_role == "owner",
        "canViewPrivateItems": calendar.access_role == "owner",
        "canEdit": can_edit,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"],
        "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": calendar.access_role == "owner",
        "isRemovable": not calendar.primary,
        "owner": {
            "name": account.display_name if owner_address == account.email else owner_address,
            "address": owner_address,
        },
    }


def event_json(event: SandboxEvent, request: Request, *, expand_property: bool) -> dict[str, Any]:
    prefs = _prefer(request)
    zone_name = prefs.get("outlook.timezone", "UTC")
    zone = _zone(zone_name) or ZoneInfo("UTC")
    if _zone(zone_name) is None:
        zone_name = "UTC"
    body_type = "text" if prefs.get("outlook.body-content-type", "html").lower() == "text" else "html"
    content = (
        event.description
        if body_type == "text"
        else '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
        f"<body>{html.escape(event.description)}</body></html>"
    )
    data: dict[str, Any] = {
        "@odata.etag": f'W/"{_b64url(str(event.version).encode())}"',
        "id": event.event_id,
        "createdDateTime": _utc_stamp(event.updated),
        "lastModifiedDateTime": _utc_stamp(event.updated),
        "changeKey": _b64url(str(event.version).encode()),
        "iCalUId": event.ical_uid,
        "subject": event.title,
        "bodyPreview": event.description[:255],
        "body": {"contentType": body_type, "content": content},
        "start": {"dateTime": _graph_time(event.start.astimezone(zone)), "timeZone": zone_name},
        "end": {"dateTime": _graph_time(event.end.astimezone(zone)), "timeZone": zone_name},
        "originalStartTimeZone": event.time_zone,
        "originalEndTimeZone": event.time_zone,
        "isAllDay": False,
        "isCancelled": False,
        "isOrganizer": True,
        "showAs": "busy",
        "type": "singleInstance",
        "transactionId": event.transaction_id,
    }
    if expand_property and event.appointment_id is not None:
        data["singleValueExtendedProperties"] = [
            {"id": APPOINTMENT_PROPERTY_ID, "value": event.appointment_id}
        ]
    return data


def wants_property(request: Request) -> bool:
    expand = request.query_params.get("$expand", "")
    return "singlevalueextendedproperties" in expand.lower() and _property_id_in(expand)


def _property_id_in(text: str) -> bool:
    return APPOINTMENT_PROPERTY_ID.lower() in text.lower()


_FILTER_PATTERN = re.compile(
    r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'(?P<id>[^']*)'\s+and\s+"
    r"\1/value\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*\)\s*$",
    re.IGNORECASE,
)


def appointment_filter(request: Request) -> str | None:
    raw = request.query_params.get("$filter")
    if raw is None:
        return None
    match = _FILTER_PATTERN.match(raw)
    if match is None or match.group("id").lower() != APPOINTMENT_PROPERTY_ID.lower():
        raise _Reply(
            _graph_error(
                400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
            )
        )
    return match.group("value").replace("''", "'")


def must_edit(calendar: SandboxCalendar) -> None:
    if calendar.access_role not in ("owner", "writer"):
        raise _Reply(
            _graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        )


def account_of(exchange: _Exchange) -> SandboxAccount:
    assert exchange.account is not None  # set by the Graph wrapper
    return exchange.account


def encode_state(state: dict[str, Any]) -> str:
    return _b64url(json.dumps(state, separators=(",", ":")).encode())


def decode_state(token: str, calendar: SandboxCalendar) -> dict[str, Any]:
    try:
        state = json.loads(_b64url_decode(token))
        if not isinstance(state, dict) or state.get("c") != calendar.pk:
            raise ValueError("not this calendar's state")
        datetime.fromisoformat(state["s"])
        datetime.fromisoformat(state["e"])
        int(state["v"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _Reply(sync_state_not_found()) from None
    return state


def event_fields(payload: Any, *, partial: bool) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _Reply(_graph_error(400, "BadRequest", "Empty Payload. JSON content expected."))
    fields: dict[str, Any] = {}
    if "subject" in payload:
        fields["title"] = str(payload.get("subject") or "")
    if "body" in payload:
        body = payload.get("body") or {}
        if not isinstance(body, dict):
            raise _Reply(_graph_error(400, "BadRequest", "'body' must be an itemBody object."))
        content = str(body.get("content") or "")
        if str(body.get("contentType", "text")).lower() == "html":
            content = html.unescape(re.sub(r"<[^>]+>", "", content))
        fields["description"] = content
    for key in ("start", "end"):
        if key in payload:
            fields[key], zone_name = _parse_date_time_zone(payload[key], key)
            if key == "start":
                fields["time_zone"] = zone_name
        elif not partial:
            raise _Reply(_graph_error(400, "ErrorInvalidRequest", f"'{key}' is required."))
    props = payload.get("singleValueExtendedProperties")
    if props is not None:
        if not isinstance(props, list):
            raise _Reply(_graph_error(400, "BadRequest", "singleValueExtendedProperties must be a list."))
        for prop in props:
            if isinstance(prop, dict) and str(prop.get("id", "")).lower() == APPOINTMENT_PROPERTY_ID.lower():
                fields["appointment_id"] = str(prop.get("value", ""))
    if "start" in fields and "end" in fields and fields["end"] < fields["start"]:
        raise _Reply(
            _graph_error(400, "ErrorInvalidRequest", "The end time of the event is before its start time.")
        )
    return fields


async def not_found(request: Request) -> Response:
    return _graph_error(400, "BadRequest", f"Resource not found for the segment '{request.url.path}'.")


class GraphApi(MicrosoftBase):
    """Graph's routes: the signed-in user, their calendars, calendar views and deltas, events."""

    async def calendar_or_404(self, account: SandboxAccount, calendar_id: str | None) -> SandboxCalendar:
        calendar = await self.db(self.world.ms_calendar, account.id, calendar_id)
        if calendar is None:
            raise _Reply(
                _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            )
        return calendar

    async def me(self, exchange: _Exchange) -> Response:
        account = account_of(exchange)
        base = base_url(exchange.request)
        given, _, surname = (account.display_name or "").partition(" ")
        return JSONResponse(
            {
                "@odata.context": f"{base}/v1.0/$metadata#users/$entity",
                "businessPhones": [],
                "displayName": account.display_name or account.email,
                "givenName": given or None,
                "surname": surname or None,
                "jobTitle": None,
                "mail": account.email,
                "mobilePhone": None,
                "officeLocation": None,
                "preferredLanguage": "en-US",
                "userPrincipalName": account.email,
                "id": _object_id(account.email),
            }
        )

    async def list_calendars(self, exchange: _Exchange) -> Response:
        account = account_of(exchange)
        calendars = await self.db(self.world.ms_calendars, account.id)
        base = base_url(exchange.request)
        return JSONResponse(
            {
                "@odata.context": f"{base}/v1.0/$metadata#users('{account.email}')/calendars",
                "value": [calendar_json(c, account) for c in calendars],
            }
        )

    async def get_calendar(self, exchange: _Exchange) -> Response:
        account = account_of(exchange)
        calendar = await self.calendar_or_404(account, exchange.request.path_params["calendar_id"])
        return JSONResponse(calendar_json(calendar, account))

    async def calendar_view(self, exchange: _Exchange) -> Response:
        request = exchange.request
        account = account_of(exchange)
        calendar = await self.calendar_or_404(account, request.path_params["calendar_id"])
        start = _parse_query_time(request.query_params.get("startDateTime"), "startDateTime")
        end = _parse_query_time(request.query_params.get("endDateTime"), "endDateTime")
        appointment_id = appointment_filter(request)
        try:
            top = min(int(request.query_params.get("$top", CALENDAR_VIEW_DEFAULT_TOP)), CALENDAR_VIEW_MAX_TOP)
            skip = int(request.query_params.get("$skip", 0))
        except ValueError:
            raise _Reply(_graph_error(400, "BadRequest", "Invalid $top or $skip value.")) from None
        if top <= 0 or skip < 0:
            raise _Reply(_graph_error(400, "BadRequest", "Invalid $top or $skip value."))
        events = await self.db(
            self.world.ms_events, calendar.pk, start=start, end=end, appointment_id=appointment_id
        )
        page = events[skip : skip + top]
        expand = wants_property(request)
        body: dict[str, Any] = {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{account.email}')/calendars"
            f"('{calendar.calendar_id}')/calendarView",
            "value": [event_json(e, request, expand_property=expand) for e in page],
        }
        if skip + top < len(events):
            query = dict(request.query_params)
            query.update({"$top": str(top), "$skip": str(skip + top)})
            body["@odata.nextLink"] = f"{base_url(request)}{request.url.path}?{urlencode(query)}"
        return JSONResponse(body)

    async def calendar_view_delta(self, exchange: _Exchange) -> Response:
        request = exchange.request
        account = account_of(exchange)
        calendar = await self.calendar_or_404(account, request.path_params["calendar_id"])
        delta_token = request.query_params.get("$deltatoken")
        skip_token = request.query_params.get("$skiptoken")
        if skip_token:
            state = decode_state(skip_token, calendar)
        elif delta_token:
            previous = decode_state(delta_token, calendar)
            state = {
                **previous,
                "since": previous["v"],
                "v": await self.db(self.world.current_version),
                "after": None,
            }
        else:
            start = _parse_query_time(request.query_params.get("startDateTime"), "startDateTime")
            end = _parse_query_time(request.query_params.get("endDateTime"), "endDateTime")
            state = {
                "c": calendar.pk,
                "s": start.isoformat(),
                "e": end.isoformat(),
                "v": await self.db(self.world.current_version),
                "since": None,
                "after": None,
            }
        start = datetime.fromisoformat(state["s"])
        end = datetime.fromisoformat(state["e"])
        since: int | None = state.get("since")
        page_size = DELTA_DEFAULT_PAGE_SIZE
        if "odata.maxpagesize" in _prefer(request):
            with contextlib.suppress(ValueError):
                page_size = max(1, int(_prefer(request)["odata.maxpagesize"]))
        if since is None:
            candidates = await self.db(
                self.world.ms_events,
                calendar.pk,
                start=start,
                end=end,
                after_version=-1,
                max_version=state["v"],
            )
        else:
            candidates = await self.db(
                self.world.ms_events,
                calendar.pk,
                include_cancelled=True,
                after_version=since,
                max_version=state["v"],
            )
        after = state.get("after")
        if after is not None:
            candidates = [e for e in candidates if (e.version, e.pk) > (after[0], after[1])]
        page = candidates[:page_size]
        value: list[dict[str, Any]] = []
        for event in page:
            live = event.status != "cancelled" and event.end > start and event.start < end
            if live:
                value.append(event_json(event, request, expand_property=wants_property(request)))
            else:
                value.append(
                    {
                        "@odata.type": "#microsoft.graph.event",
                        "id": event.event_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
        base = f"{base_url(request)}{request.url.path}"
        body: dict[str, Any] = {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#Collection(event)",
            "value": value,
        }
        if len(candidates) > page_size:
            last = page[-1]
            skip = encode_state({**state, "after": [last.version, last.pk]})
            body["@odata.nextLink"] = f"{base}?{urlencode({'$skiptoken': skip})}"
        else:
            done = {"c": calendar.pk, "s": state["s"], "e": state["e"], "v": state["v"]}
            body["@odata.deltaLink"] = f"{base}?{urlencode({'$deltatoken': encode_state(done)})}"
        return JSONResponse(body)

    async def create_event(self, exchange: _Exchange) -> Response:
        account = account_of(exchange)
        calendar = await self.calendar_or_404(account, exchange.request.path_params.get("calendar_id"))
        must_edit(calendar)
        fields = event_fields(exchange.json_body, partial=False)
        transaction_id = (
            exchange.json_body.get("transactionId") if isinstance(exchange.json_body, dict) else None
        )
        event, _created = await self.db(
            self.world.ms_insert_event,
            calendar.pk,
            title=fields.get("title", ""),
            description=fields.get("description", ""),
            start=fields["start"],
            end=fields["end"],
            time_zone=fields.get("time_zone", "UTC"),
            appointment_id=fields.get("appointment_id"),
            transaction_id=str(transaction_id) if transaction_id else None,
            now=self.clock(),
        )
        return JSONResponse(event_json(event, exchange.request, expand_property=False), status_code=201)

    async def find_event(self, exchange: _Exchange) -> tuple[SandboxCalendar, SandboxEvent]:
        account = account_of(exchange)
        params = exchange.request.path_params
        found = await self.db(
            self.world.ms_find_event, account.id, params["event_id"], params.get("calendar_id")
        )
        if found is None:
            raise _Reply(
                _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            )
        return found

    async def event_item(self, exchange: _Exchange) -> Response:
        calendar, event = await self.find_event(exchange)
        method = exchange.request.method
        if method == "GET":
            return JSONResponse(
                event_json(event, exchange.request, expand_property=wants_property(exchange.request))
            )
        must_edit(calendar)
        if method == "DELETE":
            await self.db(self.world.ms_delete_event, event.pk, self.clock())
            return Response(status_code=204)
        fields = event_fields(exchange.json_body, partial=True)
        new_start = fields.get("start", event.start)
        new_end = fields.get("end", event.end)
        if new_end < new_start:
            raise _Reply(
                _graph_error(
                    400, "ErrorInvalidRequest", "The end time of the event is before its start time."
                )
            )
        updated = await self.db(self.world.ms_update_event, event.pk, fields, self.clock())
        return JSONResponse(event_json(updated, exchange.request, expand_property=False))
