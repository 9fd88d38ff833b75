"""The Microsoft emulator's identity platform (Entra ID v2.0 endpoints under `/{tenant}/`): the OpenID
configuration, a minimal no-JS consent page, and the token endpoint (authorization_code with PKCE,
refresh_token with rotation), answering errors the way Entra ID does."""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from urllib.parse import unquote_plus, urlencode

from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from calsync.sandbox.microsoft_common import (
    ACCESS_TOKEN_LIFETIME,
    AUTH_CODE_LIFETIME,
    GRAPH_RESOURCE,
    OIDC_SCOPES,
    PROVIDER,
    SANDBOX_TENANT_ID,
    MicrosoftBase,
    _b64url,
    _Exchange,
    _identity_error,
    _object_id,
    _Reply,
    _unsigned_jwt,
    aadsts_error,
    base_url,
)
from calsync.sandbox.world import SandboxAccount


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


class MicrosoftIdentity(MicrosoftBase):
    """The identity platform's routes: consent (authorize and its decision) and the token endpoint."""

    def check_authorize_params(self, params: Mapping[str, str]) -> None:
        if params.get("client_id") != self.client_id:
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

    async def issue_code(self, params: Mapping[str, str], account: SandboxAccount) -> RedirectResponse:
        code = await self.db(
            self.world.create_auth_code,
            account.id,
            prefix="M.",
            client_id=params.get("client_id", ""),
            redirect_uri=params.get("redirect_uri", ""),
            scopes=params.get("scope", ""),
            code_challenge=params.get("code_challenge", ""),
            code_challenge_method=params.get("code_challenge_method", "")
            if params.get("code_challenge")
            else "",
            expires_at=self.clock() + AUTH_CODE_LIFETIME,
        )
        if params.get("nonce"):  # OpenID Connect: echoed in the id_token of this code's exchange
            self.nonces[code] = params["nonce"]
        out = {"code": code, "state": params.get("state", ""), "session_state": str(uuid.uuid4())}
        return redirect_with(params.get("redirect_uri", ""), out)

    async def authorize(self, exchange: _Exchange) -> Response:
        params = dict(exchange.request.query_params)
        self.check_authorize_params(params)
        accounts = await self.db(self.world.ms_accounts)
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
            return await self.issue_code(params, match)
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
            f"<p>The app <strong>calsync</strong> (<code>{html.escape(self.client_id)}</code>) would like to:</p>"
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

    async def authorize_decision(self, exchange: _Exchange) -> Response:
        params = exchange.form
        self.check_authorize_params({**params, "response_type": "code"})
        if params.get("decision") != "allow":
            return redirect_with(
                params["redirect_uri"],
                {
                    "error": "access_denied",
                    "error_description": "AADSTS65004: User declined to consent to access the app.",
                    "state": params.get("state", ""),
                },
            )
        accounts = await self.db(self.world.ms_accounts)
        account = next((a for a in accounts if a.email == params.get("account", "").lower()), None)
        if account is None:
            return consent_error_page(
                "AADSTS50034: The user account does not exist in the directory.", status=400
            )
        exchange.account = account
        return await self.issue_code(params, account)

    def token_success(
        self,
        account: SandboxAccount,
        access_token: str,
        refresh_token: str,
        scopes: str,
        tenant: str,
        base: str,
        nonce: str | None = None,
    ) -> JSONResponse:
        now = self.clock()
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
                "aud": self.client_id,
                "iss": f"{base}/{tenant_id}/v2.0",
                "iat": issued_at,
                "nbf": issued_at,
                "exp": issued_at + 3600,
                "name": account.display_name or account.email,
                "oid": oid,
                "preferred_username": account.email,
                "email": account.email,
                "sub": _b64url(hashlib.sha256(f"{oid}:{self.client_id}".encode()).digest()[:24]),
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

    async def token(self, exchange: _Exchange) -> Response:
        form = exchange.form
        now = self.clock()
        tenant = exchange.request.path_params["tenant"]
        base = base_url(exchange.request)
        grant_type = form.get("grant_type", "")
        found_client, found_secret = client_credentials(exchange)

        # Who is this about? (for faults and the request log)
        grant_row = None
        code_row = None
        if grant_type == "refresh_token" and form.get("refresh_token"):
            grant_row = await self.db(self.world.grant_by_refresh_token, form["refresh_token"])
            if grant_row is not None and grant_row[1].provider == PROVIDER:
                exchange.account = grant_row[1]
            else:
                grant_row = None
        elif grant_type == "authorization_code" and form.get("code"):
            code_row = await self.db(self.world.ms_take_auth_code, form["code"])
            if code_row is not None:
                exchange.account = code_row[1]

        hits = await self.db(
            self.world.take_faults, PROVIDER, "token", exchange.account.email if exchange.account else None
        )
        faulted = await self._apply_faults(exchange, hits, identity=True, endpoint="token")
        if faulted is not None:
            return faulted

        if found_client != self.client_id:
            return _identity_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{found_client}' was not found in the "
                "directory 'calsync sandbox'.",
                [700016],
                now=now,
            )
        if not secrets.compare_digest(found_secret.encode(), self.client_secret.encode()):
            return _identity_error(
                401,
                "invalid_client",
                f"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
                f"request is the client secret value, not the client secret ID, for a secret added to "
                f"app '{self.client_id}'.",
                [7000215],
                now=now,
            )

        if grant_type == "refresh_token":
            if grant_row is None:
                return aadsts_error(70000, now=now, client_id=self.client_id)
            grant, account = grant_row
            if grant.status != "valid":
                return aadsts_error(
                    grant.aadsts or 50173,
                    now=now,
                    client_id=self.client_id,
                    suberror=grant.suberror or None,
                    description=grant.error_description,
                )
            new_refresh = await self.db(self.world.ms_rotate_refresh_token, grant.id)
            access = await self.db(self.world.issue_access_token, grant.id, now, ACCESS_TOKEN_LIFETIME)
            return self.token_success(
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
                return aadsts_error(70008, now=now, client_id=self.client_id)
            if code.client_id != self.client_id:
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
            grant = await self.db(self.world.issue_grant, account.id, scopes)
            access = await self.db(self.world.issue_access_token, grant.id, now, ACCESS_TOKEN_LIFETIME)
            nonce = self.nonces.pop(code.code, None)
            return self.token_success(account, access.token, grant.refresh_token, scopes, tenant, base, nonce)

        return _identity_error(
            400,
            "unsupported_grant_type",
            f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'.",
            [70003],
            now=now,
        )
