"""What every HTTP response carries, and the pages shown when something fails underneath.

Headers (a pure ASGI middleware, so the ack path pays one header merge and no extra task):

- every response: `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`;
- every HTML response: a Content-Security-Policy — only our own stylesheets, forms posting to us, no
  scripts (the pages need none), no `<base>`, and `frame-ancestors 'none'` (no clickjacking) — and a
  referrer policy: `no-referrer` on the pages whose URLs carry a token (`/connect/…?t=`, `/oauth/…`,
  `/reports/{token}`, `/fleet/{token}`), `same-origin` elsewhere. A header a route set itself is kept.

Failures: the database down (any `SQLAlchemyError` out of a route) is a 503 page with one plain
sentence and a `Retry-After`; anything else unexpected is a 500 page (and the traceback in the log).
These pages carry the same headers.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calsync.web.templating import make_templates

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
TOKEN_PATHS = ("/connect/", "/oauth/", "/reports/", "/fleet/")
# Whoever opens the page (a rep following a reconnect link, say) can do nothing about a database.
DATABASE_DOWN = (
    "calsync can't show this page right now because of a problem on our side. Nothing was changed; "
    "please try again in a few minutes."
)


def security_headers(path: str, content_type: str) -> dict[str, str]:
    headers = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
    if content_type.split(";")[0].strip().lower() == "text/html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["Referrer-Policy"] = "no-referrer" if path.startswith(TOKEN_PATHS) else "same-origin"
    return headers


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(path, headers.get("content-type", "")).items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """The headers on every response and the error pages, on `app`."""
    templates = make_templates()

    def problem_page(request: Request, status: int, title: str, message: str) -> Response:
        headers = {
            "Cache-Control": "no-store",
            **security_headers(request.url.path, "text/html"),
            **({"Retry-After": "30"} if status == 503 else {}),
        }
        context = {"title": title, "message": message, "hint": "", "status": status}
        return templates.TemplateResponse(
            request, "page_problem.html", context, status_code=status, headers=headers
        )

    async def database_unavailable(request: Request, error: Exception) -> Response:
        log.error(
            "database unavailable for %s %s: %s", request.method, request.url.path, type(error).__name__
        )
        return problem_page(request, 503, "calsync is unavailable for a moment", DATABASE_DOWN)

    async def server_error(request: Request, error: Exception) -> Response:
        # Starlette logs the traceback after this page is sent.
        return problem_page(
            request,
            500,
            "Something went wrong",
            "Something went wrong on our side. Please try again in a minute.",
        )

    app.add_exception_handler(SQLAlchemyError, database_unavailable)
    app.add_exception_handler(Exception, server_error)
    app.add_middleware(SecurityHeaders)


__all__ = ["CONTENT_SECURITY_POLICY", "DATABASE_DOWN", "SecurityHeaders", "install", "security_headers"]
