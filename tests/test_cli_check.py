"""`calsync check` (issue 18): the settings' findings before the first run, as a process: a table of
environments -> the lines it prints (each expected line is the start of one printed line) and the
exit code; never a traceback."""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.harness import run_calsync

CALSYNC = str(Path(sys.executable).parent / "calsync")
FERNET_KEY = Fernet.generate_key().decode()
LINK_SECRET = "a-link-secret-of-enough-length-0123"
MIGRATED = "migrated"  # `database` value: a SQLite file brought to head first


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PRODUCTION = {
    "GOOGLE_CLIENT_ID": "id.apps.example",
    "GOOGLE_CLIENT_SECRET": "google-secret",
    "CALSYNC_ENCRYPTION_KEY": FERNET_KEY,
    "CALSYNC_LINK_SECRET": LINK_SECRET,
    "CALSYNC_PUBLIC_URL": "https://calsync.example.com",
    "SLACK_BOT_TOKEN": "xoxb-1-2-3",
    "SLACK_SIGNING_SECRET": "signing-secret",
    "CALSYNC_SUPPORT_CHANNEL": "C0SUPPORT",
    "CALSYNC_AGENT_USERGROUP": "S0AGENTS",
}


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


@dataclass(frozen=True)
class Case:
    env: dict[str, str]
    lines: list[str]
    exit_code: int
    database: str = MIGRATED
    absent: list[str] = field(default_factory=list)  # line starts that must not be printed


CASES = [
    pytest.param(
        Case({}, ["info: mode: sandbox: neither GOOGLE_CLIENT_ID nor MICROSOFT_CLIENT_ID is set",
                  "info: SLACK_BOT_TOKEN: not set", "ready (0 warnings)"], 0, database="fresh"),
        id="sandbox-fresh",
    ),
    pytest.param(
        Case({}, ["info: DATABASE_URL: sqlite:///", "ready (0 warnings)"], 0, database="fresh",
             absent=["error:"]),
        id="sandbox-unmigrated-is-fine",
    ),
    pytest.param(
        Case(PRODUCTION, ["info: mode: real providers configured (GOOGLE_CLIENT_ID)",
                          "ok: DATABASE_URL: sqlite:///", "ok: GOOGLE_CLIENT_ID: set, with its secret",
                          "ok: CALSYNC_ENCRYPTION_KEY: 1 valid Fernet key(s)", "ok: CALSYNC_LINK_SECRET: set",
                          "ok: CALSYNC_PUBLIC_URL: https://calsync.example.com",
                          "ok: Slack: HTTP on /slack/events", "ready (0 warnings)"], 0),
        id="production-ready-http",
    ),
    pytest.param(
        Case({**without(PRODUCTION, "SLACK_SIGNING_SECRET"), "SLACK_APP_TOKEN": "xapp-1-A-2"},
             ["ok: Slack: Socket Mode (SLACK_BOT_TOKEN and SLACK_APP_TOKEN set)", "ready (0 warnings)"], 0),
        id="production-ready-socket-mode",
    ),
    pytest.param(
        Case(PRODUCTION, ["error: DATABASE_URL: sqlite:///", "not ready: 1 error"], 1, database="fresh"),
        id="production-unmigrated",
    ),
    pytest.param(
        Case({**PRODUCTION, "DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/calsync"},
             ["error: DATABASE_URL: cannot reach postgresql+psycopg://nobody@127.0.0.1:", "not ready: 1 error"], 1),
        id="database-unreachable",
    ),
    pytest.param(
        Case({**PRODUCTION, "DATABASE_URL": "postgres//localhost/calsync"},
             ["error: DATABASE_URL: not a database URL calsync can use"], 1),
        id="database-url-malformed",
    ),
    pytest.param(
        Case({**PRODUCTION, "DATABASE_URL": "mysqlx://db/calsync"},
             ["error: DATABASE_URL: not a database URL calsync can use"], 1),
        id="database-url-unknown-dialect",
    ),
    pytest.param(
        Case(without(PRODUCTION, "SLACK_SIGNING_SECRET"),
             ["error: SLACK_SIGNING_SECRET: is not set, so requests to /slack/events cannot be verified"], 1),
        id="slack-bot-token-without-signing-secret-or-app-token",
    ),
    pytest.param(
        Case({**without(PRODUCTION, "SLACK_SIGNING_SECRET"), "SLACK_APP_TOKEN": "xoxb-4-5-6"},
             ["error: SLACK_APP_TOKEN: must be an app-level token (xapp-"], 1),
        id="slack-app-token-not-xapp",
    ),
    pytest.param(
        Case(without(PRODUCTION, "SLACK_BOT_TOKEN"),
             ["warn: SLACK_BOT_TOKEN: not set", "warn: SLACK_SIGNING_SECRET: is set without SLACK_BOT_TOKEN",
              "ready (2 warnings)"], 0),
        id="slack-not-configured",
    ),
    pytest.param(
        Case(without(PRODUCTION, "CALSYNC_PUBLIC_URL"), ["error: CALSYNC_PUBLIC_URL: is not set"], 1),
        id="public-url-unset-in-production",
    ),
    pytest.param(
        Case({**PRODUCTION, "CALSYNC_PUBLIC_URL": "http://calsync.example.com"},
             ["error: CALSYNC_PUBLIC_URL: must be https with real providers"], 1),
        id="public-url-http-in-production",
    ),
    pytest.param(
        Case({"CALSYNC_PUBLIC_URL": "calsync.example.com"},
             ["error: CALSYNC_PUBLIC_URL: 'calsync.example.com' is not an http(s) URL"], 1),
        id="public-url-not-a-url",
    ),
    pytest.param(
        Case(without(PRODUCTION, "CALSYNC_LINK_SECRET", "CALSYNC_ENCRYPTION_KEY"),
             ["error: CALSYNC_ENCRYPTION_KEY: is not set", "error: CALSYNC_LINK_SECRET: is not set",
              "not ready: 2 errors"], 1),
        id="secrets-unset-with-real-providers",
    ),
    pytest.param(
        Case({**PRODUCTION, "CALSYNC_ENCRYPTION_KEY": "not-a-key", "CALSYNC_LINK_SECRET": "short"},
             ["error: CALSYNC_ENCRYPTION_KEY: encryption key #1 is not a valid Fernet key",
              "error: CALSYNC_LINK_SECRET: must be at least 16 characters"], 1),
        id="secrets-invalid",
    ),
    pytest.param(
        Case({**without(PRODUCTION, "GOOGLE_CLIENT_SECRET"), "MICROSOFT_CLIENT_ID": "ms-app",
              "MICROSOFT_CLIENT_SECRET": "ms-secret"},
             ["info: mode: real providers configured (GOOGLE_CLIENT_ID, MICROSOFT_CLIENT_ID)",
              "error: GOOGLE_CLIENT_SECRET: is not set, but GOOGLE_CLIENT_ID is",
              "ok: MICROSOFT_CLIENT_ID: set, with its secret"], 1),
        id="client-id-without-secret",
    ),
    pytest.param(
        Case(without(PRODUCTION, "CALSYNC_SUPPORT_CHANNEL", "CALSYNC_AGENT_USERGROUP"),
             ["warn: CALSYNC_SUPPORT_CHANNEL: not set", "warn: CALSYNC_AGENT_SLACK_IDS: not set, nor CALSYNC_AGENT_USERGROUP",
              "ready (2 warnings)"], 0),
        id="support-and-agents-unset-warn",
    ),
    pytest.param(
        Case({"CALSYNC_BACKLOG_MAX": "lots"},
             ["error: CALSYNC_BACKLOG_MAX: Input should be a valid integer", "not ready: 1 error"], 1),
        id="setting-does-not-parse",
    ),
]  # fmt: skip


run = run_calsync


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    state = tmp_path_factory.mktemp("migrated") / "state"
    url = f"sqlite:///{state / 'calsync.db'}"
    done = run(["db", "upgrade"], {"DATABASE_URL": url}, state)
    assert done.returncode == 0, done.stderr
    return url


@pytest.mark.parametrize("case", CASES)
def test_check_says_what_is_missing_or_wrong(tmp_path: Path, case: Case, migrated_database: str) -> None:
    env = dict(case.env)
    if case.database == MIGRATED:
        env.setdefault("DATABASE_URL", migrated_database)
    done = run(["check"], env, tmp_path / "state")
    printed = done.stdout.splitlines()
    for expected in case.lines:
        assert any(line.startswith(expected) for line in printed), f"{expected!r} not in:\n{done.stdout}"
    for unwanted in case.absent:
        assert not any(line.startswith(unwanted) for line in printed), done.stdout
    assert done.returncode == case.exit_code, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "state" / "calsync.db").exists()  # checking never creates the database


def test_check_json_is_one_record_for_machines(tmp_path: Path, migrated_database: str) -> None:
    env = {**without(PRODUCTION, "CALSYNC_LINK_SECRET"), "DATABASE_URL": migrated_database}
    done = run(["check", "--json"], env, tmp_path / "state")
    assert done.returncode == 1
    record = json.loads(done.stdout)
    assert record["ready"] is False and record["sandbox"] is False
    assert {"level": "error", "setting": "CALSYNC_LINK_SECRET"}.items() <= next(
        f for f in record["findings"] if f["setting"] == "CALSYNC_LINK_SECRET"
    ).items()
    assert all(set(f) == {"level", "setting", "message"} for f in record["findings"])
