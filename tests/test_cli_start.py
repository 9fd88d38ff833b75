"""The command line starts without its heavy dependencies (issue 18, item 6): what a fresh interpreter
has imported after `import calsync.cli`, `calsync --help` and `calsync match`, read from
`sys.modules` in a subprocess. Times are `benchmarks/start_bench.py`'s business, never a test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
HEAVY = (
    *("sqlalchemy", "alembic", "slack_bolt", "slack_sdk", "fastapi", "uvicorn", "procrastinate", "msal"),
    *("google", "googleapiclient", "aiohttp", "httpx", "cryptography"),
)
NUMERIC = ("numpy", "scipy", "sklearn")

# Runs the `calsync` entry point with `argv`, then reports the heavy modules it imported on stderr.
PROBE = """
import json, sys
argv, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["calsync", *argv]
try:
    if argv == ["<import>"]:
        import calsync.cli
    else:
        from calsync.cli import main
        main()
except SystemExit:
    pass
loaded = sorted(name for name in watched if name in sys.modules)
sys.stderr.write("\\nIMPORTED " + json.dumps(loaded) + "\\n")
"""


def imported(argv: list[str], watched: tuple[str, ...], stdin: str = "") -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(watched)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    marker = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED ")]
    assert marker, done.stderr
    return list(json.loads(marker[-1].removeprefix("IMPORTED ")))


@pytest.mark.parametrize(
    ("argv", "watched"),
    [
        pytest.param(["<import>"], (*HEAVY, *NUMERIC, "rich", "pydantic", "yaml"), id="import-calsync.cli"),
        pytest.param(["--help"], (*HEAVY, *NUMERIC, "rich"), id="calsync--help"),
        pytest.param(["serve", "--help"], (*HEAVY, *NUMERIC, "rich"), id="calsync-serve--help"),
        pytest.param(["check", "--help"], (*HEAVY, *NUMERIC, "rich"), id="calsync-check--help"),
    ],
)
def test_the_root_and_help_import_nothing_heavy(argv: list[str], watched: tuple[str, ...]) -> None:
    assert imported(argv, watched) == []


def test_match_answers_from_the_cached_model_without_numpy_or_the_database() -> None:
    imported(["match"], (), stdin="warm the cache\n")  # trains once if the cache is cold
    assert imported(["match"], (*HEAVY, *NUMERIC, "rich"), stdin="my calendar is broken\n") == []
