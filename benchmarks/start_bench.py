"""Start-up of the command line (issue 18, item 6), side by side in one run: a bare interpreter,
`import calsync.cli`, `calsync --help`, `calsync serve --help` and `calsync match` answering one
question, each a whole process, `--runs` times (interleaved, so load hits every row alike), medians.

Goals: `calsync match` answers one question in at most 1.0 s (median), every other command starts in
at most 1 s before its own work. With `--compare REV` the same rows run against the source of REV
(`git archive` into a temporary directory, put first on PYTHONPATH; same interpreter, same installed
dependencies), so "before" and "after" share the machine's load. Each source is warmed up first (one
untimed run of every row: the matcher's cache built, the bytecode compiled).

    .venv/bin/python benchmarks/start_bench.py [--runs 7] [--compare main]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CALSYNC = str(Path(sys.executable).with_name("calsync"))
QUESTION = b"my calendar is broken\n"


@dataclass(frozen=True)
class Row:
    name: str
    command: list[str]
    stdin: bytes = b""
    bare: bool = False  # the interpreter alone: no calsync source needed


ROWS = [
    Row("python -c pass", [PYTHON, "-c", "pass"], bare=True),
    Row("python -c 'import calsync.cli'", [PYTHON, "-c", "import calsync.cli"]),
    Row("calsync --help", [CALSYNC, "--help"]),
    Row("calsync serve --help", [CALSYNC, "serve", "--help"]),
    Row("calsync match (one question)", [CALSYNC, "match"], stdin=QUESTION),
]


def run_once(row: Row, source: Path, cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of `row`."""
    # Run from a directory without a `calsync` package in it, so PYTHONPATH decides which is imported
    # (the editable install's finder comes after it).
    env = {**os.environ, "PYTHONPATH": str(source)}
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(row.command, input=row.stdin, env=env, cwd=cwd, capture_output=True, timeout=120)
    elapsed = time.perf_counter() - started
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{row.name} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return elapsed, cpu


def source_of(revision: str, into: Path) -> Path:
    """The `calsync` package of `revision`, extracted under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "calsync"],
        check=True,
        capture_output=True,
    ).stdout
    target = into / revision.replace("/", "_")
    target.mkdir(parents=True)
    archive_path = into / "source.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    return target


Times = dict[tuple[str, str], list[tuple[float, float]]]


def measure(sources: dict[str, Path], runs: int, cwd: Path) -> Times:
    for source in sources.values():  # warm-up: caches and bytecode, untimed
        for row in ROWS:
            run_once(row, source, cwd)
    times: Times = {}
    for _ in range(runs):
        for label, source in sources.items():
            for row in ROWS:
                if row.bare and label != next(iter(sources)):
                    continue
                times.setdefault((label, row.name), []).append(run_once(row, source, cwd))
    return times


def machine() -> str:
    try:
        load = "load average " + ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        load = "load unknown"
    return f"{os.cpu_count()} CPUs (shared with other jobs, noisy), Python {sys.version.split()[0]}, {load}"


def report(times: Times, labels: Sequence[str], runs: int) -> list[str]:
    def medians(key: tuple[str, str]) -> tuple[float, float]:
        return (statistics.median(t[0] for t in times[key]), statistics.median(t[1] for t in times[key]))

    bare_wall, bare_cpu = medians((labels[0], ROWS[0].name))
    header = (
        "| command | " + " | ".join(f"{label}: wall s (× bare) | CPU s (× bare)" for label in labels) + " |"
    )
    lines = [header, "| --- |" + " --- | --- |" * len(labels)]
    for row in ROWS:
        cells = []
        for label in labels:
            wall, cpu = medians((labels[0] if row.bare else label, row.name))
            cells.append(f"{wall:.3f} ({wall / bare_wall:.1f}×) | {cpu:.3f} ({cpu / bare_cpu:.1f}×)")
        lines.append(f"| `{row.name}` | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Medians of {runs} runs each, interleaved; CPU = user + system of the process; {machine()}."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", metavar="REV", help="also time the source of this git revision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sources = {"this tree": ROOT}
        if args.compare:
            sources = {f"{args.compare} (before)": source_of(args.compare, Path(scratch)), "after": ROOT}
        for label, source in sources.items():
            which = subprocess.run(
                [PYTHON, "-c", "import calsync; print(calsync.__file__)"],
                env={**os.environ, "PYTHONPATH": str(source)},
                cwd=scratch,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if not which.startswith(str(source)):
                raise SystemExit(f"{label}: imported {which}, not the source under {source}")
        times = measure(sources, args.runs, Path(scratch))
        print("\n".join(report(times, list(sources), args.runs)))


if __name__ == "__main__":
    main()
