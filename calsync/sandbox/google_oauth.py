"""The Google emulator's OAuth 2.0 side: the consent page, the token endpoint and userinfo."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from calsync.sandbox.google_common import (
    ACCESS_TOKEN_LIFETIME,
    AUTH_CODE_LIFETIME,
    DEFAULT_REVOKED_DESCRIPTION,
    ID_TOKEN_ISSUER,
    PROVIDER,
    GoogleBase,
    _b64,
    _Call,
    logger,
    oauth_error,
)
from calsync.sandbox.world import SandboxAccount


def _pkce_s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


def _with_query(url: str, params: dict[str, str]) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return url + separator + urlencode(params)


def _error_page(message: str, *, status: int = 400) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Error - Google Accounts (sandbox)</title>"
        f"</head><body><h1>Access blocked</h1><p class='error'>{html.escape(message)}</p></body></html>",
        status_code=status,
    )


_CONSENT_FIELDS = (
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "access_type",
    "prompt",
)


def _consent_html(params: dict[str, str], emails: list[str]) -> str:
    hint = params.get("login_hint", "").strip().lower()
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params[name], quote=True)}">'
        for name in _CONSENT_FIELDS
        if name in params
    )
    if emails:
        chosen = hint if hint in emails else emails[0]
        choices = "".join(
            "<li><label><input type='radio' name='account' "
            f"value='{html.escape(email, quote=True)}'{' checked' if email == chosen else ''}> "
            f"{html.escape(email)}</label></li>"
            for email in emails
        )
        accounts = f"<ul class='accounts'>{choices}</ul>"
    else:
        accounts = "<p>There are no Google accounts in the sandbox.</p>"
    scopes = "".join(f"<li>{html.escape(scope)}</li>" for scope in params.get("scope", "").split())
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Sign in - Google Accounts (sandbox)</title></head><body>"
        "<h1>Choose an account</h1>"
        f"<p>to continue to <b class='client'>{html.escape(params.get('client_id', ''))}</b></p>"
        "<form method='post' action='/o/oauth2/auth/decision'>"
        f"{hidden}{accounts}"
        f"<p>This will allow the app to:</p><ul class='scopes'>{scopes}</ul>"
        "<button type='submit' name='decision' value='allow'>Allow</button> "
        "<button type='submit' name='decision' value='deny'>Deny</button>"
        "</form></body></html>"
    )


class GoogleOAuth(GoogleBase):
    """OAuth 2.0: the consent page, the token endpoint (code and refresh grants) and userinfo."""

    # -- OAuth: consent -----------------------------------------------------------------------------

    async def consent_page(self, request: Request) -> Response:
        started = time.monotonic()
        params = request.query_params
        problem = self._authorize_problem(
            params.get("client_id", ""),
            params.get("redirect_uri", ""),
            params.get("response_type", ""),
            params.get("code_challenge_method", ""),
        )
        if problem:
            response: Response = _error_page(problem)
        else:
            accounts = await run_in_threadpool(self.world.google_accounts)
            response = HTMLResponse(_consent_html(dict(params), [a.email for a in accounts]))
        await self._record(request, response, params.get("login_hint") or None, started, None)
        return response

    def _authorize_problem(
        self, client_id: str, redirect_uri: str, response_type: str, challenge_method: str
    ) -> str | None:
        if client_id != self.client_id:
            return "Error 401: invalid_client. The OAuth client was not found."
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "Error 400: invalid_request. Missing or invalid redirect_uri."
        if response_type != "code":
            return "Error 400: unsupported_response_type. Only response_type=code is supported."
        if challenge_method not in ("", "S256"):
            return "Error 400: invalid_request. Only code_challenge_method=S256 is supported."
        return None

    async def consent_decision(self, request: Request) -> Response:
        started = time.monotonic()
        form = {key: str(value) for key, value in (await request.form()).items()}
        email = form.get("account", "").strip().lower()
        redirect_uri = form.get("redirect_uri", "")
        state = form.get("state")
        problem = self._authorize_problem(
            form.get("client_id", ""), redirect_uri, "code", form.get("code_challenge_method", "")
        )
        response: Response
        if problem:
            response = _error_page(problem)
        elif form.get("decision") != "allow":
            params = {"error": "access_denied"} | ({"state": state} if state is not None else {})
            response = RedirectResponse(_with_query(redirect_uri, params), status_code=302)
        else:
            account = await run_in_threadpool(self.world.account, PROVIDER, email) if email else None
            if account is None:
                response = _error_page("Choose one of the sandbox accounts.", status=400)
            else:
                code = await run_in_threadpool(
                    lambda: self.world.create_auth_code(
                        account.id,
                        prefix="4/",
                        client_id=form["client_id"],
                        redirect_uri=redirect_uri,
                        scopes=form.get("scope", ""),
                        code_challenge=form.get("code_challenge", ""),
                        code_challenge_method=form.get("code_challenge_method", ""),
                        expires_at=self.clock() + AUTH_CODE_LIFETIME,
                    )
                )
                params = {"code": code} | ({"state": state} if state is not None else {})
                params["scope"] = form.get("scope", "")
                response = RedirectResponse(_with_query(redirect_uri, params), status_code=302)
        await self._record(request, response, email or None, started, form)
        return response

    # -- OAuth: token endpoint ----------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        started = time.monotonic()
        form = {key: str(value) for key, value in (await request.form()).items()}
        account_email = await run_in_threadpool(self._token_account_email, form)
        hits = await run_in_threadpool(self.world.take_faults, PROVIDER, "token", account_email)
        response = await self._apply_faults(request, "token", hits)
        if response is None:
            try:
                response = await run_in_threadpool(self._token_grant, request, form)
            except Exception:
                logger.exception("google emulator: token endpoint failed")
                response = oauth_error(500, "internal_failure", "Backend Error")
        await self._record(request, response, account_email, started, form)
        return response

    def _token_account_email(self, form: dict[str, str]) -> str | None:
        """Whose token request this is (to apply that account's faults), without using anything up."""
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token"):
            found = self.world.grant_by_refresh_token(form["refresh_token"])
            return found[1].email if found else None
        if form.get("grant_type") == "authorization_code" and form.get("code"):
            peeked = self.world.google_peek_auth_code(form["code"])
            return peeked[1].email if peeked else None
        return None

    def _client_problem(self, request: Request, form: dict[str, str]) -> Response | None:
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and credentials:
            try:
                client_id, _, client_secret = base64.b64decode(credentials).decode().partition(":")
            except ValueError:
                return oauth_error(401, "invalid_client", "Unauthorized")
        if client_id != self.client_id:
            return oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if not hmac.compare_digest(client_secret.encode(), self.client_secret.encode()):
            return oauth_error(401, "invalid_client", "Unauthorized")
        return None

    def _token_grant(self, request: Request, form: dict[str, str]) -> Response:
        problem = self._client_problem(request, form)
        if problem is not None:
            return problem
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _exchange_code(self, form: dict[str, str]) -> Response:
        code = self.world.google_take_auth_code(form.get("code", ""))
        now = self.clock()
        if code is None or code.expires_at <= now or code.client_id != self.client_id:
            return oauth_error(400, "invalid_grant", "Bad Request")
        if form.get("redirect_uri", "") != code.redirect_uri:
            return oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if code.code_challenge:
            verifier = form.get("code_verifier", "")
            if not verifier:
                return oauth_error(400, "invalid_grant", "Missing code verifier.")
            if not hmac.compare_digest(_pkce_s256(verifier), code.code_challenge):
                return oauth_error(400, "invalid_grant", "Invalid code verifier.")
        grant = self.world.issue_grant(code.account_id, scopes=code.scopes)
        found = self.world.grant_by_refresh_token(grant.refresh_token)
        assert found is not None
        return self._token_response(grant.id, found[1], grant.scopes, refresh_token=grant.refresh_token)

    def _refresh(self, form: dict[str, str]) -> Response:
        refresh_token = form.get("refresh_token", "")
        if not refresh_token:
            return oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
        found = self.world.grant_by_refresh_token(refresh_token)
        if found is None or found[1].provider != PROVIDER:
            return oauth_error(400, "invalid_grant", "Bad Request")
        grant, account = found
        if grant.status != "valid":
            return oauth_error(400, "invalid_grant", grant.error_description or DEFAULT_REVOKED_DESCRIPTION)
        return self._token_response(grant.id, account, grant.scopes)

    def _token_response(
        self, grant_id: int, account: SandboxAccount, scopes: str, *, refresh_token: str | None = None
    ) -> JSONResponse:
        now = self.clock()
        access = self.world.issue_access_token(grant_id, now, ACCESS_TOKEN_LIFETIME)
        body: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
            "scope": scopes,
            "token_type": "Bearer",
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        if {"openid", "email"} & set(scopes.split()):
            body["id_token"] = self._id_token(account, now)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _id_token(self, account: SandboxAccount, now: datetime) -> str:
        """A JWT like Google's (HS256 with the client secret here; Google signs with RS256)."""
        header = {"alg": "HS256", "typ": "JWT"}
        issued = int(now.timestamp())
        claims = {
            "iss": ID_TOKEN_ISSUER,
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": str(account.id),
            "email": account.email,
            "email_verified": True,
            "iat": issued,
            "exp": issued + int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        }
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        signature = hmac.new(self.client_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    async def userinfo(self, request: Request) -> Response:
        v3 = request.url.path.startswith("/oauth2/v3")

        def handler(call: _Call) -> Response:
            account = call.account
            if v3:
                return JSONResponse(
                    {
                        "sub": str(account.id),
                        "email": account.email,
                        "email_verified": True,
                        "name": account.display_name,
                    }
                )
            return JSONResponse(
                {
                    "id": str(account.id),
                    "email": account.email,
                    "verified_email": True,
                    "name": account.display_name,
                }
            )

        return await self._api(request, "userinfo", handler)
