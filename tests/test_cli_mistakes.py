"""Mistakes a new user makes, each told in one sentence (issue 18, item 1): the command as a process,
its exit code, its few lines on stderr, and no traceback — unless `--debug` asks for one."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import run_calsync

CALSYNC = str(Path(sys.executable).parent / "calsync")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def key_file_is_a_directory(state: Path) -> None:
    (state / "encryption.key").mkdir(parents=True)


def empty_key_file(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "encryption.key").write_text("\n")


@dataclass(frozen=True)
class Mistake:
    args: list[str]
    env: dict[str, str]
    says: str
    exit_code: int = 1
    prepare: Callable[[Path], None] | None = None
    max_lines: int = 3


MISTAKES = [
    pytest.param(
        Mistake(
            ["diagnose", "ana@northwind.example"],
            {"DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/calsync"},
            "calsync: cannot reach the database (",
        ),
        id="database-unreachable",
    ),
    pytest.param(
        Mistake(["db", "current"], {"DATABASE_URL": "postgres//localhost/calsync"}, "DATABASE_URL is not a database URL"),
        id="database-url-malformed",
    ),
    pytest.param(
        Mistake(["diagnose", "ana@northwind.example"], {"DATABASE_URL": "mysqlx://db/calsync"}, "DATABASE_URL is not a database URL"),
        id="database-url-unknown-dialect",
    ),
    pytest.param(
        Mistake(["diagnose", "ana@northwind.example"], {"CALSYNC_BACKLOG_MAX": "lots"}, "invalid setting: CALSYNC_BACKLOG_MAX (got 'lots')"),
        id="setting-invalid",
    ),
    pytest.param(
        Mistake(["diagnose", "ana@northwind.example"], {"GOOGLE_CLIENT_ID": "id.apps.example"}, "CALSYNC_ENCRYPTION_KEY is not set"),
        id="setting-missing",
    ),
    pytest.param(
        Mistake(
            ["diagnose", "ana@northwind.example"],
            {"GOOGLE_CLIENT_ID": "id.apps.example", "CALSYNC_ENCRYPTION_KEY": "not-a-key"},
            "CALSYNC_ENCRYPTION_KEY: ",
        ),
        id="setting-encryption-key-malformed",
    ),
    pytest.param(
        Mistake(["diagnose", "ana@northwind.example"], {}, "encryption.key: Is a directory", prepare=key_file_is_a_directory),
        id="key-file-unreadable",
    ),
    pytest.param(
        Mistake(["diagnose", "ana@northwind.example"], {}, "encryption.key is empty", prepare=empty_key_file),
        id="key-file-empty",
    ),
    pytest.param(
        Mistake(["serve", "--port", "0"], {"SLACK_BOT_TOKEN": "xoxb-1-2-3"}, "SLACK_SIGNING_SECRET is not set", exit_code=2),
        id="slack-token-without-signing-secret",
    ),
]  # fmt: skip


run = run_calsync


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_is_one_sentence_and_a_non_zero_exit(tmp_path: Path, mistake: Mistake) -> None:
    state = tmp_path / "state"
    if mistake.prepare is not None:
        mistake.prepare(state)
    done = run(mistake.args, mistake.env, state)
    assert done.returncode == mistake.exit_code, done.stderr
    told = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not line.startswith("No Google/Microsoft")
    ]
    assert len(told) <= mistake.max_lines and any(mistake.says in line for line in told), done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("how", ["--debug", "CALSYNC_DEBUG"])
def test_debug_shows_the_traceback(tmp_path: Path, how: str) -> None:
    env = {"DATABASE_URL": "postgres//localhost/calsync"}
    args = ["db", "current"]
    if how == "--debug":
        args = ["--debug", *args]
    else:
        env[how] = "1"
    done = run(args, env, tmp_path / "state")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["serve", "--port", str(port)], {}, tmp_path / "state")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"calsync serve: port {port} on 127.0.0.1 is already in use: stop what listens there, or use --port."
    ]
