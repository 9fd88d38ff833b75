"""`calsync serve` as a new user runs it: sandbox mode, an empty database, a browser-less check."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

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
    env.update({"CALSYNC_STATE_DIR": str(tmp_path), "PYTHONIOENCODING": "utf-8"})
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
    assert f"http://127.0.0.1:{port}/playground" in notes


@pytest.mark.parametrize("secret", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_serve_with_a_bot_token_and_no_signing_secret_refuses_to_start(
    tmp_path: Path, secret: str | None
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
