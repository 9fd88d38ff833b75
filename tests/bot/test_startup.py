"""Start-up makes no network call: building the Bolt app and the web app, and serving them, asks
Slack nothing until the first Slack request arrives (then Bolt checks its token once, lazily)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from calsync.app import Services, build_bolt_app, build_slack_bot, build_troubleshooter, build_web_app
from calsync.db import make_engine, make_session_factory
from calsync.sandbox.server import BackgroundServer
from calsync.settings import Settings
from calsync.syncbackend import migrate
from calsync.syncbackend.crypto import TokenCipher, generate_key
from tests.bot.conftest import sign, wait_for

SECRET = "startup-test-signing-secret"
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


class Recorder:
    """A stand-in Slack Web API (and response URLs) on loopback that records every request."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def api(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        self.calls.append(method)
        if method == "auth.test":
            return JSONResponse(
                {"ok": True, "user_id": "U0BOT", "bot_id": "B0BOT", "team_id": "T0TEAM", "user": "calsync"}
            )
        return JSONResponse({"ok": True})

    async def response(self, request: Request) -> JSONResponse:
        self.calls.append("response_url")
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method}", self.api, methods=["GET", "POST"]),
                Route("/response/{token}", self.response, methods=["POST"]),
            ]
        )


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    stub = Recorder()
    with BackgroundServer(stub.app()) as server:
        yield stub, server.url


def test_building_and_serving_the_app_calls_no_one_until_the_first_request(
    tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    stub, slack_url = recorder
    url = f"sqlite:///{tmp_path / 'startup.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        CALSYNC_STATE_DIR=tmp_path,
        SLACK_API_URL=f"{slack_url}/api/",
        SLACK_BOT_TOKEN=SecretStr("xoxb-startup-test"),
        SLACK_SIGNING_SECRET=SecretStr(SECRET),
    )
    services = Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        cipher=TokenCipher([generate_key()]),
        clock=lambda: NOW,
        providers={},
    )
    try:
        bot = build_slack_bot(services, build_troubleshooter(services))
        bolt_app = build_bolt_app(services, bot)
        assert bolt_app is not None
        web = build_web_app(services, bolt_app)
        assert stub.calls == []  # building asked Slack nothing

        with BackgroundServer(web) as server, httpx.Client(timeout=10) as http:
            assert http.get(f"{server.url}/healthz").status_code == 200
            assert stub.calls == []  # nor did serving, nor a health check

            form = {
                "command": "/calsync",
                "text": "help",
                "user_id": "U0NOBODY",
                "channel_id": "C0HELP",
                "team_id": "T0TEAM",
                "response_url": f"{slack_url}/response/first",
                "trigger_id": "trig1",
            }
            body = urlencode(form).encode()
            headers = {**sign(body, SECRET), "Content-Type": "application/x-www-form-urlencoded"}
            assert http.post(f"{server.url}/slack/events", content=body, headers=headers).status_code == 200
            # The first Slack request is when Bolt checks its token (once), and the answer goes out.
            wait_for(lambda: "response_url" in stub.calls)
            assert stub.calls[0] == "auth.test"
            assert json.dumps(stub.calls).count("auth.test") == 1
    finally:
        engine.dispose()
