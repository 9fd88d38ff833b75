"""The interactive OAuth sign-in of the reconnect flow, one implementation per provider.

    url, secrets = await flow.authorize_url(state=..., login_hint=...)   # redirect the browser to url
    ...                                                                  # keep `secrets` server-side
    auth, email = await flow.exchange(secrets, query_params)             # on the callback

Both flows use PKCE (S256) and a server-side `state`. Google goes through google-auth-oauthlib's
`Flow` (requests-oauthlib underneath); Microsoft through msal's auth code flow, on the msal app
`MicrosoftProvider` already builds (same authority, CA bundle and HTTP client). Every URL comes from
settings, so the sandbox and the real services are the same code path.

google-auth-oauthlib (oauthlib) refuses plain-http endpoints unless `OAUTHLIB_INSECURE_TRANSPORT`
is set; only the sandbox runtime sets it (its Google emulator speaks http on loopback).
Failures leave as `OAuthError` (with a short reason for the page and the audit log), never as a
library exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from calsync.syncbackend.providers.base import Authorization, ProviderError, ProviderName
from calsync.syncbackend.providers.google import _decode_id_token_email
from calsync.syncbackend.providers.microsoft import MicrosoftProvider


class _WithholdOAuthValues(logging.Filter):
    """requests-oauthlib logs its token requests and responses at DEBUG: headers (the client secret in
    Basic auth), bodies (code, verifier), the tokens it obtains, the state. Keep the messages, withhold
    every value but a status code."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(arg if isinstance(arg, int) else "[withheld by calsync]" for arg in args)
        return True


_OAUTH_SESSION_LOGGER = logging.getLogger("requests_oauthlib.oauth2_session")
if not any(isinstance(f, _WithholdOAuthValues) for f in _OAUTH_SESSION_LOGGER.filters):
    _OAUTH_SESSION_LOGGER.addFilter(_WithholdOAuthValues())

GOOGLE_SCOPES = (
    "https://www.googleapis.com/auth/calendar",
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
)


class OAuthError(Exception):
    """The sign-in could not be completed; `message` is fit for the rep (no token, no secret)."""

    def __init__(self, provider: ProviderName, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.transient = transient


class OAuthFlow(Protocol):
    """One provider's interactive sign-in (authorization code + PKCE)."""

    provider: ProviderName
    redirect_uri: str

    async def authorize_url(self, *, state: str, login_hint: str | None) -> tuple[str, dict[str, Any]]:
        """The provider's consent URL for `state`, and the secrets to keep until the callback."""
        ...

    async def exchange(
        self, secrets: Mapping[str, Any], query_params: Mapping[str, str]
    ) -> tuple[Authorization, str]:
        """Redeem the callback's code: the new grant and the signed-in account's email."""
        ...


class GoogleOAuth:
    provider: ProviderName = "google"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        auth_url: str,
        token_url: str,
        api_url: str,
        redirect_uri: str,
        timeout: float = 8.0,
        clock: Any = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.auth_url = auth_url
        self.token_url = token_url
        self.userinfo_url = api_url.rstrip("/") + "/oauth2/v3/userinfo"
        self.redirect_uri = redirect_uri
        self.timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"GoogleOAuth(auth_url={self.auth_url!r}, redirect_uri={self.redirect_uri!r})"

    def _flow(self, *, state: str | None = None, code_verifier: str | None = None) -> Flow:
        config = {
            "web": {
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "auth_uri": self.auth_url,
                "token_uri": self.token_url,
                "redirect_uris": [self.redirect_uri],
            }
        }
        flow = Flow.from_client_config(
            config,
            scopes=list(GOOGLE_SCOPES),
            redirect_uri=self.redirect_uri,
            state=state,
            code_verifier=code_verifier,
            autogenerate_code_verifier=code_verifier is None,
        )
        flow.oauth2session.trust_env = False  # no proxy or netrc from the environment
        return flow

    async def authorize_url(self, *, state: str, login_hint: str | None) -> tuple[str, dict[str, Any]]:
        flow = self._flow()
        extra = {"login_hint": login_hint} if login_hint else {}
        url, _ = flow.authorization_url(access_type="offline", prompt="consent", state=state, **extra)
        if not flow.code_verifier:  # pragma: no cover - autogenerate is on
            raise OAuthError("google", "Could not start the Google sign-in.")
        return url, {"code_verifier": flow.code_verifier}

    async def exchange(
        self, secrets: Mapping[str, Any], query_params: Mapping[str, str]
    ) -> tuple[Authorization, str]:
        verifier = secrets.get("code_verifier")
        code = query_params.get("code")
        if not isinstance(verifier, str) or not verifier or not code:
            raise OAuthError("google", "Google sent no sign-in code back.")
        return await asyncio.to_thread(self._exchange, verifier, code, query_params.get("state"))

    def _exchange(self, verifier: str, code: str, state: str | None) -> tuple[Authorization, str]:
        flow = self._flow(state=state, code_verifier=verifier)
        try:
            token = flow.fetch_token(code=code, timeout=self.timeout)
        except OAuth2Error as error:
            raise OAuthError(
                "google", f"Google refused the sign-in ({error.error}: {error.description or 'no details'})."
            ) from None
        except requests.RequestException as error:
            raise OAuthError(
                "google",
                f"Could not reach Google to finish the sign-in ({type(error).__name__}).",
                transient=True,
            ) from None
        except (ValueError, Warning) as error:  # oauthlib: a malformed or unexpected token response
            raise OAuthError(
                "google", f"Google answered the sign-in unexpectedly ({type(error).__name__})."
            ) from None
        refresh_token = token.get("refresh_token")
        access_token = token.get("access_token")
        if not isinstance(refresh_token, str) or not refresh_token or not isinstance(access_token, str):
            raise OAuthError("google", "Google did not grant offline access (no refresh token came back).")
        email = _decode_id_token_email(token.get("id_token")) or self._userinfo_email(flow)
        if not email:
            raise OAuthError("google", "Google did not say which account signed in.")
        expires_at = None
        if isinstance(token.get("expires_at"), int | float):
            expires_at = datetime.fromtimestamp(float(token["expires_at"]), UTC)
        elif isinstance(token.get("expires_in"), int | float):
            expires_at = self._clock() + timedelta(seconds=float(token["expires_in"]))
        scope = token.get("scope")
        scopes = tuple(scope) if isinstance(scope, list) else tuple(str(scope or "").split())
        auth = Authorization(
            refresh_token=refresh_token,
            access_token=access_token,
            expires_at=expires_at,
            account_email=email,
            scopes=scopes,
            refreshed=True,
        )
        return auth, email

    def _userinfo_email(self, flow: Flow) -> str | None:
        try:
            response = flow.oauth2session.get(self.userinfo_url, timeout=self.timeout)
            data = response.json() if response.ok else {}
        except (requests.RequestException, ValueError):
            return None
        email = data.get("email") if isinstance(data, dict) else None
        return email.lower() if isinstance(email, str) and email else None


class MicrosoftOAuth:
    provider: ProviderName = "microsoft"

    def __init__(self, microsoft: MicrosoftProvider, *, redirect_uri: str) -> None:
        self.microsoft = microsoft
        self.redirect_uri = redirect_uri

    def __repr__(self) -> str:
        return f"MicrosoftOAuth(authority={self.microsoft.authority!r}, redirect_uri={self.redirect_uri!r})"

    async def authorize_url(self, *, state: str, login_hint: str | None) -> tuple[str, dict[str, Any]]:
        try:
            flow = await self.microsoft.initiate_auth_code_flow(
                redirect_uri=self.redirect_uri, state=state, login_hint=login_hint
            )
        except ProviderError as error:
            raise OAuthError("microsoft", error.message, transient=error.transient) from None
        return str(flow["auth_uri"]), {"msal_flow": flow}

    async def exchange(
        self, secrets: Mapping[str, Any], query_params: Mapping[str, str]
    ) -> tuple[Authorization, str]:
        flow = secrets.get("msal_flow")
        if not isinstance(flow, dict) or not query_params.get("code"):
            raise OAuthError("microsoft", "Microsoft sent no sign-in code back.")
        try:
            auth = await self.microsoft.acquire_token_by_auth_code_flow(flow, dict(query_params))
        except ProviderError as error:
            raise OAuthError("microsoft", error.message, transient=error.transient) from None
        if not auth.account_email:
            raise OAuthError("microsoft", "Microsoft did not say which account signed in.")
        return auth, auth.account_email


__all__ = ["GOOGLE_SCOPES", "GoogleOAuth", "MicrosoftOAuth", "OAuthError", "OAuthFlow"]
