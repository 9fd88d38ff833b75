"""What the benchmarks that drive the real app over HTTP share (ack_bench, soak, memory_bench).

The app runs in a child process built by the composition root's own factories (`serve_app`, the
same as `calsync serve`), or as `calsync serve` itself; the emulators run inside it or in their own
`calsync sandbox serve` process (`start_emulators`). Child processes write to files, every wait has
a deadline, and every child is ended. Loopback and ephemeral ports only.

    .venv/bin/python benchmarks/slackload.py --serve-app 0     # (what `start_app` runs)
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
# The demo reps' Slack ids (every demo user with a calendar has one).
REPS = [
    f"U0DEMO{name}"
    for name in (
        "ANA",
        "BEN",
        "CARLA",
        "DEV",
        "ERIN",
        "FARID",
        "GINA",
        "HUGO",
        "IRIS",
        "JACK",
        "KATE",
        "LEO",
        "MAYA",
        "NORA",
        "OMAR",
        "PIA",
        "QUINN",
    )
]
AGENT = "U0DEMOSAM"
HELP_CHANNEL = "C0HELP"
BOT_USER = "U0CALSYNC"
QUESTIONS = [
    "why isnt my apointment showing in my calender??",
    "my o365 calendar says not connected",
    "just booked a demo with pied piper, where is it?",
    "every appt shows up twice",
    "my appointments aren't in my calendar",
    "I moved a meeting in google but salespartner still has the old time",
    "switched to outlook, why are my old meetings still in google?",
    "the connect window closes right away",
    "how do i reset my salespartner password",
]
START_TIMEOUT = 120.0
CALSYNC = [sys.executable, "-m", "calsync"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def throwaway_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database on the PostgreSQL server of `server_url` (whose user may CREATE DATABASE) for
    one run: its URL, and the database dropped when the block ends."""
    import secrets

    from sqlalchemy import create_engine, make_url, text

    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- the app, in a child process -------------------------------------------------------------------


def serve_app(port: int) -> None:
    """Child process: build the app as `calsync serve` does, print where it is and its signing
    secret as one JSON line on stdout, and serve until SIGTERM. Port 0: any free port (the one the
    server bound is printed)."""

    from calsync.app import (
        build_bolt_app,
        build_slack_bot,
        build_troubleshooter,
        build_web_app,
        make_http_server,
        open_services,
    )

    with open_services() as services:
        settings = services.settings
        troubleshooter = build_troubleshooter(services)
        bot = build_slack_bot(services, troubleshooter)
        bolt_app = build_bolt_app(services, bot)
        assert bolt_app is not None and settings.slack_signing_secret is not None
        secret = settings.slack_signing_secret.get_secret_value()
        web = build_web_app(services, bolt_app, troubleshooter, bot=bot)  # as `calsync serve` builds it
        server = make_http_server(web, "127.0.0.1", port)  # exactly as `calsync serve` configures it

        def announce() -> None:
            while not server.started:
                time.sleep(0.02)
            bound = port or int(server.servers[0].sockets[0].getsockname()[1])
            sys.stdout.write(
                json.dumps(
                    {
                        "url": f"http://127.0.0.1:{bound}",
                        "secret": secret,
                        "slack_url": settings.slack_api_url.removesuffix("/").removesuffix("/api"),
                        "pid": os.getpid(),
                    }
                )
                + "\n"
            )
            sys.stdout.flush()

        threading.Thread(target=announce, daemon=True).start()
        server.run()


@dataclass
class App:
    url: str
    secret: str
    slack_url: str
    pid: int


class Child:
    """A child process whose stdout and stderr go to files (a pipe nobody reads fast enough would
    block the child's next write: uvicorn writes its access log to stdout on the event loop), read
    line by line with a deadline, and that is always ended."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.out_path = log.with_suffix(".out")
        self.log_path = log
        self._out = self.out_path.open("wb")
        self._log = log.open("wb")
        self._read = 0  # lines handed out so far
        self.process = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._out, stderr=self._log)

    def read_line(self, timeout: float, want: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.out_path.read_text(errors="replace").splitlines(keepends=True)
            if len(lines) > self._read and lines[self._read].endswith("\n"):
                self._read += 1
                return lines[self._read - 1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no {want} within {timeout:.0f} s; its stderr ends:\n{self.stderr_tail()}")

    def wait_for_stderr(self, pattern: str, timeout: float, want: str) -> re.Match[str]:
        """The first match of `pattern` in what the child wrote on stderr, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log_path.read_text(errors="replace"))
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no {want} within {timeout:.0f} s; its stderr ends:\n{self.stderr_tail()}")

    def stderr_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._out.close()
        self._log.close()


def child_env(
    state: Path, extra: dict[str, str] | None = None, *, database_url: str | None = None
) -> dict[str, str]:
    """This process's environment without any calsync, Slack or provider setting, plus a state dir, a
    database (default: a SQLite file in the state dir) and `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "GOOGLE_", "MICROSOFT_", "CALSYNC_", "DATABASE_URL", "ACK_BENCH_"))
    }
    env.update(
        {
            "CALSYNC_STATE_DIR": str(state),
            "DATABASE_URL": database_url or f"sqlite:///{state}/bench.db",
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }
    )
    return env


def load_demo(env: dict[str, str], state: Path) -> None:
    """`calsync sandbox load` the demo scenario into the child environment's database."""
    subprocess.run(
        [*CALSYNC, "sandbox", "load", str(DEMO)],
        env=env,
        cwd=state,
        check=True,
        capture_output=True,
        timeout=120,
    )


def start_emulators(env: dict[str, str], state: Path, children: list[Child]) -> dict[str, str]:
    """`calsync sandbox serve` in its own process (appended to `children`): the settings it prints,
    plus the encryption key `sandbox load` made and a fresh link secret — what an app needs to use it
    as a deployment uses Google, Microsoft and Slack."""
    from calsync.syncbackend.crypto import KEY_FILE_NAME

    sandbox = Child([*CALSYNC, "sandbox", "serve"], env, state, state / "sandbox.log")
    children.append(sandbox)
    settings: dict[str, str] = {}
    while "SLACK_SIGNING_SECRET" not in settings:
        line = sandbox.read_line(START_TIMEOUT, "sandbox settings").strip()
        if line.startswith("export ") and "$(" not in line:
            name, _, value = line.removeprefix("export ").partition("=")
            settings[name] = shlex.split(value)[0] if value else ""
    settings["CALSYNC_ENCRYPTION_KEY"] = (state / KEY_FILE_NAME).read_text().strip()
    settings["CALSYNC_LINK_SECRET"] = os.urandom(24).hex()  # signs reconnect links; shared by instances
    return settings


def start_app(env: dict[str, str], state: Path, name: str = "app") -> Child:
    """The app (`serve_app`) in a child process on a free port; `read_app` waits for it."""
    return Child(
        [sys.executable, str(Path(__file__).resolve()), "--serve-app", "0"], env, state, state / f"{name}.log"
    )


def read_app(child: Child) -> App:
    return App(**json.loads(child.read_line(START_TIMEOUT, "app start-up line")))


# -- what the Slack emulator recorded --------------------------------------------------------------


def slack_call_counts(database_url: str) -> tuple[Counter[str], int]:
    """(successful Slack Web API calls by method, failed calls) recorded by the Slack emulator."""
    from sqlalchemy import func, select

    from calsync.db import make_engine
    from calsync.sandbox.world import SandboxSlackCall

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(SandboxSlackCall.method, SandboxSlackCall.ok, func.count()).group_by(
                    SandboxSlackCall.method, SandboxSlackCall.ok
                )
            ).all()
    finally:
        engine.dispose()
    ok = Counter({method: count for method, good, count in rows if good})
    return ok, sum(count for _method, good, count in rows if not good)


def wait_for_drain(database_url: str, limit: float, quiet: float = 3.0) -> float | None:
    """Seconds until the emulator's call count stopped growing for `quiet` seconds (None: it never did
    within `limit`)."""
    started = time.monotonic()
    last, last_change = -1, time.monotonic()
    while time.monotonic() - started < limit:
        ok, failed = slack_call_counts(database_url)
        total = sum(ok.values()) + failed
        if total != last:
            last, last_change = total, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            return last_change - started
        time.sleep(0.5)
    return None


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-app":
        serve_app(int(sys.argv[2]))
    else:
        sys.exit(__doc__)
