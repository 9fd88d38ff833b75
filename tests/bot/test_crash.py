"""kill -9 during a burst, as processes in production die: the serving process (and, on PostgreSQL,
an answer worker) is killed while answers are in flight and started again on the same database.
Every acked question is answered once, none twice, and no "Checking…" is left behind
(benchmarks/crash_test.py does the work: real processes, the emulators in their own, signed DMs
sent as Slack sends them and retried until acked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATABASE_BACKENDS

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.postgres
@pytest.mark.timeout(420)
@pytest.mark.parametrize("database", DATABASE_BACKENDS)
def test_every_acked_question_is_answered_once_across_a_kill_9(database: str) -> None:
    done = subprocess.run(
        [sys.executable, "crash_test.py", "--questions", "40", "--database", database, "--settle", "150"],
        cwd=BENCHMARKS,
        env={**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "40 questions, 40 acked" in done.stdout
    assert "lost 0, doubled 0, placeholders left 0" in done.stdout
    assert (
        "killed: " + ("answer worker 0, serving process" if database == "postgresql" else "serving process")
        in done.stdout
    )
