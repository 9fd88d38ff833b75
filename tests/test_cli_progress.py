"""Progress bars: shown on a terminal (a rich Console forced to be one; `calsync db upgrade` on a
real pseudo-terminal), and nothing of them when the output is piped, as in CI and logs."""

from __future__ import annotations

import io
import os
import subprocess
import threading
from pathlib import Path

import pytest
from rich.console import Console

from calsync.cli.progress import progress
from tests.test_cli_answer import CALSYNC, DEMO, run

BAR_MARKS = ("\x1b[", "━", "\r")  # an ANSI escape, rich's bar character, a carriage return


def test_the_bar_shows_what_is_done_of_how_many_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    with progress("Sync cycles", console=console) as advance:
        assert advance is not None
        for done in range(4):
            advance(done, 3)
    shown = screen.getvalue()
    assert "Sync cycles" in shown and "3/3" in shown and "━" in shown


@pytest.mark.parametrize(
    ("console", "quiet"),
    [
        (None, False),  # pytest's captured stdout and stderr are not terminals
        (Console(file=io.StringIO(), force_terminal=True), True),  # --json
        (Console(file=io.StringIO(), force_terminal=False), False),
    ],
    ids=["not-a-tty", "quiet", "console-not-a-terminal"],
)
def test_no_bar_when_nobody_watches(console: Console | None, quiet: bool) -> None:
    with progress("Loading", console=console, quiet=quiet) as advance:
        assert advance is None
    if console is not None:
        assert console.file.getvalue() == ""  # type: ignore[attr-defined]


def test_piped_commands_print_their_summaries_and_no_bar(tmp_path: Path) -> None:
    for args in (["db", "upgrade"], ["sandbox", "load", str(DEMO)], ["worker", "--once"]):
        result = run(tmp_path, *args)
        stderr = result.stderr.decode()
        assert result.returncode == 0, stderr
        assert not any(mark in stderr for mark in BAR_MARKS), (args, stderr)
        assert "Traceback" not in stderr


def test_db_upgrade_on_a_terminal_shows_each_migration(tmp_path: Path) -> None:
    out_master, out_slave = os.openpty()
    err_master, err_slave = os.openpty()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_URL", "CALSYNC_"))
    }
    env.update({"CALSYNC_STATE_DIR": str(tmp_path), "COLUMNS": "100", "TERM": "xterm"})
    chunks: list[bytes] = []

    def read_screen() -> None:
        while True:
            try:
                chunk = os.read(err_master, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read_screen, daemon=True)
    reader.start()
    with subprocess.Popen(
        [CALSYNC, "db", "upgrade"], stdout=out_slave, stderr=err_slave, env=env, cwd=tmp_path
    ) as process:
        os.close(out_slave)
        os.close(err_slave)
        assert process.wait(timeout=120) == 0
    reader.join(timeout=10)
    os.close(out_master)
    os.close(err_master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    from alembic.script import ScriptDirectory

    from calsync.syncbackend.migrate import alembic_config

    count = len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    assert "Migrations" in screen and f"{count}/{count}" in screen
    assert "Database at revision" in screen and "(head)" in screen
