"""The HTTP app: Slack's events, commands and interactivity at `POST /slack/events` (Bolt's FastAPI
adapter verifies each request's signature and age), and `GET /healthz`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError


def database_is_up(engine: Engine) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    return check


def create_web_app(
    *, bolt_app: AsyncApp | None, healthy: Callable[[], bool], routers: Sequence[APIRouter] = ()
) -> FastAPI:
    """The app; `routers` add the pages (reconnect, reports, playground) built by the composition root."""
    from calsync.web.templating import STATIC_DIR

    app = FastAPI(title="calsync", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for router in routers:
        app.include_router(router)

    if bolt_app is not None:
        handler = AsyncSlackRequestHandler(bolt_app)

        @app.post("/slack/events", include_in_schema=False)
        async def slack_events(request: Request) -> Response:
            return await handler.handle(request)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 when calsync can serve (its database answers), 503 otherwise."""
        up = await asyncio.to_thread(healthy)
        return JSONResponse({"ok": up, "database": "up" if up else "down"}, status_code=200 if up else 503)

    return app
