"""What the Microsoft emulator's two sides share: constants, the identity platform's and Graph's
error shapes, and the request plumbing (reading a request, authenticating a Graph call, applying the
world's faults, recording the request). See `microsoft_emulator.py`."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from calsync.sandbox.emulator_common import OAuthEmulator, record
from calsync.sandbox.faults import apply_faults, lose_answer, short_list
from calsync.sandbox.world import FaultHit, SandboxAccount, World

PROVIDER = "microsoft"

# The extended property calsync stamps on the events it writes (a MAPI named string property).
APPOINTMENT_PROPERTY_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name calsyncAppointmentId"

SANDBOX_TENANT_ID = "7c3f3b4e-5b1a-4c7e-9d0e-5a4d8b2c1f00"

GRAPH_RESOURCE = "https://graph.microsoft.com/"

ACCESS_TOKEN_LIFETIME = timedelta(seconds=3599)

AUTH_CODE_LIFETIME = timedelta(minutes=10)

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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


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


def sync_state_not_found() -> JSONResponse:
    return _graph_error(
        410,
        "syncStateNotFound",
        "The sync state generation is not found or has expired. Please do a full resync.",
    )


def _gateway_timeout(_gave_up: bool) -> Response:
    """What a hang fault ends in: a 504, whether or not the client waited for it."""
    return _graph_error(504, "GatewayTimeout", "The request timed out.")


def _service_unavailable(status: int) -> Response:
    """The answer that replaces one lost to a `lost_response` fault."""
    return _graph_error(status, "ServiceUnavailable", "The service is temporarily unavailable.")


class MicrosoftBase(OAuthEmulator):
    """What every route of the emulator shares: the world, the client, the clock, faults, the request log."""

    def __init__(
        self, world: World, *, client_id: str, client_secret: str, clock: Callable[[], datetime]
    ) -> None:
        super().__init__(world, client_id=client_id, client_secret=client_secret, clock=clock)
        # OpenID nonces by authorization code, until the code is redeemed (codes live minutes; the consent
        # page and the token endpoint are this same server, so memory is enough).
        self.nonces: dict[str, str] = {}

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Starlette's thread pool (40 threads, as the Google emulator uses), not asyncio's default
        # one (min(32, CPUs + 4): 6 on two cores, too few for requests waiting on the database).
        return await run_in_threadpool(fn, *args, **kwargs)

    async def log(self, exchange: _Exchange, status: int, started: float) -> None:
        body: dict[str, Any] | None = None
        if exchange.form:
            body = exchange.form
        elif isinstance(exchange.json_body, dict):
            body = exchange.json_body
        await record(
            self.world,
            provider=PROVIDER,
            request=exchange.request,
            status=status,
            account_email=exchange.account.email if exchange.account else None,
            clock=self.clock,
            started=started,
            body=body,
        )

    def _fault_answer(
        self, exchange: _Exchange, hit: FaultHit, *, identity: bool, endpoint: str
    ) -> Response | None:
        """The answer of one fault (other than latency and hang) in the identity platform's or Graph's shape."""
        params = hit.params
        if hit.kind == "rate_limit":
            retry_after = str(int(float(params.get("retry_after", 1))))
            if identity:
                throttled = _identity_error(
                    429,
                    "temporarily_unavailable",
                    "AADSTS50196: The server terminated an operation because it encountered a client "
                    "request loop. Please contact your app vendor.",
                    [50196],
                    now=self.clock(),
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
        if hit.kind == "unavailable":
            status = int(params.get("status", 503))
            if identity:
                return HTMLResponse(
                    "<html><body><h1>Service Unavailable</h1></body></html>", status_code=status
                )
            code = "ServiceNotAvailable" if status != 504 else "GatewayTimeout"
            return _graph_error(status, code, "The service is temporarily unavailable. Please retry later.")
        if hit.kind == "malformed":
            return Response(
                b'{"value": [{"id": "AAMk", "subject": "trunc',
                status_code=200,
                media_type="application/json",
            )
        if hit.kind == "invalid_grant" and identity:
            return aadsts_error(
                int(params.get("aadsts", 70008)),
                now=self.clock(),
                client_id=self.client_id,
                suberror=params.get("suberror"),
                description=str(params.get("description", "")),
            )
        if (
            hit.kind == "sync_token_expired"
            and endpoint == "changes"
            and exchange.request.query_params.get("$deltatoken")
        ):
            return sync_state_not_found()
        return None

    async def _apply_faults(
        self, exchange: _Exchange, hits: list[FaultHit], *, identity: bool, endpoint: str
    ) -> Response | None:
        """Carry out the faults (`calsync.sandbox.faults`) in order; the first one that answers wins.

        A latency fault waits no time unless it says so; a hang ends in a 504, whether or not the
        client waited for it."""
        return await apply_faults(
            exchange.request,
            hits,
            lambda hit: self._fault_answer(exchange, hit, identity=identity, endpoint=endpoint),
            latency_seconds=0.0,
            after_hang=_gateway_timeout,
        )

    def handler(
        self, fn: Callable[[_Exchange], Awaitable[Response]], *, identity: bool = False, endpoint: str = ""
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a route: read the body, authenticate (Graph), apply faults, answer, record."""

        async def endpoint_fn(request: Request) -> Response:
            started = time.monotonic()
            exchange = await read(request)
            hits: list[FaultHit] = []
            try:
                if not identity:
                    exchange.account = await self.authenticate(request)
                    hits = await self.db(self.world.take_faults, PROVIDER, endpoint, exchange.account.email)
                    faulted = await self._apply_faults(exchange, hits, identity=False, endpoint=endpoint)
                    if faulted is not None:
                        raise _Reply(faulted)
                answered = short_list(hits, await fn(exchange), "value")
                response = await lose_answer(exchange.request, hits, answered, _service_unavailable)
            except _Reply as reply:
                response = reply.response
            except Exception as exc:  # an emulator bug: answer like Graph would, and keep the log whole
                response = _graph_error(500, "generalException", f"Sandbox error: {type(exc).__name__}")
            await self.log(exchange, response.status_code, started)
            return response

        return endpoint_fn

    async def authenticate(self, request: Request) -> SandboxAccount:
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
        account = await self.db(self.world.account_for_access_token, token.strip(), self.clock())
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
