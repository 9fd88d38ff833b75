"""Microsoft 365 / Outlook calendars: msal for the identity platform, Microsoft Graph over httpx.

Everything a caller sees is a type or an error from `base.py`. The notable choices:

- msal's `ConfidentialClientApplication` is built lazily, once per provider, in a worker thread (its
  constructor fetches the OpenID configuration). It gets our own `requests.Session` (no proxy or
  netrc from the environment, our CA bundle, a default timeout) and `instance_discovery=False`.
- msal's HTTP cache is switched off (`http_cache` is a mapping that stores nothing). Out of the box
  msal answers a repeated refresh with the *cached* error for 60 s after a 400, and for the
  Retry-After time (5 s by default) after a 429/5xx, without asking the server. Our own retry loop
  (`retry.py`) already honours Retry-After within a bounded budget and never retries a dead grant, so the cache
  would only mask the truth: a grant fixed a moment ago would still look dead, and a retry after a
  503 would never reach the server. The msal token cache is switched off as well: tokens live in
  the caller's `Authorization` only, not in a process-wide cache holding every user's tokens.
- The token endpoint's 429/5xx are turned into an exception inside our session (msal would hide the
  status and Retry-After), so throttling and outages are never mistaken for a dead grant.
- Graph calls honour the 4-concurrent-requests-per-mailbox limit with a semaphore per account.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msal
import requests

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
from calsync.syncbackend.providers.retry import parse_retry_after, with_retries
from calsync.syncbackend.providers.threads import MAX_THREADS, BlockingCalls

log = logging.getLogger(__name__)

T = TypeVar("T")

APPOINTMENT_PROPERTY_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name calsyncAppointmentId"
SCOPES = ("Calendars.ReadWrite", "User.Read")  # msal adds openid, profile and offline_access itself
MAILBOX_CONCURRENCY = 4  # Graph: at most 4 concurrent requests per app per mailbox
REFRESH_MARGIN = timedelta(minutes=2)  # refresh a little before the access token expires
PAGE_SIZE = 100
MAX_PAGES = 200  # a safety stop for a server that keeps answering nextLinks

# AADSTS code -> cause. The rest is classified by `error` and `suberror`.
AADSTS_CAUSES: dict[int, GrantCause] = {
    50173: GrantCause.PASSWORD_CHANGED,
    70008: GrantCause.EXPIRED,
    700082: GrantCause.INACTIVE,
    65001: GrantCause.CONSENT_REMOVED,
    50076: GrantCause.MFA_REQUIRED,
    50079: GrantCause.MFA_REQUIRED,
    50158: GrantCause.MFA_REQUIRED,
    50034: GrantCause.ACCOUNT_DELETED,
    50057: GrantCause.ACCOUNT_DELETED,
}
GRANT_MESSAGES: dict[GrantCause, str] = {
    GrantCause.PASSWORD_CHANGED: (
        "Microsoft stopped accepting the calendar connection after a password change or access was revoked."
    ),
    GrantCause.EXPIRED: "The Microsoft sign-in for the calendar connection has expired.",
    GrantCause.INACTIVE: "The Microsoft sign-in for the calendar expired after 90 days without use.",
    GrantCause.CONSENT_REMOVED: (
        "calsync's permission to use the Microsoft calendar was removed (often by the organisation's IT)."
    ),
    GrantCause.MFA_REQUIRED: (
        "Microsoft requires the user to complete multi-factor authentication or a Conditional Access check."
    ),
    GrantCause.INTERACTION_REQUIRED: "Microsoft requires the user to sign in again.",
    GrantCause.ACCOUNT_DELETED: "The Microsoft account no longer exists in its directory.",
    GrantCause.REVOKED: "Access to the Microsoft calendar was revoked.",
    GrantCause.UNKNOWN: "Microsoft no longer accepts the calendar connection.",
}
GRANT_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- msal plumbing --------------------------------------------------------------------------------


class _WithholdTokenResponses(logging.Filter):
    """msal logs a token response it cannot parse verbatim; such a body may hold tokens: withhold it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Token response is not in json format"):
            record.msg = "Token response is not in json format (body withheld by calsync)"
            record.args = ()
        return True


_MSAL_OAUTH_LOGGER = logging.getLogger("msal.oauth2cli.oauth2")
if not any(isinstance(f, _WithholdTokenResponses) for f in _MSAL_OAUTH_LOGGER.filters):
    _MSAL_OAUTH_LOGGER.addFilter(_WithholdTokenResponses())


class _NoStoreMapping(MutableMapping[str, Any]):
    """An `http_cache` for msal that keeps nothing: every token request reaches the server."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        pass

    def __delitem__(self, key: str) -> None:
        pass

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _NoTokenCache(msal.TokenCache):
    """msal's token cache, switched off: the caller's `Authorization` is the only copy of the tokens."""

    def add(self, event: Any, **kwargs: Any) -> None:
        return None


class _TokenEndpointStatus(Exception):
    """The identity platform answered 429 or 5xx (raised from inside msal's HTTP call)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class _IdentitySession(requests.Session):
    """The HTTP client msal uses: explicit CA, no environment proxies, a default timeout."""

    def __init__(self, *, verify: str | bool, timeout: float) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = verify
        self._timeout = timeout
        # One kept connection per provider thread (requests keeps 10 by default: with more refreshes
        # at once, every one beyond 10 would open, and then drop, a TLS connection of its own).
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=MAX_THREADS)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 429 or response.status_code >= 500:
            status, retry_after = response.status_code, parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            del response  # nothing of the connection may outlive this frame in the traceback
            raise _TokenEndpointStatus(status, retry_after)
        return response


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | requests.exceptions.SSLError):
            return True
        text = str(current)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text.split(":")[0]:
            return True
        current = current.__cause__ or current.__context__
        if current is None and exc.args:
            nested = [a for a in exc.args if isinstance(a, BaseException)]
            current = nested[0] if nested else None
    return False


def _aadsts_codes(result: dict[str, Any]) -> tuple[int, ...]:
    codes = result.get("error_codes")
    if isinstance(codes, list) and all(isinstance(c, int) for c in codes):
        return tuple(codes)
    found = re.findall(r"AADSTS(\d+)", str(result.get("error_description", "")))
    return tuple(int(c) for c in found[:1])


def classify_token_error(result: dict[str, Any]) -> ProviderError:
    """An msal error dict (the token endpoint's JSON error) -> the classified `ProviderError`."""
    error = str(result.get("error", ""))
    description = str(result.get("error_description", ""))
    suberror = str(result.get("suberror", "") or "")
    codes = _aadsts_codes(result)
    first_line = description.splitlines()[0] if description else error
    if error in GRANT_ERRORS or suberror == "consent_required":
        cause = next((AADSTS_CAUSES[c] for c in codes if c in AADSTS_CAUSES), None)
        if cause is None:
            if suberror == "consent_required" or error == "consent_required":
                cause = GrantCause.CONSENT_REMOVED
            elif error in ("interaction_required", "login_required"):
                cause = GrantCause.INTERACTION_REQUIRED
            else:
                cause = GrantCause.UNKNOWN
        code_text = ", ".join(f"AADSTS{c}" for c in codes)
        message = GRANT_MESSAGES[cause] + (f" ({code_text})" if code_text else "")
        return GrantError("microsoft", cause, message, error=error, codes=codes, description=description)
    if error in TRANSIENT_TOKEN_ERRORS:
        return ProviderUnavailable(
            "microsoft", f"The Microsoft identity platform is unavailable: {first_line}"
        )
    # invalid_client, unauthorized_client, invalid_scope, invalid_request: calsync's own configuration.
    return ProviderError(
        "microsoft", f"The Microsoft identity platform rejected calsync's request: {first_line}"
    )


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
        self._client_secret = client_secret
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.retry_budget = retry_budget
        self._sleep = sleep
        self._clock = clock
        self._app: Any = None
        self._app_lock = threading.Lock()
        self._threads = BlockingCalls("microsoft")
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
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
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
        app = self._app
        if app is not None:
            await self._threads.run(app.http_client.close)

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
            retryable=lambda error: error.transient and not isinstance(error, _TLSFailure),
            provider="microsoft",
        )

    # -- the identity platform -------------------------------------------------------------------

    def _build_app(self) -> Any:
        with self._app_lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._client_secret,
                    authority=self.authority,
                    http_client=_IdentitySession(verify=self._verify(), timeout=self.timeout),
                    instance_discovery=False,
                    validate_authority=False,
                    http_cache=_NoStoreMapping(),
                    token_cache=_NoTokenCache(),
                    timeout=self.timeout,
                )
            return self._app

    async def _identity_call(self, fn: Callable[[], T], what: str, *, discovery: bool = False) -> T:
        """Run a blocking msal call in a thread, turning every failure into a classified error."""
        try:
            return await self._threads.run(fn)
        except _TokenEndpointStatus as exc:
            if exc.status == 429:
                raise RateLimited(
                    "microsoft", f"The Microsoft identity platform is throttling {what}.", exc.retry_after
                ) from None
            raise ProviderUnavailable(
                "microsoft",
                f"The Microsoft identity platform answered HTTP {exc.status} to {what}.",
                exc.status,
            ) from None
        except requests.exceptions.SSLError as exc:
            raise _tls_error(f"{what} at the Microsoft identity platform") from exc
        except requests.exceptions.Timeout:
            raise ProviderTimeout(
                "microsoft",
                f"The Microsoft identity platform did not answer {what} within {self.timeout:g} s.",
            ) from None
        except requests.exceptions.RequestException as exc:
            if _is_tls_failure(exc):
                raise _tls_error(f"{what} at the Microsoft identity platform") from exc
            raise ProviderUnavailable(
                "microsoft",
                f"Could not reach the Microsoft identity platform for {what} ({type(exc).__name__}).",
            ) from None
        except ValueError:
            if discovery:  # msal: the authority's OpenID configuration could not be loaded
                raise ProviderUnavailable(
                    "microsoft", f"Could not load the Microsoft sign-in configuration from {self.authority}."
                ) from None
            # msal's json.loads on a token response that is not JSON
            raise MalformedResponse(
                "microsoft",
                f"The Microsoft identity platform answered {what} with something that is not JSON.",
            ) from None
        except Exception as exc:  # msal raises assorted errors (MsalServiceError, RuntimeError, ...)
            raise ProviderUnavailable(
                "microsoft", f"The Microsoft identity platform failed {what} ({type(exc).__name__})."
            ) from None

    async def _get_app(self) -> Any:
        if self._app is not None:
            return self._app
        return await self._identity_call(self._build_app, "the configuration request", discovery=True)

    async def _refresh(self, auth: Authorization) -> None:
        """Refresh `auth` in place (new access token, rotated refresh token), or raise classified."""
        app = await self._get_app()
        refresh_token = auth.refresh_token
        result = await self._identity_call(
            lambda: app.acquire_token_by_refresh_token(refresh_token, scopes=list(SCOPES)),
            "the token refresh",
        )
        if not isinstance(result, dict):
            raise MalformedResponse(
                "microsoft", "The Microsoft token endpoint answered with something unexpected."
            )
        if "error" in result:
            raise classify_token_error(result)
        access_token = result.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise MalformedResponse(
                "microsoft", "The Microsoft token endpoint answered without an access token."
            )
        try:
            expires_in = float(result.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        claims = result.get("id_token_claims") or {}
        email = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
        auth.access_token = access_token
        new_refresh = result.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh:
            auth.refresh_token = new_refresh
        auth.expires_at = self._clock() + timedelta(seconds=expires_in)
        if isinstance(email, str) and email:
            auth.account_email = email.lower()
        scope = result.get("scope")
        if isinstance(scope, str):
            auth.scopes = tuple(scope.split())
        auth.refreshed = True

    # -- interactive sign-in (the reconnect flow) ---------------------------------------------------

    async def initiate_auth_code_flow(
        self, *, redirect_uri: str, state: str, login_hint: str | None = None
    ) -> dict[str, Any]:
        """msal's auth code flow (PKCE S256 and an OpenID nonce included), with the same msal app,
        HTTP client and CA bundle as every other identity call. The flow holds secrets: keep it
        server-side (encrypted) until `acquire_token_by_auth_code_flow`."""
        app = await self._get_app()
        flow = await self._identity_call(
            lambda: app.initiate_auth_code_flow(
                list(SCOPES), redirect_uri=redirect_uri, state=state, login_hint=login_hint or None
            ),
            "the sign-in request",
        )
        if not isinstance(flow, dict) or "auth_uri" not in flow:
            raise MalformedResponse("microsoft", "msal could not start the sign-in.")
        return flow

    async def acquire_token_by_auth_code_flow(
        self, flow: dict[str, Any], query_params: dict[str, str]
    ) -> Authorization:
        """Redeem the code the identity platform sent back (state, PKCE verifier and nonce checked by
        msal) for a new grant. Raises classified `ProviderError`s."""
        app = await self._get_app()
        result = await self._identity_call(
            lambda: app.acquire_token_by_auth_code_flow(dict(flow), dict(query_params), scopes=list(SCOPES)),
            "the sign-in",
        )
        if not isinstance(result, dict):
            raise MalformedResponse("microsoft", "The Microsoft sign-in answered with something unexpected.")
        if "error" in result:
            raise classify_token_error(result)
        access_token, refresh_token = result.get("access_token"), result.get("refresh_token")
        if not isinstance(access_token, str) or not access_token:
            raise MalformedResponse("microsoft", "The Microsoft sign-in answered without an access token.")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise MalformedResponse("microsoft", "The Microsoft sign-in answered without a refresh token.")
        try:
            expires_in = float(result.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        claims = result.get("id_token_claims") or {}
        email = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
        scope = result.get("scope")
        return Authorization(
            refresh_token=refresh_token,
            access_token=access_token,
            expires_at=self._clock() + timedelta(seconds=expires_in),
            account_email=email.lower() if isinstance(email, str) and email else None,
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
            refreshed=True,
        )

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
            if _is_tls_failure(exc):
                raise _tls_error("Microsoft Graph") from exc
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
        calendars: list[Calendar] = []
        for item in items:
            try:
                calendar_id = str(item["id"])
            except KeyError:
                raise MalformedResponse(
                    "microsoft", "Microsoft Graph returned a calendar without an id."
                ) from None
            owner = item.get("owner") if isinstance(item.get("owner"), dict) else {}
            owner_address = owner.get("address") if owner else None
            can_edit = bool(item.get("canEdit", False))
            mine = bool(owner_address and auth.account_email and owner_address.lower() == auth.account_email)
            role: AccessRole = (
                ("owner" if mine or item.get("isDefaultCalendar") else "writer") if can_edit else "reader"
            )
            calendars.append(
                Calendar(
                    id=calendar_id,
                    name=str(item.get("name") or ""),
                    primary=bool(item.get("isDefaultCalendar", False)),
                    access_role=role,
                    owner=str(owner_address).lower() if owner_address else None,
                )
            )
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
        delta_path = self._delta_path(calendar_id)
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

    @staticmethod
    def _delta_path(calendar_id: str) -> str:
        return f"/me/calendars/{_seg(calendar_id)}/calendarView/delta"

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


class _TLSFailure(ProviderUnavailable):
    """The server's certificate is not trusted: retrying will not help."""


def _tls_error(where: str) -> ProviderUnavailable:
    return _TLSFailure(
        "microsoft",
        f"TLS certificate verification failed for {where}: the server's certificate is not trusted "
        "(check the CA bundle).",
    )


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
