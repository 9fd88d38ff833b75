"""The reconnect pages: `GET /connect/{provider}?t=<signed link>` sends the browser to the provider's
consent page; `GET /oauth/{provider}/callback` finishes the sign-in and says what happened.

The router only calls `ReconnectService` and renders; no JavaScript, readable on a phone. Every
response is `no-store` and sends no referrer (the link and the code must not leak to another site).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from calsync.render.words import first_sync_note
from calsync.syncbackend.reconnect import PROVIDERS, Failure, Outcome, Problem, ReconnectService
from calsync.web.templating import make_templates

NO_STORE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
MAX_QUERY_VALUE = 4096

# What each problem page says: (title, what happened, what to do next).
ASK_AGAIN = "Ask @calsync in Slack for a new link (type `/calsync reconnect`)."
MESSAGES: dict[Problem, tuple[str, str, str]] = {
    Problem.LINK_INVALID: (
        "This link doesn't work",
        "This reconnect link is not valid: it may have been cut off when it was copied, or changed.",
        ASK_AGAIN,
    ),
    Problem.LINK_EXPIRED: (
        "This link has expired",
        "Reconnect links work for 30 minutes, and this one is older than that.",
        ASK_AGAIN,
    ),
    Problem.LINK_USED: (
        "This link was already used",
        "Each reconnect link works once, and this one has been opened before.",
        ASK_AGAIN,
    ),
    Problem.UNKNOWN_USER: (
        "This link doesn't work",
        "The SalesPartner account this link was made for no longer exists.",
        "Ask SalesPartner support for help.",
    ),
    Problem.UNKNOWN_STATE: (
        "This sign-in can't be finished",
        "calsync doesn't recognise this sign-in: it may have been started somewhere else, or the page was reloaded.",
        ASK_AGAIN,
    ),
    Problem.STATE_EXPIRED: (
        "This sign-in took too long",
        "The sign-in was started more than 20 minutes ago, so it can't be finished any more.",
        ASK_AGAIN,
    ),
    Problem.STATE_USED: (
        "This sign-in is already finished",
        "This sign-in has been completed (or tried) before; reloading the page can't repeat it.",
        "If your calendar still isn't connected, " + ASK_AGAIN[0].lower() + ASK_AGAIN[1:],
    ),
    Problem.PROVIDER_MISMATCH: (
        "This sign-in can't be finished",
        "The answer came back from a different calendar service than the one the sign-in was started with.",
        ASK_AGAIN,
    ),
    Problem.DENIED: (
        "Nothing was connected",
        "You chose not to allow access on the sign-in page, so SalesPartner still can't reach your calendar.",
        "When you're ready, ask @calsync in Slack for a new link and choose Allow.",
    ),
    Problem.PROVIDER_ERROR: (
        "The sign-in didn't work",
        "The calendar service answered with an error, so nothing was connected.",
        "Try again in a few minutes: " + ASK_AGAIN[0].lower() + ASK_AGAIN[1:],
    ),
    Problem.WRONG_ACCOUNT: (
        "That's a different account",
        "",  # made per case
        "",
    ),
    Problem.NOT_CONFIGURED: (
        "This calendar service isn't set up",
        "calsync isn't configured for this calendar service.",
        "Ask SalesPartner support for help.",
    ),
}


def _first_name(name: str, email: str | None) -> str:
    return (name.split()[0] if name.strip() else (email or "").split("@")[0]) or "someone else"


def problem_texts(failure: Failure) -> tuple[str, str, str]:
    title, what, next_step = MESSAGES[failure.problem]
    if failure.problem is Problem.WRONG_ACCOUNT:
        owner = _first_name(failure.rep_name, failure.rep_email)
        what = (
            f"This link is for {owner}'s calendar ({failure.rep_email}), but you signed in as "
            f"{failure.account_email}. Nothing was changed."
        )
        next_step = (
            f"If you are {owner}, ask @calsync for a new link and sign in with {failure.rep_email}. "
            "Otherwise, ask @calsync in Slack for your own link."
        )
    return title, what, next_step


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


__all__ = ["create_reconnect_router", "problem_texts"]
