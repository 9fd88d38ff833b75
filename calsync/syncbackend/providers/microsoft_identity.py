"""The Microsoft identity platform through msal: refreshing a grant, the interactive sign-in, and
classifying what the token endpoint says.

- msal's `ConfidentialClientApplication` is built lazily, once per provider, in a worker thread (its
  constructor fetches the OpenID configuration). It gets our own `requests.Session` (no proxy or
  netrc from the environment, our CA bundle, a default timeout) and `instance_discovery=False`.
- msal's HTTP cache is switched off (`http_cache` is a mapping that stores nothing). Out of the box
  msal answers a repeated refresh with the *cached* error for 60 s after a 400, and for the
  Retry-After time (5 s by default) after a 429/5xx, without asking the server. Our own retry loop
  (`retry.py`) already honours Retry-After within a bounded budget and never retries a dead grant,
  so the cache would only mask the truth: a grant fixed a moment ago would still look dead, and a
  retry after a 503 would never reach the server. The msal token cache is switched off as well:
  tokens live in the caller's `Authorization` only, not in a process-wide cache holding every
  user's tokens.
- The token endpoint's 429/5xx are turned into an exception inside our session (msal would hide the
  status and Retry-After), so throttling and outages are never mistaken for a dead grant.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterator, MutableMapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msal
import requests

from calsync.syncbackend.providers.base import (
    Authorization,
    GrantCause,
    GrantError,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from calsync.syncbackend.providers.retry import parse_retry_after
from calsync.syncbackend.providers.threads import MAX_THREADS, BlockingCalls

T = TypeVar("T")

SCOPES = ("Calendars.ReadWrite", "User.Read")  # msal adds openid, profile and offline_access itself

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


def is_tls_failure(exc: BaseException) -> bool:
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


class TLSFailure(ProviderUnavailable):
    """The server's certificate is not trusted: retrying will not help."""


def tls_error(where: str) -> ProviderUnavailable:
    return TLSFailure(
        "microsoft",
        f"TLS certificate verification failed for {where}: the server's certificate is not trusted "
        "(check the CA bundle).",
    )


# -- the identity platform ------------------------------------------------------------------------


class MicrosoftIdentity:
    """One provider's msal application and the calls made through it (each in a provider thread)."""

    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        client_secret: str,
        verify: str | bool,
        timeout: float,
        clock: Callable[[], datetime],
        threads: BlockingCalls,
    ) -> None:
        self.authority = authority
        self.client_id = client_id
        self._client_secret = client_secret
        self._verify = verify
        self.timeout = timeout
        self._clock = clock
        self._threads = threads
        self._app: Any = None
        self._app_lock = threading.Lock()

    async def aclose(self) -> None:
        """Close msal's HTTP session, if the app was ever built."""
        app = self._app
        if app is not None:
            await self._threads.run(app.http_client.close)

    def _build_app(self) -> Any:
        with self._app_lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._client_secret,
                    authority=self.authority,
                    http_client=_IdentitySession(verify=self._verify, timeout=self.timeout),
                    instance_discovery=False,
                    validate_authority=False,
                    http_cache=_NoStoreMapping(),
                    token_cache=_NoTokenCache(),
                    timeout=self.timeout,
                )
            return self._app

    async def _call(self, fn: Callable[[], T], what: str, *, discovery: bool = False) -> T:
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
            raise tls_error(f"{what} at the Microsoft identity platform") from exc
        except requests.exceptions.Timeout:
            raise ProviderTimeout(
                "microsoft",
                f"The Microsoft identity platform did not answer {what} within {self.timeout:g} s.",
            ) from None
        except requests.exceptions.RequestException as exc:
            if is_tls_failure(exc):
                raise tls_error(f"{what} at the Microsoft identity platform") from exc
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

    async def _msal(self) -> Any:
        if self._app is not None:
            return self._app
        return await self._call(self._build_app, "the configuration request", discovery=True)

    async def refresh(self, auth: Authorization) -> None:
        """Refresh `auth` in place (new access token, rotated refresh token), or raise classified."""
        app = await self._msal()
        refresh_token = auth.refresh_token
        result = await self._call(
            lambda: app.acquire_token_by_refresh_token(refresh_token, scopes=list(SCOPES)),
            "the token refresh",
        )
        granted = self._granted(result, "token endpoint")
        auth.access_token = granted.access_token
        if granted.refresh_token:  # rotated
            auth.refresh_token = granted.refresh_token
        auth.expires_at = granted.expires_at
        if granted.account_email:
            auth.account_email = granted.account_email
        if granted.tenant_id:
            auth.tenant_id = granted.tenant_id
        if isinstance(result.get("scope"), str):
            auth.scopes = granted.scopes
        auth.refreshed = True

    # -- interactive sign-in (the reconnect flow) ---------------------------------------------------

    async def initiate_auth_code_flow(
        self, *, redirect_uri: str, state: str, login_hint: str | None = None
    ) -> dict[str, Any]:
        """msal's auth code flow (PKCE S256 and an OpenID nonce included), with the same msal app,
        HTTP client and CA bundle as every other identity call. The flow holds secrets: keep it
        server-side (encrypted) until `acquire_token_by_auth_code_flow`."""
        app = await self._msal()
        flow = await self._call(
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
        app = await self._msal()
        result = await self._call(
            lambda: app.acquire_token_by_auth_code_flow(dict(flow), dict(query_params), scopes=list(SCOPES)),
            "the sign-in",
        )
        granted = self._granted(result, "sign-in")
        if not granted.refresh_token:
            raise MalformedResponse("microsoft", "The Microsoft sign-in answered without a refresh token.")
        return granted

    def _granted(self, result: Any, answering: str) -> Authorization:
        """What a token answer (of the "token endpoint" or the "sign-in") grants, or its classified
        error; `refresh_token` is "" when the answer carries none."""
        if not isinstance(result, dict):
            raise MalformedResponse(
                "microsoft", f"The Microsoft {answering} answered with something unexpected."
            )
        if "error" in result:
            raise classify_token_error(result)
        access_token, refresh_token = result.get("access_token"), result.get("refresh_token")
        if not isinstance(access_token, str) or not access_token:
            raise MalformedResponse(
                "microsoft", f"The Microsoft {answering} answered without an access token."
            )
        try:
            expires_in = float(result.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        claims = result.get("id_token_claims") or {}
        email = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
        scope = result.get("scope")
        tenant = claims.get("tid")
        return Authorization(
            refresh_token=refresh_token if isinstance(refresh_token, str) else "",
            access_token=access_token,
            expires_at=self._clock() + timedelta(seconds=expires_in),
            account_email=email.lower() if isinstance(email, str) and email else None,
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
            refreshed=True,
            tenant_id=tenant.lower()[:64] if isinstance(tenant, str) and tenant else None,
        )
