"""Unsigned 50 MB bodies to `/slack/events`: refused fast and cheaply, and `/healthz` unaffected.

Goal (issue 15): a 50 MB unsigned POST is refused in < 100 ms with < 10 MB growth of the serving
process's resident memory, and `/healthz` answers as fast during the attack as on a quiet server.
(Before: Bolt read and parsed the whole body first; 50–100 MB added 340–390 MB of RSS and made
`/healthz` take 561 ms.)

Each run: a fresh state dir with the demo scenario; the emulators in `calsync sandbox serve`,
`calsync serve --port 0` in its own process, as deployed. Then

1. quiet: `/healthz` is asked `--probes` times in a row over one keep-alive connection;
2. attack: another process sends unsigned 50 MB POSTs one after another (or one every `--pace`
   seconds) for `--attack` seconds —
   alternately with a `Content-Length` and chunked (`Transfer-Encoding: chunked`), each body
   written as fast as the server takes it while the answer is awaited (select on one socket) — and
   records the time from connecting to the 413's status line; meanwhile `/healthz` is probed as in 1.
   The server's VmRSS is sampled every 10 ms; growth = the peak during the attack minus the
   resident size just before it.

Each figure is the median over the runs of each run's median (latencies) or value (RSS). Loopback
only; every loop is bounded in count and time.

    .venv/bin/python benchmarks/oversize_bench.py [--runs 5] [--attack 5] [--probes 200] [--size-mb 50]
        [--pace 0]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx
from memory_bench import start_cli_app, status_mb
from slackload import Child, child_env, load_demo, machine, percentile, start_emulators

GOAL_REFUSE_MS = 100.0
GOAL_RSS_MB = 10.0
CHUNK = 64 * 1024


def attack_once(host: str, port: int, size: int, chunked: bool) -> tuple[float, int]:
    """One unsigned POST of `size` bytes; (seconds from connect to the status line, status)."""
    head = [
        "POST /slack/events HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/x-www-form-urlencoded",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}",
        f"X-Slack-Request-Timestamp: {int(time.time())}",
        "X-Slack-Signature: v0=" + "0" * 64,
    ]
    piece = b"x" * CHUNK
    frame = f"{CHUNK:x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as sock:
        pending = memoryview(("\r\n".join(head) + "\r\n\r\n").encode())
        sent, answer = 0, b""
        sock.setblocking(False)
        deadline = started + 30
        while b"\r\n" not in answer and time.monotonic() < deadline:
            writers = [sock] if (pending or sent < size) else []
            readable, writable, _ = select.select([sock], writers, [], 1.0)
            if readable:
                part = sock.recv(65536)
                if not part:
                    break
                answer += part
                continue
            if writable:
                if not pending:
                    pending = memoryview(frame if sent + CHUNK <= size else frame + b"0\r\n\r\n")
                    sent += CHUNK
                try:
                    pending = pending[sock.send(pending) :]
                except (BrokenPipeError, ConnectionResetError):
                    writers = []
                    sock.setblocking(True)
                    with contextlib.suppress(OSError):
                        answer += sock.recv(65536)
                    break
        elapsed = time.monotonic() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return elapsed, status


def attacker(
    url: str, size: int, seconds: float, pace: float, results: multiprocessing.Queue[tuple[float, int, bool]]
) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    stop = time.monotonic() + seconds
    chunked = False
    for _ in range(10_000):
        if time.monotonic() >= stop:
            break
        elapsed, status = attack_once(host, port, size, chunked)
        results.put((elapsed, status, chunked))
        chunked = not chunked
        time.sleep(max(0.0, pace - elapsed))


def probe(url: str, count: int, until: float | None = None) -> list[float]:
    """`/healthz` latencies in seconds: `count` probes, or as many as fit before `until`."""
    latencies: list[float] = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            if until is not None and time.monotonic() >= until:
                break
            started = time.monotonic()
            assert client.get(f"{url}/healthz").status_code == 200
            latencies.append(time.monotonic() - started)
    return latencies


class PeakRSS:
    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, status_mb(self.pid)["VmRSS"])
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Run:
    quiet: list[float]
    during: list[float]
    refusals: list[tuple[float, int, bool]]
    before_rss: float
    peak_rss: float


def one_run(args: argparse.Namespace) -> Run:
    with tempfile.TemporaryDirectory(prefix="oversize-bench-") as directory:
        state = Path(directory)
        env = child_env(state)
        load_demo(env, state)
        children: list[Child] = []
        try:
            settings = start_emulators(env, state, children)
            app = start_cli_app(child_env(state, settings), state, settings, children)
            probe(app.url, 20)  # warm up
            quiet = probe(app.url, args.probes)
            before = status_mb(app.pid)["VmRSS"]
            results: multiprocessing.Queue[tuple[float, int, bool]] = multiprocessing.Queue()
            worker = multiprocessing.Process(
                target=attacker, args=(app.url, args.size_mb * 1024 * 1024, args.attack, args.pace, results)
            )
            with PeakRSS(app.pid) as rss:
                worker.start()
                time.sleep(0.2)  # the first request under way
                during = probe(app.url, 100_000, until=time.monotonic() + args.attack - 0.4)
                worker.join(args.attack + 60)
            if worker.is_alive():
                worker.kill()
                raise RuntimeError("the attacker did not finish in time")
            refusals = []
            with contextlib.suppress(Exception):
                while True:
                    refusals.append(results.get(timeout=0.5))
            return Run(quiet, during, refusals, before, rss.peak)
        finally:
            for child in reversed(children):
                child.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--attack", type=float, default=5.0, help="seconds of back-to-back 50 MB POSTs per run"
    )
    parser.add_argument("--probes", type=int, default=200, help="quiet /healthz probes per run")
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds from one attack's start to the next (0: back to back)",
    )
    args = parser.parse_args()
    if args.runs > 10 or args.attack > 30 or args.probes > 5000 or args.size_mb > 200:
        parser.error("keep runs bounded: at most 10 runs, 30 s of attack, 5000 probes and 200 MB bodies")
    runs = []
    for number in range(args.runs):
        run = one_run(args)
        runs.append(run)
        statuses = sorted({status for _, status, _ in run.refusals})
        print(
            f"[run {number + 1}] {len(run.refusals)} refusals (statuses {statuses}), refused in median "
            f"{statistics.median(t for t, _, _ in run.refusals) * 1000:.1f} ms, max "
            f"{max(t for t, _, _ in run.refusals) * 1000:.1f} ms; /healthz quiet "
            f"{statistics.median(run.quiet) * 1000:.2f} ms, during {statistics.median(run.during) * 1000:.2f} ms "
            f"({len(run.during)} probes); RSS {run.before_rss:.1f} -> peak {run.peak_rss:.1f} MB",
            file=sys.stderr,
        )

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def refused(run: Run, chunked: bool) -> list[float]:
        return [t for t, _, c in run.refusals if c == chunked]

    rows = [
        ("refused, Content-Length 50 MB (median / p99 / max per run)", [refused(r, False) for r in runs]),
        ("refused, chunked 50 MB (median / p99 / max per run)", [refused(r, True) for r in runs]),
        ("/healthz, quiet (median / p99 / max)", [r.quiet for r in runs]),
        ("/healthz, during the attack (median / p99 / max)", [r.during for r in runs]),
    ]
    all_statuses = sorted({status for r in runs for _, status, _ in r.refusals})
    growth = [r.peak_rss - r.before_rss for r in runs]
    print(f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/oversize_bench.py', *sys.argv[1:]])}`")
    print(f"Machine: {machine()}")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d}; {args.runs} runs; {args.size_mb} MB unsigned bodies "
        f"{'back to back' if not args.pace else f'one every {args.pace:g} s'} for {args.attack:g} s per run; "
        "each figure is the median over the runs of each run's figure"
    )
    print()
    print("| what | median | p99 | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, per_run in rows:
        print(
            f"| {name} | {med([med(v) for v in per_run]) * 1000:.2f} ms "
            f"| {med([percentile(v, 0.99) for v in per_run]) * 1000:.2f} ms "
            f"| {med([max(v) for v in per_run]) * 1000:.2f} ms |"
        )
    print(
        f"| RSS growth of `calsync serve` during the attack | {med(growth):.1f} MB | | "
        f"{max(growth):.1f} MB (worst run) |"
    )
    print()
    print(
        f"Answers: {sum(len(r.refusals) for r in runs)} requests, statuses {all_statuses}; goals: refused "
        f"< {GOAL_REFUSE_MS:.0f} ms, growth < {GOAL_RSS_MB:.0f} MB, /healthz during ≈ quiet"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
