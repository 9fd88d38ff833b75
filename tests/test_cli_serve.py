"""`calsync serve` as a new user runs it: sandbox mode, an empty database, a browser-less check."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from calsync.app import utc_now
from calsync.db import make_engine
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.slack_emulator import build_slack_app
from calsync.sandbox.slack_requests import event_payload
from calsync.sandbox.slack_socket_mode import SocketModeHub
from calsync.sandbox.world import World
from calsync.syncbackend import migrate
from tests.bot.conftest import wait_for

CALSYNC = str(Path(sys.executable).parent / "calsync")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_in_sandbox_mode_answers_health_and_the_playground(tmp_path: Path) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOOGLE_", "MICROSOFT_", "SLACK_"))
    }
    # A narrow terminal: the URLs still come whole, each on a line of its own.
    env.update({"CALSYNC_STATE_DIR": str(tmp_path), "PYTHONIOENCODING": "utf-8", "COLUMNS": "40"})
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [CALSYNC, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or server.poll() is not None, timeout=90, what="calsync serve")
        assert server.poll() is None, server.communicate()[1].decode()
        assert httpx.get(f"{url}/healthz").json() == {"ok": True, "database": "up"}
        playground = httpx.get(f"{url}/playground").text
        assert "carla@northwind.example" in playground  # the empty database got the demo world
        answer = httpx.get(
            f"{url}/playground/ask",
            params={"rep": "carla@northwind.example", "q": "why isn't my appointment showing"},
        ).text
        assert "revoked" in answer and "/connect/google?t=" in answer
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    notes = stderr.decode()
    assert "using the sandbox emulators" in notes
    assert "loaded the demo scenario" in notes
    assert f"http://127.0.0.1:{port}/playground" in notes.splitlines()
    assert f"http://127.0.0.1:{port}/" in notes.splitlines()


@pytest.mark.parametrize("app_token", [None, "  "], ids=["http", "blank-app-token"])
@pytest.mark.parametrize("secret", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_serve_with_a_bot_token_and_no_signing_secret_refuses_to_start(
    tmp_path: Path, secret: str | None, app_token: str | None
) -> None:
    """Fail closed: unverifiable HTTP would accept forged commands. One sentence, no traceback."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOOGLE_", "MICROSOFT_", "SLACK_"))
    }
    env.update(
        {
            "CALSYNC_STATE_DIR": str(tmp_path),
            "SLACK_BOT_TOKEN": "xoxb-refuse-test",
            "SLACK_API_URL": "http://127.0.0.1:9/api/",  # nothing listens: no call could leave anyway
        }
    )
    if secret is not None:
        env["SLACK_SIGNING_SECRET"] = secret
    if app_token is not None:  # a blank app token is no Socket Mode: still HTTP, still unverifiable
        env["SLACK_APP_TOKEN"] = app_token
    done = subprocess.run(
        [CALSYNC, "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "SLACK_SIGNING_SECRET is not set" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def socket_mode_env(tmp_path: Path, slack_url: str, app_token: str) -> dict[str, str]:
    """Sandbox calendars, and Slack over Socket Mode through the test's Slack emulator (no signing secret)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOOGLE_", "MICROSOFT_", "SLACK_"))
    }
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "CALSYNC_STATE_DIR": str(tmp_path),
            "PYTHONIOENCODING": "utf-8",
            "SLACK_API_URL": f"{slack_url}/api/",
            "SLACK_BOT_TOKEN": SOCKET_BOT_TOKEN,
            "SLACK_APP_TOKEN": app_token,
        }
    )
    return env


SOCKET_BOT_TOKEN, SOCKET_APP_TOKEN = "xoxb-sandbox-serve-socket", "xapp-1-sandbox-serve-socket"


@pytest.fixture
def socket_slack(tmp_path: Path) -> Iterator[tuple[World, str, SocketModeHub]]:
    """A Slack emulator with Socket Mode on, over the world in the database `calsync serve` will use."""
    url = f"sqlite:///{tmp_path / 'calsync.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    world = World(engine)
    app = build_slack_app(world, bot_token=SOCKET_BOT_TOKEN, app_token=SOCKET_APP_TOKEN, clock=utc_now)
    with BackgroundServer(app) as server:
        yield world, server.url, app.state.socket_mode
    engine.dispose()


def test_serve_over_socket_mode_connects_out_answers_and_still_serves_http(
    tmp_path: Path, socket_slack: tuple[World, str, SocketModeHub]
) -> None:
    world, slack_url, hub = socket_slack
    port = free_port()
    server = subprocess.Popen(
        [CALSYNC, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=socket_mode_env(tmp_path, slack_url, SOCKET_APP_TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or server.poll() is not None, timeout=90, what="calsync serve")
        assert server.poll() is None, server.communicate()[1].decode()
        hub.wait_for_connections(1)
        assert httpx.post(f"{url}/slack/events", content=b"{}").status_code == 404
        channel, _ = world.slack_open_dm("U0DEMOCARLA", utc_now())
        event = {
            "type": "message",
            "channel_type": "im",
            "user": "U0DEMOCARLA",
            "channel": channel,
            "text": "why isn't my appointment showing?",
            "ts": "1764200000.000100",
        }
        envelope_id = hub.push("events_api", event_payload(event, "EvServeSocket1"))
        assert hub.wait_for_ack(envelope_id, timeout=10).payload is None
        wait_for(
            lambda: any("revoked" in m.text for m in world.slack_messages(channel)),
            timeout=30,
            what="the answer in Carla's DM",
        )
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr.decode()  # SIGINT: a clean shutdown, the socket closed on the way
    assert f"Slack events over Socket Mode (SLACK_APP_TOKEN, via {slack_url}/api/)" in stderr.decode()
    assert hub.connections() == []  # closed on the way out


@pytest.mark.parametrize(
    ("app_token", "says"),
    [
        ("xoxb-a-bot-token", "SLACK_APP_TOKEN must be an app-level token"),
        ("xapp-1-of-another-app", "apps.connections.open: invalid_auth"),
    ],
    ids=["not-an-app-token", "refused-by-slack"],
)
def test_serve_stops_on_an_app_token_it_cannot_use(
    tmp_path: Path, socket_slack: tuple[World, str, SocketModeHub], app_token: str, says: str
) -> None:
    """Exit 2 with one sentence, no traceback, and no connection left open."""
    _, slack_url, hub = socket_slack
    done = subprocess.run(
        [CALSYNC, "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=socket_mode_env(tmp_path, slack_url, app_token),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 2, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("calsync serve:")]
    assert says in line
    assert "Traceback" not in done.stderr
    assert hub.connections() == []


def sync_runs_since(database: Path, since: str) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(database)) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM sync_runs WHERE started_at >= ?", (since,)
        ).fetchone()
    return int(count)


@pytest.mark.parametrize(
    ("flags", "syncs", "says"),
    [
        ([], True, "Also running: the sync engine; the answer worker."),
        (["--no-sync"], False, "no sync engine (run `calsync worker`)"),
    ],
    ids=["syncs-by-default", "no-sync"],
)
def test_serve_runs_the_sync_engine_unless_told_not_to(
    tmp_path: Path, flags: list[str], syncs: bool, says: str
) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOOGLE_", "MICROSOFT_", "SLACK_", "CALSYNC_"))
    }
    env.update({"CALSYNC_STATE_DIR": str(tmp_path), "PYTHONIOENCODING": "utf-8"})
    env.pop("DATABASE_URL", None)
    started = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    server = subprocess.Popen(
        [CALSYNC, "serve", "--port", str(port), *flags],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or server.poll() is not None, timeout=90, what="calsync serve")
        assert server.poll() is None, server.communicate()[1].decode()
        database = tmp_path / "calsync.db"
        if syncs:  # the demo's connections are due: the engine's first round runs their cycles
            wait_for(lambda: sync_runs_since(database, started), timeout=60, what="a sync run")
        else:  # serving a diagnosis runs no cycle; with no engine nothing else does either
            ask = {"rep": "ben@northwind.example", "q": "are my meetings syncing"}
            assert httpx.get(f"{url}/playground/ask", params=ask, timeout=30).status_code == 200
            assert sync_runs_since(database, started) == 0
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert says in stderr.decode(), stderr.decode()
