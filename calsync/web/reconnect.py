"""The reconnect pages: `GET /connect/{provider}?t=<signed link>` sends the browser to the provider's
consent page; `GET /oauth/{provider}/callback` finishes the sign-in and says what happened.

The router only calls `ReconnectService` (`calsync.flows.reconnect`) and renders (the words are
`calsync.render.reconnect`'s); no JavaScript, readable on a phone. Every
response is `no-store` and sends no referrer (the link and the code must not leak to another site).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from calsync.flows.reconnect import PROVIDERS, Failure, Outcome, Problem, ReconnectService
from calsync.render.reconnect import problem_texts
from calsync.render.words import first_sync_note
from calsync.web.templating import make_templates

NO_STORE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
MAX_QUERY_VALUE = 4096


def create_reconnect_router(service: ReconnectService) -> APIRouter:
    router = APIRouter()
    templates = make_templates()

    def problem_page(request: Request, failure: Failure) -> Response:
        title, what, next_step = problem_texts(failure)
        return templates.TemplateResponse(
            request,
            "reconnect_problem.html",
            {
                "failure": failure,
                "title": title,
                "what": what,
                "next_step": next_step,
                "detail": failure.detail,
            },
            status_code=failure.status_code,
            headers=NO_STORE,
        )

    def done_page(request: Request, outcome: Outcome) -> Response:
        return templates.TemplateResponse(
            request,
            "reconnect_done.html",
            {"outcome": outcome, "sync_note": first_sync_note(outcome.first_sync)},
            status_code=200,
            headers=NO_STORE,
        )

    @router.get("/connect/{provider}", response_class=HTMLResponse, include_in_schema=False)
    async def connect(request: Request, provider: str, t: str = "") -> Response:
        if provider not in PROVIDERS:
            return problem_page(request, Failure(Problem.NOT_CONFIGURED, None))
        result = await service.begin(t[:MAX_QUERY_VALUE], provider)
        if isinstance(result, Failure):
            return problem_page(request, result)
        return RedirectResponse(result.redirect_url, status_code=302, headers=NO_STORE)

    @router.get("/oauth/{provider}/callback", response_class=HTMLResponse, include_in_schema=False)
    async def callback(request: Request, provider: str) -> Response:
        if provider not in PROVIDERS:
            return problem_page(request, Failure(Problem.NOT_CONFIGURED, None))
        params = {key: value[:MAX_QUERY_VALUE] for key, value in request.query_params.items()}
        result = await service.complete(provider, params)
        if isinstance(result, Failure):
            return problem_page(request, result)
        return done_page(request, result)

    return router


__all__ = ["create_reconnect_router"]
