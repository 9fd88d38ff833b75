"""A local emulator of the Microsoft identity platform (Entra ID v2.0 endpoints) and a Microsoft Graph subset.

One ASGI app, one base URL, served over TLS (msal refuses any non-https authority):

- identity platform under `/{tenant}/`: OpenID configuration, a minimal no-JS consent page, and the
  token endpoint (authorization_code with PKCE, refresh_token with rotation), answering errors the
  way Entra ID does (`error`, `error_description` with the AADSTS text, `error_codes`, `suberror`, ...);
- Graph under `/v1.0/`: `/me`, calendars, calendarView (window, `$filter` on our extended property,
  `$expand`, `$top`/`$skip` paging), calendarView delta (`@odata.nextLink`/`@odata.deltaLink`,
  `@removed`, 410 `syncStateNotFound`), event CRUD with `transactionId` de-duplication.

Faults from the world (`World.take_faults("microsoft", endpoint, email)`) are applied per request,
and every request is recorded (`World.record_request`) with secrets redacted. All world access is
synchronous SQLAlchemy and runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import html
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote_plus, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from calsync.sandbox.emulator_common import record
from calsync.sandbox.faults import hang, lose_response, lost_response_wait, short_list
from calsync.sandbox.world import (
    FaultHit,
    SandboxAccount,
    SandboxCalendar,
    SandboxEvent,
    World,
)

PROVIDER = "microsoft"
# The extended property calsync stamps on the events it writes (a MAPI named string property).
APPOINTMENT_PROPERTY_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name calsyncAppointmentId"
SANDBOX_TENANT_ID = "7c3f3b4e-5b1a-4c7e-9d0e-5a4d8b2c1f00"
GRAPH_RESOURCE = "https://graph.microsoft.com/"
ACCESS_TOKEN_LIFETIME = timedelta(seconds=3599)
AUTH_CODE_LIFETIME = timedelta(minutes=10)
DEFAULT_HANG_SECONDS = 60.0
CALENDAR_VIEW_DEFAULT_TOP = 10
CALENDAR_VIEW_MAX_TOP = 1000
DELTA_DEFAULT_PAGE_SIZE = 10
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})

# Entra ID error texts for the AADSTS codes the sandbox can produce: (error, suberror, description).
AADSTS_ERRORS: dict[int, tuple[str, str, str]] = {
    50173: (
        "invalid_grant",
        "bad_token",
        "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is "
        "needed. The user might have changed or reset their password. The grant was issued on "
        "'{issued}' and the TokensValidFrom date (before which tokens are not valid) for this user "
        "is '{now}'.",
    ),
    70008: (
        "invalid_grant",
        "",
        "AADSTS70008: The provided authorization code or refresh token has expired due to "
        "inactivity. Send a new interactive authorization request for this user and resource.",
    ),
    700082: (
        "invalid_grant",
        "",
        "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on "
        "{issued} and was inactive for 90.00:00:00.",
    ),
    65001: (
        "invalid_grant",
        "consent_required",
        "AADSTS65001: The user or administrator has not consented to use the application with ID "
        "'{client_id}' named 'calsync'. Send an interactive authorization request for this user "
        "and resource.",
    ),
    50076: (
        "interaction_required",
        "basic_action",
        "AADSTS50076: Due to a configuration change made by your administrator, or because you "
        "moved to a new location, you must use multi-factor authentication to access "
        "'00000003-0000-0000-c000-000000000000'.",
    ),
    50158: (
        "interaction_required",
        "additional_action",
        "AADSTS50158: External security challenge not satisfied. User will be redirected to another "
        "page or authentication provider to satisfy additional authentication challenges.",
    ),
    50034: (
        "invalid_grant",
        "",
        "AADSTS50034: The user account {{EmailHidden}} does not exist in the "
        "'{tenant}' directory. To sign into this application, the account must be added to "
        "the directory.",
    ),
    70000: (
        "invalid_grant",
        "",
        "AADSTS70000: The provided value for the 'refresh_token' is not valid. The refresh token "
        "is malformed or not valid.",
    ),
}

T = TypeVar("T")


class _Reply(Exception):
    """Raised inside a handler to answer at once with `response`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass
class _Exchange:
    """What one request carried, for the handler and for the request log."""

    request: Request
    raw_body: bytes
    form: dict[str, str]
    json_body: Any
    account: SandboxAccount | None = None


# -- helpers --------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _graph_time(value: datetime) -> str:
    """Graph's dateTime format: no offset, seven fractional digits."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def _utc_stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _object_id(email: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"sandbox-user.{email}"))


def _zone(name: str) -> ZoneInfo | None:
    if name.upper() in ("UTC", "GMT", "Z", "COORDINATED UNIVERSAL TIME"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


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


def _inner_error(now: datetime) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    return {"date": _utc_stamp(now).split(".")[0], "request-id": request_id, "client-request-id": request_id}


def _graph_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    now = datetime.now(UTC)
    body = {"error": {"code": code, "message": message, "innerError": _inner_error(now)}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _identity_error(
    status: int, error: str, description: str, codes: list[int], *, suberror: str = "", now: datetime
) -> JSONResponse:
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    full = f"{description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: "
    full += now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body: dict[str, Any] = {
        "error": error,
        "error_description": full,
        "error_codes": codes,
        "timestamp": now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={codes[0]}" if codes else "",
    }
    if suberror:
        body["suberror"] = suberror
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store, no-cache"})


def aadsts_error(
    code: int, *, now: datetime, client_id: str, suberror: str | None = None, description: str = ""
) -> JSONResponse:
    """The token endpoint's answer for one AADSTS code (a 400, as Entra ID answers)."""
    error, default_suberror, template = AADSTS_ERRORS.get(
        code, ("invalid_grant", "", f"AADSTS{code}: The refresh token is no longer valid.")
    )
    text = description or template.format(
        issued=(now - timedelta(days=97)).strftime("%m/%d/%Y %H:%M:%S"),
        now=now.strftime("%m/%d/%Y %H:%M:%S"),
        client_id=client_id,
        tenant=SANDBOX_TENANT_ID,
    )
    if not text.startswith("AADSTS"):
        text = f"AADSTS{code}: {text}"
    return _identity_error(
        400, error, text, [code], suberror=default_suberror if suberror is None else suberror, now=now
    )


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    header = {"typ": "JWT", "alg": "none"}
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(claims, separators=(",", ":")).encode()),
            "",
        ]
    )


# -- the app --------------------------------------------------------------------------------------


def build_microsoft_app(
    world: World, *, client_id: str, client_secret: str, clock: Callable[[], datetime]
) -> Starlette:
    """The identity platform + Graph emulator as one Starlette app (serve it over TLS)."""
    # OpenID nonces by authorization code, until the code is redeemed (codes live minutes; the consent
    # page and the token endpoint are this same server, so memory is enough).
    nonces: dict[str, str] = {}

    async def db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Starlette's thread pool (40 threads, as the Google emulator uses), not asyncio's default
        # one (min(32, CPUs + 4): 6 on two cores, too few for requests waiting on the database).
        return await run_in_threadpool(fn, *args, **kwargs)

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # -- request plumbing ------------------------------------------------------------------------

    async def read(request: Request) -> _Exchange:
        raw = await request.body()
        form: dict[str, str] = {}
        json_body: Any = None
        content_type = request.headers.get("content-type", "")
        if raw and content_type.startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        elif raw:
            try:
                json_body = json.loads(raw)
            except ValueError:
                json_body = None
        return _Exchange(request=request, raw_body=raw, form=form, json_body=json_body)

    async def log(exchange: _Exchange, status: int, started: float) -> None:
        body: dict[str, Any] | None = None
        if exchange.form:
            body = exchange.form
        elif isinstance(exchange.json_body, dict):
            body = exchange.json_body
        await record(
            world,
            provider=PROVIDER,
            request=exchange.request,
            status=status,
            account_email=exchange.account.email if exchange.account else None,
            clock=clock,
            started=started,
            body=body,
        )

    async def apply_faults(
        exchange: _Exchange, hits: list[FaultHit], *, identity: bool, endpoint: str
    ) -> Response | None:
        """Apply the faults of one request in order; the first one that answers wins."""
        for hit in hits:
            params = hit.params
            if hit.kind == "latency":
                await asyncio.sleep(float(params.get("seconds", 0.0)))
            elif hit.kind == "hang":
                await hang(exchange.request, float(params.get("seconds", DEFAULT_HANG_SECONDS)))
                return _graph_error(504, "GatewayTimeout", "The request timed out.")
            elif hit.kind == "rate_limit":
                retry_after = str(int(float(params.get("retry_after", 1))))
                if identity:
                    throttled = _identity_error(
                        429,
                        "temporarily_unavailable",
                        "AADSTS50196: The server terminated an operation because it encountered a client "
                        "request loop. Please contact your app vendor.",
                        [50196],
                        now=clock(),
                    )
                    throttled.headers["Retry-After"] = retry_after
                    return throttled
                return _graph_error(
                    429,
                    "TooManyRequests",
                    "Application is over its MailboxConcurrency limit."
                    if params.get("concurrency")
                    else "The request has been throttled. ApplicationThrottled",
                    headers={"Retry-After": retry_after},
                )
            elif hit.kind == "unavailable":
                status = int(params.get("status", 503))
                if identity:
                    return HTMLResponse(
                        "<html><body><h1>Service Unavailable</h1></body></html>", status_code=status
                    )
                code = "ServiceNotAvailable" if status != 504 else "GatewayTimeout"
                return _graph_error(
                    status, code, "The service is temporarily unavailable. Please retry later."
                )
            elif hit.kind == "malformed":
                return Response(
                    b'{"value": [{"id": "AAMk", "subject": "trunc',
                    status_code=200,
                    media_type="application/json",
                )
            elif hit.kind == "invalid_grant" and identity:
                return aadsts_error(
                    int(params.get("aadsts", 70008)),
                    now=clock(),
                    client_id=client_id,
                    suberror=params.get("suberror"),
                    description=str(params.get("description", "")),
                )
            elif (
                hit.kind == "sync_token_expired"
                and endpoint == "changes"
                and exchange.request.query_params.get("$deltatoken")
            ):
                return sync_state_not_found()
        return None

    def sync_state_not_found() -> JSONResponse:
        return _graph_error(
            410,
            "syncStateNotFound",
            "The sync state generation is not found or has expired. Please do a full resync.",
        )

    def handler(
        fn: Callable[[_Exchange], Awaitable[Response]], *, identity: bool = False, endpoint: str = ""
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a route: read the body, authenticate (Graph), apply faults, answer, record."""

        async def endpoint_fn(request: Request) -> Response:
            started = time.monotonic()
            exchange = await read(request)
            hits: list[FaultHit] = []
            try:
                if not identity:
                    exchange.account = await authenticate(request)
                    hits = await db(world.take_faults, PROVIDER, endpoint, exchange.account.email)
                    faulted = await apply_faults(exchange, hits, identity=False, endpoint=endpoint)
                    if faulted is not None:
                        raise _Reply(faulted)
                response = short_list(hits, await fn(exchange), "value")
                lost = None if identity else lose_response(hits, response.status_code)
                if lost is not None:
                    await hang(exchange.request, lost_response_wait(hits))
                    response = _graph_error(
                        lost, "ServiceUnavailable", "The service is temporarily unavailable."
                    )
            except _Reply as reply:
                response = reply.response
            except Exception as exc:  # an emulator bug: answer like Graph would, and keep the log whole
                response = _graph_error(500, "generalException", f"Sandbox error: {type(exc).__name__}")
            await log(exchange, response.status_code, started)
            return response

        return endpoint_fn

    async def authenticate(request: Request) -> SandboxAccount:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not token or scheme.lower() != "bearer":
            raise _Reply(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token is empty.",
                    headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
                )
            )
        account = await db(world.account_for_access_token, token.strip(), clock())
        if account is None or account.provider != PROVIDER:
            raise _Reply(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                    headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
                )
            )
        return account

    # -- identity platform -----------------------------------------------------------------------

    async def openid_configuration(exchange: _Exchange) -> Response:
        base = base_url(exchange.request)
        tenant = exchange.request.path_params["tenant"]
        issuer_tenant = "{tenantid}" if tenant in ("common", "organizations", "consumers") else tenant
        return JSONResponse(
            {
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/{issuer_tenant}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base}/oidc/userinfo",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "cloud_instance_name",
                    "cloud_instance_host_name",
                    "cloud_graph_host_name",
                    "msgraph_host",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "acr",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "at_hash",
                    "c_hash",
                    "email",
                ],
                "kerberos_endpoint": f"{base}/{tenant}/kerberos",
                "tenant_region_scope": None,
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": exchange.request.url.netloc,
                "rbac_url": "https://pas.windows.net",
            }
        )

    def consent_error_page(message: str, status: int = 400) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><html><head><title>Sign in to your account</title></head><body>"
            f"<h1>Sorry, but we're having trouble signing you in.</h1><p>{html.escape(message)}</p>"
            "</body></html>",
            status_code=status,
        )

    def redirect_with(redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + separator + urlencode(params), status_code=302)

    def check_authorize_params(params: Mapping[str, str]) -> None:
        if params.get("client_id") != client_id:
            raise _Reply(
                consent_error_page(
                    f"AADSTS700016: Application with identifier '{params.get('client_id', '')}' was not "
                    "found in the directory 'calsync sandbox'."
                )
            )
        redirect_uri = params.get("redirect_uri", "")
        if not re.match(r"^(https://|http://(localhost|127\.0\.0\.1)(:\d+)?/)", redirect_uri):
            raise _Reply(
                consent_error_page(
                    "AADSTS50011: The redirect URI specified in the request does not match the redirect "
                    "URIs configured for the application."
                )
            )
        if params.get("response_type") != "code":
            raise _Reply(
                redirect_with(
                    redirect_uri,
                    {
                        "error": "unsupported_response_type",
                        "error_description": "AADSTS700054: response_type 'code' is expected.",
                        "state": params.get("state", ""),
                    },
                )
            )
        if params.get("code_challenge") and params.get("code_challenge_method", "plain") != "S256":
            raise _Reply(
                redirect_with(
                    redirect_uri,
                    {
                        "error": "invalid_request",
                        "error_description": "AADSTS501491: Invalid size of Code_Challenge parameter "
                        "or unsupported code_challenge_method; use S256.",
                        "state": params.get("state", ""),
                    },
                )
            )

    async def issue_code(params: Mapping[str, str], account: SandboxAccount) -> RedirectResponse:
        code = await db(
            world.create_auth_code,
            account.id,
            prefix="M.",
            client_id=params.get("client_id", ""),
            redirect_uri=params.get("redirect_uri", ""),
            scopes=params.get("scope", ""),
            code_challenge=params.get("code_challenge", ""),
            code_challenge_method=params.get("code_challenge_method", "")
            if params.get("code_challenge")
            else "",
            expires_at=clock() + AUTH_CODE_LIFETIME,
        )
        if params.get("nonce"):  # OpenID Connect: echoed in the id_token of this code's exchange
            nonces[code] = params["nonce"]
        out = {"code": code, "state": params.get("state", ""), "session_state": str(uuid.uuid4())}
        return redirect_with(params.get("redirect_uri", ""), out)

    async def authorize(exchange: _Exchange) -> Response:
        params = dict(exchange.request.query_params)
        check_authorize_params(params)
        accounts = await db(world.ms_accounts)
        login_hint = params.get("login_hint", "").lower()
        if params.get("prompt") == "none":
            match = next((a for a in accounts if a.email == login_hint), None)
            if match is None:
                return redirect_with(
                    params["redirect_uri"],
                    {
                        "error": "login_required",
                        "error_description": "AADSTS50058: A silent sign-in request was sent but no "
                        "user is signed in.",
                        "state": params.get("state", ""),
                    },
                )
            return await issue_code(params, match)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(params.get(key, ""))}">'
            for key in (
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "code_challenge",
                "code_challenge_method",
                "nonce",
            )
        )
        decision_url = (
            f"/{html.escape(exchange.request.path_params['tenant'])}/oauth2/v2.0/authorize/decision"
        )
        options = "".join(
            f'<li><label><input type="radio" name="account" value="{html.escape(a.email)}"'
            f"{' checked' if a.email == login_hint or (not login_hint and i == 0) else ''}> "
            f"{html.escape(a.display_name or a.email)} &lt;{html.escape(a.email)}&gt;</label></li>"
            for i, a in enumerate(accounts)
        )
        scopes = "".join(f"<li>{html.escape(s)}</li>" for s in params.get("scope", "").split() if s)
        page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Permissions requested - Microsoft (sandbox)</title></head><body>"
            "<h1>Permissions requested</h1>"
            f"<p>The app <strong>calsync</strong> (<code>{html.escape(client_id)}</code>) would like to:</p>"
            f"<ul id='scopes'>{scopes}</ul>"
            f"<form method='post' action='{decision_url}' id='allow-form'>{hidden}"
            f"<fieldset><legend>Sign in as</legend><ul id='accounts'>{options or '<li>No accounts</li>'}</ul>"
            "</fieldset>"
            "<button type='submit' name='decision' value='allow' id='allow'>Accept</button>"
            "</form>"
            f"<form method='post' action='{decision_url}' id='deny-form'>{hidden}"
            "<button type='submit' name='decision' value='deny' id='deny'>Cancel</button>"
            "</form></body></html>"
        )
        return HTMLResponse(page)

    async def authorize_decision(exchange: _Exchange) -> Response:
        params = exchange.form
        check_authorize_params({**params, "response_type": "code"})
        if params.get("decision") != "allow":
            return redirect_with(
                params["redirect_uri"],
                {
                    "error": "access_denied",
                    "error_description": "AADSTS65004: User declined to consent to access the app.",
                    "state": params.get("state", ""),
                },
            )
        accounts = await db(world.ms_accounts)
        account = next((a for a in accounts if a.email == params.get("account", "").lower()), None)
        if account is None:
            return consent_error_page(
                "AADSTS50034: The user account does not exist in the directory.", status=400
            )
        exchange.account = account
        return await issue_code(params, account)

    def client_credentials(exchange: _Exchange) -> tuple[str, str]:
        header = exchange.request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ":"
            user, _, password = decoded.partition(":")
            return unquote_plus(user), unquote_plus(password)
        return exchange.form.get("client_id", ""), exchange.form.get("client_secret", "")

    def token_success(
        account: SandboxAccount,
        access_token: str,
        refresh_token: str,
        scopes: str,
        tenant: str,
        base: str,
        nonce: str | None = None,
    ) -> JSONResponse:
        now = clock()
        oid = _object_id(account.email)
        tenant_id = SANDBOX_TENANT_ID
        granted = []
        for scope in scopes.split():
            if scope in OIDC_SCOPES:
                continue
            granted.append(scope if "://" in scope else GRAPH_RESOURCE + scope)
        granted += ["openid", "profile", "email"]
        issued_at = int(now.timestamp())
        id_token = _unsigned_jwt(
            {
                "aud": client_id,
                "iss": f"{base}/{tenant_id}/v2.0",
                "iat": issued_at,
                "nbf": issued_at,
                "exp": issued_at + 3600,
                "name": account.display_name or account.email,
                "oid": oid,
                "preferred_username": account.email,
                "email": account.email,
                "sub": _b64url(hashlib.sha256(f"{oid}:{client_id}".encode()).digest()[:24]),
                "tid": tenant_id,
                "ver": "2.0",
                **({"nonce": nonce} if nonce else {}),
            }
        )
        lifetime = int(ACCESS_TOKEN_LIFETIME.total_seconds())
        return JSONResponse(
            {
                "token_type": "Bearer",
                "scope": " ".join(granted),
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access_token,
                "refresh_token": refresh_token,
                "id_token": id_token,
                "client_info": _b64url(json.dumps({"uid": oid, "utid": tenant_id}).encode()),
            },
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    async def token(exchange: _Exchange) -> Response:
        form = exchange.form
        now = clock()
        tenant = exchange.request.path_params["tenant"]
        base = base_url(exchange.request)
        grant_type = form.get("grant_type", "")
        found_client, found_secret = client_credentials(exchange)

        # Who is this about? (for faults and the request log)
        grant_row = None
        code_row = None
        if grant_type == "refresh_token" and form.get("refresh_token"):
            grant_row = await db(world.grant_by_refresh_token, form["refresh_token"])
            if grant_row is not None and grant_row[1].provider == PROVIDER:
                exchange.account = grant_row[1]
            else:
                grant_row = None
        elif grant_type == "authorization_code" and form.get("code"):
            code_row = await db(world.ms_take_auth_code, form["code"])
            if code_row is not None:
                exchange.account = code_row[1]

        hits = await db(
            world.take_faults, PROVIDER, "token", exchange.account.email if exchange.account else None
        )
        faulted = await apply_faults(exchange, hits, identity=True, endpoint="token")
        if faulted is not None:
            return faulted

        if found_client != client_id:
            return _identity_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{found_client}' was not found in the "
                "directory 'calsync sandbox'.",
                [700016],
                now=now,
            )
        if not secrets.compare_digest(found_secret.encode(), client_secret.encode()):
            return _identity_error(
                401,
                "invalid_client",
                f"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
                f"request is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
                [7000215],
                now=now,
            )

        if grant_type == "refresh_token":
            if grant_row is None:
                return aadsts_error(70000, now=now, client_id=client_id)
            grant, account = grant_row
            if grant.status != "valid":
                return aadsts_error(
                    grant.aadsts or 50173,
                    now=now,
                    client_id=client_id,
                    suberror=grant.suberror or None,
                    description=grant.error_description,
                )
            new_refresh = await db(world.ms_rotate_refresh_token, grant.id)
            access = await db(world.issue_access_token, grant.id, now, ACCESS_TOKEN_LIFETIME)
            return token_success(
                account, access.token, new_refresh, form.get("scope", grant.scopes), tenant, base
            )

        if grant_type == "authorization_code":
            if code_row is None:
                return _identity_error(
                    400,
                    "invalid_grant",
                    "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a "
                    "new valid code or use an existing refresh token.",
                    [54005],
                    now=now,
                )
            code, account = code_row
            if code.expires_at <= now:
                return aadsts_error(70008, now=now, client_id=client_id)
            if code.client_id != client_id:
                return _identity_error(
                    400,
                    "invalid_grant",
                    "AADSTS70000: The code was issued to another client.",
                    [70000],
                    now=now,
                )
            if form.get("redirect_uri", "") != code.redirect_uri:
                return _identity_error(
                    400,
                    "invalid_grant",
                    "AADSTS50011: The redirect URI specified in the request does not match the redirect "
                    "URI used to obtain the authorization code.",
                    [50011],
                    now=now,
                )
            if code.code_challenge:
                verifier = form.get("code_verifier", "")
                expected = _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
                if not verifier or not secrets.compare_digest(expected, code.code_challenge):
                    return _identity_error(
                        400,
                        "invalid_grant",
                        "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in "
                        "the authorization request.",
                        [501481],
                        now=now,
                    )
            scopes = form.get("scope") or code.scopes
            grant = await db(world.issue_grant, account.id, scopes)
            access = await db(world.issue_access_token, grant.id, now, ACCESS_TOKEN_LIFETIME)
            nonce = nonces.pop(code.code, None)
            return token_success(account, access.token, grant.refresh_token, scopes, tenant, base, nonce)

        return _identity_error(
            400,
            "unsupported_grant_type",
            f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'.",
            [70003],
            now=now,
        )

    # -- Graph -----------------------------------------------------------------------------------

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

    filter_pattern = re.compile(
        r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'(?P<id>[^']*)'\s+and\s+"
        r"\1/value\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*\)\s*$",
        re.IGNORECASE,
    )

    def appointment_filter(request: Request) -> str | None:
        raw = request.query_params.get("$filter")
        if raw is None:
            return None
        match = filter_pattern.match(raw)
        if match is None or match.group("id").lower() != APPOINTMENT_PROPERTY_ID.lower():
            raise _Reply(
                _graph_error(
                    400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
                )
            )
        return match.group("value").replace("''", "'")

    async def calendar_or_404(account: SandboxAccount, calendar_id: str | None) -> SandboxCalendar:
        calendar = await db(world.ms_calendar, account.id, calendar_id)
        if calendar is None:
            raise _Reply(
                _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            )
        return calendar

    def must_edit(calendar: SandboxCalendar) -> None:
        if calendar.access_role not in ("owner", "writer"):
            raise _Reply(
                _graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            )

    def account_of(exchange: _Exchange) -> SandboxAccount:
        assert exchange.account is not None  # set by the Graph wrapper
        return exchange.account

    async def me(exchange: _Exchange) -> Response:
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

    async def list_calendars(exchange: _Exchange) -> Response:
        account = account_of(exchange)
        calendars = await db(world.ms_calendars, account.id)
        base = base_url(exchange.request)
        return JSONResponse(
            {
                "@odata.context": f"{base}/v1.0/$metadata#users('{account.email}')/calendars",
                "value": [calendar_json(c, account) for c in calendars],
            }
        )

    async def get_calendar(exchange: _Exchange) -> Response:
        account = account_of(exchange)
        calendar = await calendar_or_404(account, exchange.request.path_params["calendar_id"])
        return JSONResponse(calendar_json(calendar, account))

    async def calendar_view(exchange: _Exchange) -> Response:
        request = exchange.request
        account = account_of(exchange)
        calendar = await calendar_or_404(account, request.path_params["calendar_id"])
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
        events = await db(world.ms_events, calendar.pk, start=start, end=end, appointment_id=appointment_id)
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

    async def calendar_view_delta(exchange: _Exchange) -> Response:
        request = exchange.request
        account = account_of(exchange)
        calendar = await calendar_or_404(account, request.path_params["calendar_id"])
        delta_token = request.query_params.get("$deltatoken")
        skip_token = request.query_params.get("$skiptoken")
        if skip_token:
            state = decode_state(skip_token, calendar)
        elif delta_token:
            previous = decode_state(delta_token, calendar)
            state = {**previous, "since": previous["v"], "v": await db(world.current_version), "after": None}
        else:
            start = _parse_query_time(request.query_params.get("startDateTime"), "startDateTime")
            end = _parse_query_time(request.query_params.get("endDateTime"), "endDateTime")
            state = {
                "c": calendar.pk,
                "s": start.isoformat(),
                "e": end.isoformat(),
                "v": await db(world.current_version),
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
            candidates = await db(
                world.ms_events, calendar.pk, start=start, end=end, after_version=-1, max_version=state["v"]
            )
        else:
            candidates = await db(
                world.ms_events,
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
                if (
                    isinstance(prop, dict)
                    and str(prop.get("id", "")).lower() == APPOINTMENT_PROPERTY_ID.lower()
                ):
                    fields["appointment_id"] = str(prop.get("value", ""))
        if "start" in fields and "end" in fields and fields["end"] < fields["start"]:
            raise _Reply(
                _graph_error(
                    400, "ErrorInvalidRequest", "The end time of the event is before its start time."
                )
            )
        return fields

    async def create_event(exchange: _Exchange) -> Response:
        account = account_of(exchange)
        calendar = await calendar_or_404(account, exchange.request.path_params.get("calendar_id"))
        must_edit(calendar)
        fields = event_fields(exchange.json_body, partial=False)
        transaction_id = (
            exchange.json_body.get("transactionId") if isinstance(exchange.json_body, dict) else None
        )
        event, _created = await db(
            world.ms_insert_event,
            calendar.pk,
            title=fields.get("title", ""),
            description=fields.get("description", ""),
            start=fields["start"],
            end=fields["end"],
            time_zone=fields.get("time_zone", "UTC"),
            appointment_id=fields.get("appointment_id"),
            transaction_id=str(transaction_id) if transaction_id else None,
            now=clock(),
        )
        return JSONResponse(event_json(event, exchange.request, expand_property=False), status_code=201)

    async def find_event(exchange: _Exchange) -> tuple[SandboxCalendar, SandboxEvent]:
        account = account_of(exchange)
        params = exchange.request.path_params
        found = await db(world.ms_find_event, account.id, params["event_id"], params.get("calendar_id"))
        if found is None:
            raise _Reply(
                _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            )
        return found

    async def event_item(exchange: _Exchange) -> Response:
        calendar, event = await find_event(exchange)
        method = exchange.request.method
        if method == "GET":
            return JSONResponse(
                event_json(event, exchange.request, expand_property=wants_property(exchange.request))
            )
        must_edit(calendar)
        if method == "DELETE":
            await db(world.ms_delete_event, event.pk, clock())
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
        updated = await db(world.ms_update_event, event.pk, fields, clock())
        return JSONResponse(event_json(updated, exchange.request, expand_property=False))

    async def not_found(request: Request) -> Response:
        return _graph_error(400, "BadRequest", f"Resource not found for the segment '{request.url.path}'.")

    routes = [
        Route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            handler(openid_configuration, identity=True),
            methods=["GET"],
        ),
        Route("/{tenant}/oauth2/v2.0/authorize", handler(authorize, identity=True), methods=["GET"]),
        Route(
            "/{tenant}/oauth2/v2.0/authorize/decision",
            handler(authorize_decision, identity=True),
            methods=["POST"],
        ),
        Route("/{tenant}/oauth2/v2.0/token", handler(token, identity=True), methods=["POST"]),
        Route("/v1.0/me", handler(me, endpoint="calendars"), methods=["GET"]),
        Route("/v1.0/me/calendars", handler(list_calendars, endpoint="calendars"), methods=["GET"]),
        Route(
            "/v1.0/me/calendars/{calendar_id}", handler(get_calendar, endpoint="calendars"), methods=["GET"]
        ),
        Route(
            "/v1.0/me/calendars/{calendar_id}/calendarView",
            handler(calendar_view, endpoint="events"),
            methods=["GET"],
        ),
        Route(
            "/v1.0/me/calendars/{calendar_id}/calendarView/delta",
            handler(calendar_view_delta, endpoint="changes"),
            methods=["GET"],
        ),
        Route("/v1.0/me/events", handler(create_event, endpoint="events"), methods=["POST"]),
        Route(
            "/v1.0/me/calendars/{calendar_id}/events",
            handler(create_event, endpoint="events"),
            methods=["POST"],
        ),
        Route(
            "/v1.0/me/events/{event_id}",
            handler(event_item, endpoint="events"),
            methods=["GET", "PATCH", "DELETE"],
        ),
        Route(
            "/v1.0/me/calendars/{calendar_id}/events/{event_id}",
            handler(event_item, endpoint="events"),
            methods=["GET", "PATCH", "DELETE"],
        ),
    ]
    app = Starlette(routes=routes)
    app.add_route("/{path:path}", not_found, methods=["GET", "POST", "PATCH", "DELETE", "PUT"])
    return app
