"""`calsync sync EMAIL` and `calsync worker --once`, run as the real console command in a subprocess
against its own sandbox, on the demo world."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_answer import DEMO, run


@pytest.fixture
def state(tmp_path: Path) -> Path:
    result = run(tmp_path, "sandbox", "load", str(DEMO))
    assert result.returncode == 0, result.stderr.decode()
    return tmp_path


def diagnosis_codes(state: Path, email: str) -> set[str]:
    result = run(state, "diagnose", email, "--json")
    assert result.returncode == 0, result.stderr.decode()
    return {finding["code"] for finding in json.loads(result.stdout)["findings"]}


def test_sync_pushes_the_pending_booking_and_the_diagnosis_agrees(state: Path) -> None:
    assert "sync.pending" in diagnosis_codes(state, "kate@northwind.example")

    result = run(state, "sync", "kate@northwind.example", "--json")

    assert result.returncode == 0, result.stderr.decode()
    (cycle,) = json.loads(result.stdout)
    assert (cycle["status"], cycle["provider"], cycle["pushed"]) == ("ok", "google", {"created": 1})
    assert "sync.pending" not in diagnosis_codes(state, "kate@northwind.example")


# (rep, exit code, where calsync says it, what it says)
SYNC_LINES = [
    ("omar@northwind.example", 0, "stdout", "calendar edit brought back to SalesPartner"),
    ("carla@northwind.example", 1, "stdout", "authorization no longer works; reconnect it"),
    ("pia@northwind.example", 1, "stdout", "asked us to slow down"),
    ("sam@northwind.example", 1, "stderr", "has no active calendar connection"),  # the agent
]


@pytest.mark.parametrize(("email", "code", "stream", "says"), SYNC_LINES)
def test_sync_says_what_it_did(state: Path, email: str, code: int, stream: str, says: str) -> None:
    result = run(state, "sync", email)
    assert result.returncode == code, result.stderr.decode()
    output: bytes = getattr(result, stream)
    assert says in output.decode("utf-8")


def test_worker_once_syncs_every_due_connection(state: Path) -> None:
    result = run(state, "worker", "--once")
    assert result.returncode == 0, result.stderr.decode()
    note = result.stderr.decode()
    assert "cycles" in note and "grants checked" in note
    again: dict[str, Any] = json.loads(run(state, "sync", "kate@northwind.example", "--json").stdout)[0]
    assert again["pushed"] == {}, "the worker already sent Kate's booking"
