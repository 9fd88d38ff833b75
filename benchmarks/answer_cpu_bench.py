"""CPU per answer: what one DM costs the process that answers it, with the emulators elsewhere.

The goal (issue 17, "Cheap answers"): one worker core gives at least 100 answers/s on the demo
scenario, i.e. at most 10 ms of CPU per answer, without changing what any answer says.

Each run: a fresh state directory (a SQLite database in it), `calsync sandbox serve` in its own
process (Google, Microsoft and Slack are other machines in production), and a measuring process
that gets the settings it printed, builds the services and the Slack surface through the
composition root (`open_services`, `build_troubleshooter`, `build_slack_bot`), loads the demo
scenario, freezes its start-up heap out of the garbage collector as `calsync serve` does, and then
does per (rep, question) what a worker does for a DM after the ack, minus Slack I/O: look the
person up by Slack id and `Answers.answer` (the troubleshooter's live diagnosis, the stored tokens
and audit entry, and the Block Kit message). The questions: each demo rep's typical messages
(`answer_size_bench.QUESTIONS`) and `calsync.sandbox.demo.DEMO_QUESTIONS`.

The measuring process's clock is pinned (one instant per invocation, the scenario loaded at it), so
every run, and the baseline, answers the same world at the same moment: its answers must be the
same, byte for byte, but for the random nonce of a signed link. The first pass over the questions
warms up and is what `--check` compares; then `--rounds` passes one answer at a time and
`--rounds` passes with `--concurrency` answers in flight are timed. Reported: answers/s (wall) and
CPU per answer of the measuring process (`time.process_time`, every thread), its inverse —
answers per CPU-second, what one core would give —, and the emulator process's CPU per answer.

`--compare REV` runs the same measurement on git revision REV (exported into a temporary
directory, put first on the children's `PYTHONPATH`) in the same invocation, the two trees in
turns, and prints before/after as ratios. `--check` fails (exit 1) when any answer differs between
the runs or the trees. `--profile FILE` runs this tree's first measuring process under py-spy
(every thread while it holds the GIL, start-up included; collapsed stacks), `--dump FILE` writes
its answers. Loopback only; every wait is bounded.

    .venv/bin/python benchmarks/answer_cpu_bench.py [--runs 3] [--rounds 4] [--concurrency 8]
        [--compare REV] [--check] [--profile FILE] [--dump FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import difflib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slackload import ROOT, Child, child_env, cpu_seconds, machine, start_emulators

HERE = Path(__file__).resolve()
GOAL_PER_CORE = 100.0  # answers per CPU-second
CHILD_TIMEOUT = 600.0
_LINK = re.compile(r"([?&]t=)([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")


# -- the measuring process -----------------------------------------------------------------------------


def questions() -> list[tuple[str, str]]:
    """(rep email, question): every demo rep's typical messages, then the demo's own questions."""
    from answer_size_bench import QUESTIONS

    from calsync.sandbox.demo import DEMO_QUESTIONS

    pairs = [(f"{rep}@northwind.example", text) for rep, texts in QUESTIONS.items() for text in texts]
    return pairs + [pair for pair in DEMO_QUESTIONS if pair not in pairs]


def without_nonces(text: str) -> str:
    """A message's JSON with each signed link's token replaced by its payload less the random nonce
    (what the link says, kind, subject and expiry, is kept and compared)."""

    def payload(found: re.Match[str]) -> str:
        body = found.group(2)
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        data.pop("n", None)
        shown = "<link " + json.dumps(data, sort_keys=True) + ">"
        return found.group(1) + json.dumps(shown)[1:-1]  # still a JSON string's contents

    return _LINK.sub(payload, text)


async def measure(config: dict[str, Any]) -> dict[str, Any]:
    import gc

    from calsync.app import build_slack_bot, build_troubleshooter, open_services
    from calsync.sandbox.demo import DEMO_SCENARIO
    from calsync.sandbox.scenario import load_scenario
    from calsync.sandbox.world import World
    from calsync.store.people import by_slack_id, slack_id_of

    pinned = datetime.fromisoformat(config["now"])
    rounds, concurrency = int(config["rounds"]), int(config["concurrency"])
    with open_services(clock=lambda: pinned) as services:
        load_scenario(
            DEMO_SCENARIO,
            sessions=services.sessions,
            world=World(services.engine),
            cipher=services.cipher,
            clock=services.clock,
        )
        troubleshooter = build_troubleshooter(services)
        answers = build_slack_bot(services, troubleshooter).answers
        pairs = questions()
        slack_ids = {email: slack_id_of(services.sessions, email) for email, _ in pairs}
        gc.collect()
        gc.freeze()  # as `calsync serve` does once the app is built (`make_http_server`)

        async def one(email: str, question: str) -> str:
            slack_id = slack_ids[email]
            assert slack_id is not None, email
            person = await asyncio.to_thread(by_slack_id, services.sessions, slack_id)
            assert person is not None, slack_id
            message = await answers.answer(person, question, channel=f"D{slack_id}", private=True)
            return json.dumps({"text": message.text, "blocks": message.blocks}, sort_keys=True)

        said = [
            {"rep": email, "question": question, "message": without_nonces(await one(email, question))}
            for email, question in pairs
        ]

        async def sequential() -> None:
            for email, question in pairs:
                await one(email, question)

        async def concurrent() -> None:
            slots = asyncio.Semaphore(concurrency)

            async def limited(email: str, question: str) -> None:
                async with slots:
                    await one(email, question)

            await asyncio.gather(*(limited(email, question) for email, question in pairs))

        emulator = int(config["emulator_pid"])
        collecting = {"since": 0.0, "total": 0.0}

        def collection(phase: str, info: dict[str, int]) -> None:  # the collector's own CPU
            if phase == "start":
                collecting["since"] = time.process_time()
            else:
                collecting["total"] += time.process_time() - collecting["since"]

        gc.callbacks.append(collection)
        timed: dict[str, dict[str, float]] = {}
        for mode, work in (("sequential", sequential), ("concurrent", concurrent)):
            cpu, wall, emulated = time.process_time(), time.perf_counter(), cpu_seconds(emulator)
            collected = collecting["total"]
            for _ in range(rounds):
                await work()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            emulated = cpu_seconds(emulator) - emulated
            count = rounds * len(pairs)
            timed[mode] = {
                "answers": count,
                "wall": wall,
                "cpu": cpu,
                "emulator_cpu": emulated,
                "gc_cpu": collecting["total"] - collected,
            }
        gc.callbacks.remove(collection)
    import calsync

    return {"said": said, "timed": timed, "code": str(Path(calsync.__file__).parent)}


def measure_main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    result = asyncio.run(measure(config))
    Path(config["out"]).write_text(json.dumps(result))


# -- the runs ------------------------------------------------------------------------------------------


@dataclass
class Tree:
    name: str  # "this tree" or "git REV"
    root: Path


@dataclass
class Run:
    tree: str
    said: list[dict[str, str]]
    timed: dict[str, dict[str, float]]
    code: str  # where the measuring process imported calsync from


def one_run(tree: Tree, args: argparse.Namespace, now: datetime, link_secret: str, profile: str) -> Run:
    from calsync.settings import Settings
    from calsync.syncbackend.crypto import load_or_create_key

    with tempfile.TemporaryDirectory(prefix="answer-cpu-") as directory:
        state = Path(directory)
        load_or_create_key(Settings(_env_file=None, CALSYNC_STATE_DIR=state))  # type: ignore[call-arg]
        path = {"PYTHONPATH": str(tree.root)}
        children: list[Child] = []
        try:
            settings = start_emulators(child_env(state, path), state, children)
            settings["CALSYNC_LINK_SECRET"] = link_secret
            config = {
                "now": now.isoformat(),
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "emulator_pid": children[0].process.pid,
                "out": str(state / "result.json"),
            }
            (state / "config.json").write_text(json.dumps(config))
            env = child_env(state, {**settings, **path})
            # py-spy samples every thread holding the GIL (the provider pool and the database work run
            # in threads of their own).
            spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--gil", "--rate", "400"]
            command = [sys.executable, str(HERE), "--measure", str(state / "config.json")]
            done = subprocess.run(
                [*spy, "--format", "raw", "--output", profile, "--", *command] if profile else command,
                env=env,
                cwd=state,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the measuring process failed ({tree.name}):\n{done.stderr[-4000:]}")
            result = json.loads((state / "result.json").read_text())
        finally:
            for child in children:
                child.stop()
    return Run(tree.name, result["said"], result["timed"], result["code"])


def export(rev: str, into: Path) -> Tree:
    """Git revision `rev` of this repository, as files in `into`."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return Tree(f"git {commit}", into)


def differences(runs: Sequence[Run]) -> list[str]:
    """Every answer that differs from the first run's, as a short unified diff."""
    first = runs[0]
    out = []
    for run in runs[1:]:
        for a, b in zip(first.said, run.said, strict=True):
            if a != b:
                diff = difflib.unified_diff(
                    a["message"].split("\\n"), b["message"].split("\\n"), first.tree, run.tree, lineterm=""
                )
                out.append(f"{a['rep']} {a['question']!r}:\n" + "\n".join(list(diff)[:20]))
    return out


def per(value: float, count: float) -> float:
    return value / count if count else float("nan")


def summarize(runs: Sequence[Run], mode: str) -> dict[str, float]:
    rows = [run.timed[mode] for run in runs]
    return {
        "answers_per_s": statistics.median(per(row["answers"], row["wall"]) for row in rows),
        "cpu_ms": statistics.median(1000 * per(row["cpu"], row["answers"]) for row in rows),
        "per_core": statistics.median(per(row["answers"], row["cpu"]) for row in rows),
        "emulator_ms": statistics.median(1000 * per(row["emulator_cpu"], row["answers"]) for row in rows),
        "gc_ms": statistics.median(
            1000 * per(row.get("gc_cpu", float("nan")), row["answers"]) for row in rows
        ),
    }


def report(trees: Sequence[Tree], runs: Sequence[Run], args: argparse.Namespace, loads: list[float]) -> None:
    count = len(runs[0].said)
    print(
        f"Command: .venv/bin/python benchmarks/answer_cpu_bench.py {' '.join(sys.argv[1:])}".rstrip()
        + f"\nMachine: {machine()}; {datetime.now(UTC):%Y-%m-%d}; load average (1 min) at each run's "
        f"start: {', '.join(f'{load:.1f}' for load in loads)}"
    )
    print(
        f"{count} (rep, question) pairs; per run and mode {args.rounds} passes = {args.rounds * count} "
        f"answers; concurrent: {args.concurrency} in flight; medians over {args.runs} runs\n"
    )
    print(
        "| code | mode | answers/s (wall) | CPU per answer | answers per CPU-second | "
        "of it, garbage collection | emulator CPU per answer | runs: CPU per answer |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    summaries: dict[tuple[str, str], dict[str, float]] = {}
    for tree in trees:
        mine = [run for run in runs if run.tree == tree.name]
        for mode in ("sequential", "concurrent"):
            s = summaries[tree.name, mode] = summarize(mine, mode)
            each = ", ".join(
                f"{1000 * per(run.timed[mode]['cpu'], run.timed[mode]['answers']):.1f}" for run in mine
            )
            label = mode if mode == "sequential" else f"{args.concurrency} concurrent"
            print(
                f"| {tree.name} | {label} | {s['answers_per_s']:.1f} | {s['cpu_ms']:.2f} ms | "
                f"{s['per_core']:.1f} | {s['gc_ms']:.2f} ms | {s['emulator_ms']:.2f} ms | {each} ms |"
            )
    if len(trees) == 2:
        after, before = trees
        print(
            "\n| mode | answers/s (wall), after / before | CPU per answer, after / before | answers per CPU-second, after / before |"
        )
        print("| --- | ---: | ---: | ---: |")
        for mode in ("sequential", "concurrent"):
            a, b = summaries[after.name, mode], summaries[before.name, mode]
            print(
                f"| {mode} | {a['answers_per_s'] / b['answers_per_s']:.2f}× | {a['cpu_ms'] / b['cpu_ms']:.2f}× | "
                f"{a['per_core'] / b['per_core']:.2f}× |"
            )
    best = min(summaries[trees[0].name, mode]["per_core"] for mode in ("sequential", "concurrent"))
    print(
        f"\nGoal ≥ {GOAL_PER_CORE:.0f} answers per CPU-second ({trees[0].name}): "
        + ("met" if best >= GOAL_PER_CORE else "not met")
        + f" ({best:.1f}, the lower of the two modes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="passes over the questions per mode")
    parser.add_argument("--concurrency", type=int, default=8, help="answers in flight, concurrent mode")
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV, in turns")
    parser.add_argument("--check", action="store_true", help="exit 1 when any answer differs")
    parser.add_argument("--profile", metavar="FILE", help="py-spy's collapsed stacks (this tree, run 1)")
    parser.add_argument("--dump", metavar="FILE", help="write this tree's answers of run 1 as JSON")
    parser.add_argument("--measure", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure_main(args.measure)
        return
    now = datetime.now(UTC).replace(microsecond=0)
    link_secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="answer-cpu-base-") as base:
        trees = [Tree("this tree", ROOT)]
        if args.compare:
            trees.append(export(args.compare, Path(base)))
        runs: list[Run] = []
        loads: list[float] = []
        for index in range(args.runs):
            order = trees if index % 2 == 0 else trees[::-1]  # in turns, so drift hits both alike
            for tree in order:
                loads.append(os.getloadavg()[0])
                profile = args.profile if args.profile and index == 0 and tree is trees[0] else ""
                run = one_run(tree, args, now, link_secret, str(Path(profile).resolve()) if profile else "")
                runs.append(run)
                mine = run.timed["sequential"]
                print(
                    f"run {index + 1} {tree.name} ({run.code}): {1000 * per(mine['cpu'], mine['answers']):.2f} "
                    "ms CPU per answer (sequential)",
                    file=sys.stderr,
                )
    if args.dump:
        Path(args.dump).write_text(json.dumps(runs[0 if runs[0].tree == trees[0].name else 1].said, indent=1))
    report(trees, runs, args, loads)
    different = differences(runs)
    print(
        f"\nAnswers: {len(runs[0].said)} per run, "
        + ("all the same in every run and tree" if not different else f"{len(different)} differ")
        + " (signed links compared without their random nonce)."
    )
    for line in different[:10]:
        print(line)
    if args.check and different:
        sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
