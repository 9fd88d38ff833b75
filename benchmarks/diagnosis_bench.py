"""Wall time of a full diagnosis against the sandbox with an added provider round-trip time R.

Every emulator request (token refresh, calendar list, events) is delayed by R. A diagnosis needs
the grant refresh first and then the reads in parallel, so its floor is about 2 R; the goal is a
median of at most 3.5 R. Loopback only; bounded runs.

    .venv/bin/python benchmarks/diagnosis_bench.py [--runs 9] [--rtt 0.05 0.1 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from calsync.app import build_troubleshooter, open_services
from calsync.diagnostics.troubleshooter import Troubleshooter
from calsync.sandbox.scenario import load_scenario
from calsync.settings import Settings

DEMO = Path(__file__).resolve().parents[1] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
REPS = {"ana@northwind.example": "Google", "ben@northwind.example": "Microsoft"}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def measure(troubleshooter: Troubleshooter, email: str, question: str | None, runs: int) -> list[float]:
    timings = []
    await troubleshooter.answer(email, question)  # warm-up
    for _ in range(runs):
        started = time.perf_counter()
        await troubleshooter.answer(email, question)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--rtt", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(CALSYNC_STATE_DIR=Path(state), DATABASE_URL=f"sqlite:///{state}/bench.db")
        with open_services(settings) as services:
            assert services.world is not None
            load_scenario(
                DEMO,
                sessions=services.sessions,
                world=services.world,
                cipher=services.cipher,
                clock=services.clock,
            )
            troubleshooter = build_troubleshooter(services)
            for rtt in args.rtt:
                services.world.clear_faults()
                services.world.add_fault("*", "latency", params={"seconds": rtt})
                for email, provider in REPS.items():
                    for label, question in (("diagnose", None), ("ask", "why isn't my appointment showing")):
                        timings = asyncio.run(measure(troubleshooter, email, question, args.runs))
                        median = statistics.median(timings)
                        rows.append(
                            f"| {rtt * 1000:.0f} ms | {provider} | {label} | {median * 1000:.0f} ms "
                            f"| {median / rtt:.2f} R | {min(timings) * 1000:.0f}–{max(timings) * 1000:.0f} ms |"
                        )
    print(f"Machine: {cpu_model()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    print(f"Date: {datetime.now(UTC):%Y-%m-%d}; {args.runs} runs per row after one warm-up; median")
    print()
    print("| R | provider | call | median | median / R | range |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
