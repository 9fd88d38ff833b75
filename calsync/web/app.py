"""The HTTP app: Slack's events, commands and interactivity at `POST /slack/events` (each request's
size, age and signature verified on the raw bytes before anything parses it, `slack_verify.py`; then
Bolt), `GET /healthz` (`healthy`: `calsync.store.web.database_is_up`) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp

from calsync.web.slack_verify import Refusal, SlackVerifier

log = logging.getLogger(__name__)

# Where Bolt looks for who and where (its `extract_*_id`), at the top of a body and inside these.
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread")
_IDS = ("user", "team", "enterprise", "channel")


def slack_body_problem(body: bytes, content_type: str) -> str | None:
    """Why `body` cannot be a request from Slack, or None.

    Bolt reads a body as Slack's (a JSON object, a form, or a form whose `payload` is a JSON object)
    before it checks the signature, and fails with a 500 on another shape: an id that is a number, an
    `event` that is a string, an empty `actions` list. Such a body gets a 400 here instead. The body is
    split the way Bolt splits it (`slack_bolt.request.internals.parse_body`)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if content_type.split(";")[0].strip() == "application/json" or text.startswith("{"):
        return _json_problem(text)
    if "payload" in text:
        payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
        return _json_problem(payload) if payload is not None else None
    return None


def _json_problem(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return "not JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    if "event" in data and not (
        isinstance(data["event"], dict) and isinstance(data["event"].get("type"), str)
    ):
        return "an event without a type"
    actions = data.get("actions")
    if "actions" in data and not (
        isinstance(actions, list)
        and actions
        and all(isinstance(a, dict) and isinstance(a.get("action_id", ""), str) for a in actions)
    ):
        return "actions that are not a list of actions"
    for key in ("authorizations", "response_urls"):
        if data.get(key) is not None and not (
            isinstance(data[key], list) and all(isinstance(item, dict) for item in data[key])
        ):
            return f"{key} that are not a list of objects"
    return _ids_problem(data, depth=0)


def _ids_problem(data: dict[str, Any], depth: int) -> str | None:
    for key in _IDS:
        if not isinstance(data.get(key), str | dict | None):
            return f"a {key} that is neither an id nor an object"
    if depth < 3:
        nested = [data.get(key) for key in _NESTED] + (data.get("authorizations") or [])[:1]
        for inner in nested:
            if isinstance(inner, dict) and (problem := _ids_problem(inner, depth + 1)):
                return problem
    return None


def create_web_app(
    *,
    bolt_app: AsyncApp | None,
    healthy: Callable[[], bool],
    routers: Sequence[APIRouter] = (),
    slack_verifier: SlackVerifier | None = None,
    lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    metrics: CollectorRegistry | None = None,
    playground: bool = False,
    readme: Path | None = None,
) -> FastAPI:
    """The app; `routers` add the pages (reconnect, reports, playground) built by the composition root.
    With `bolt_app`, `slack_verifier` is required: no request reaches Bolt unverified. With `metrics`,
    `GET /metrics` shows that registry in Prometheus's text format. `GET /` is a small page linking
    what there is: the playground (`playground`: sandbox mode), /healthz, /metrics and the README
    (served as text at `/readme` when the file `readme` is there)."""
    from calsync.web.templating import STATIC_DIR, make_templates

    if bolt_app is not None and slack_verifier is None:
        raise ValueError("serving /slack/events needs a SlackVerifier (SLACK_SIGNING_SECRET)")
    from calsync.web import hardening

    app = FastAPI(
        title="calsync",
        docs_url=None,
        redoc_url=None,
        lifespan=(lambda _app: lifespan()) if lifespan is not None else None,
    )
    hardening.install(app)  # security headers on every response; 503/500 pages
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for router in routers:
        app.include_router(router)

    if bolt_app is not None and slack_verifier is not None:
        verifier = slack_verifier

        def refused(refusal: Refusal) -> Response:
            # Connection: close, so uvicorn drops an oversized body instead of reading it to the end.
            headers = {"Connection": "close"} if refusal.status == 413 else None
            return PlainTextResponse(refusal.text, status_code=refusal.status, headers=headers)

        @app.post("/slack/events", include_in_schema=False)
        async def slack_events(request: Request) -> Response:
            refusal = verifier.check_headers(request.headers)
            if refusal is not None:
                return refused(refusal)
            body = await verifier.read_body(request.stream())
            if isinstance(body, Refusal):
                return refused(body)
            refusal = verifier.check_signature(request.headers, body)
            if refusal is not None:
                return refused(refusal)
            problem = slack_body_problem(body, request.headers.get("content-type", ""))
            if problem is not None:
                return PlainTextResponse(f"not a Slack request: {problem}", status_code=400)
            try:
                return to_starlette_response(
                    await bolt_app.async_dispatch(to_async_bolt_request(request, body))
                )
            except Exception:  # Bolt could not read the request (listeners run after the ack, elsewhere)
                log.warning("a request to /slack/events could not be read", exc_info=True)
                return PlainTextResponse("not a Slack request", status_code=400)

    if metrics is not None:
        registry = metrics

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics(request: Request) -> Response:
            """Read in a worker thread: the question queue's figures are a database read, which must
            not hold up the acks on the event loop."""
            encode, content_type = choose_encoder(request.headers.get("accept", ""))
            return Response(await asyncio.to_thread(encode, registry), headers={"Content-Type": content_type})

    templates = make_templates()
    shown_readme = readme if readme is not None and readme.is_file() else None

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        context = {
            "home_url": "/",
            "playground": playground,
            "metrics": metrics is not None,
            "readme": shown_readme is not None,
        }
        return templates.TemplateResponse(request, "index.html", context)

    if shown_readme is not None:
        readme_path = shown_readme

        @app.get("/readme", include_in_schema=False)
        async def readme_text() -> Response:
            text = await asyncio.to_thread(readme_path.read_text, encoding="utf-8")
            return PlainTextResponse(text, media_type="text/plain; charset=utf-8")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 when calsync can serve (its database answers), 503 otherwise."""
        up = await asyncio.to_thread(healthy)
        return JSONResponse({"ok": up, "database": "up" if up else "down"}, status_code=200 if up else 503)

    return app
