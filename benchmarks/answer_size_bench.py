"""How long are the answers reps read? The demo reps × the questions they typically send.

For each (rep, question) the real troubleshooter answers against the sandbox emulators (in-process,
a fresh state directory, the demo scenario loaded just before), and the answer is measured as a rep
sees it:

- Slack characters: all visible text of the Block Kit message — sections, headers, context lines,
  button labels; a `<!date…|fallback>` counts as its fallback text, `&amp;`-style escapes as the
  one character they show;
- Slack blocks: the number of blocks;
- terminal characters: `calsync ask`'s text without the reconnect URL (it is printed whole on a
  line of its own, to be copied, not read);
- repeated sentences: sentences (over 12 characters) that occur more than once in the Slack text.

Single-cause answers (one cause shown, or none: healthy, small talk, declined) are reported apart:
the goal is ≤ 1,200 characters and 0 repeats.

    .venv/bin/python benchmarks/answer_size_bench.py            # the table for BENCHMARKS.md
    .venv/bin/python benchmarks/answer_size_bench.py --show     # and every answer's Slack text
"""

from __future__ import annotations

import argparse
import asyncio
import html
import io
import platform
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from calsync.app import build_troubleshooter, open_services
from calsync.diagnostics.answer import Answer
from calsync.render.blocks import answer_message
from calsync.render.text import render_answer
from calsync.sandbox.demo import DEMO_SCENARIO
from calsync.sandbox.scenario import load_scenario
from calsync.settings import Settings

# What each demo rep typically sends when their problem bites, in their own words.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "ana": ("why isnt my apointment showing in my calender??", "how do i reset my salespartner password"),
    "ben": ("o365 not showing the meetings from salespartner??", "hi"),
    "carla": (
        "it keeps asking me to authorise google again",
        "my calendar is broken",
        "why isnt my apointment showing in my calender??",
    ),
    "dev": ("outlook says NOT CONNECTED again ugh", "my o365 calendar says not connected"),
    "erin": ("sync stopped for our whole team this morning, did IT block SalesPartner?",),
    "farid": ("my manager can't see my demos on my work calendar", "my appointments aren't in my calendar"),
    "gina": ("nothing has synced since this morning", "where did my demo with duff go"),
    "hugo": ("where is my meeting", "appointments stopped going to the team calendar"),
    "iris": ("i think my demos are going to my gmail not my work cal",),
    "jack": ("sync is stuck", "nothing has synced since this morning"),
    "kate": ("just booked a demo with pied piper, where is it?",),
    "leo": ("every meeting shows up 2x since i added outlook", "every appt shows up twice"),
    "maya": ("switched to outlook last week, why are my old meetings still in google??",),
    "nora": ("what happened to my renewal call with massive dynamic?",),
    "omar": ("moved my demo in outlook but SP still shows the old time",),
    "pia": ("calendar thing not working again :(",),
    "quinn": ("where did my appointments go??", "why isn't my appointment showing"),
}
_DATE = re.compile(r"<!date\^\d+\^[^|<>]*\|([^<>]*)>")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def visible(text: str) -> str:
    return html.unescape(_DATE.sub(r"\1", text))


def slack_text(blocks: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for block in blocks:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(visible(str(text.get("text", ""))))
        for element in block.get("elements", ()):
            inner = element.get("text")
            if isinstance(inner, dict):
                parts.append(visible(str(inner.get("text", ""))))
            elif isinstance(inner, str):
                parts.append(visible(inner))
    return "\n".join(parts)


def repeats(text: str) -> list[str]:
    said = [s.strip(" *_•") for s in _SENTENCE.split(text) if len(s.strip(" *_•")) > 12]
    return sorted({s for s in said if said.count(s) > 1})


def terminal_text(answer: Answer, troubleshooter: Any) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=100, color_system=None).print(
        render_answer(answer, troubleshooter.knowledge), crop=False
    )
    urls = {action.url for action in answer.actions if action.url}
    return "\n".join(line for line in buffer.getvalue().splitlines() if line.strip() not in urls)


@dataclass(frozen=True)
class Row:
    rep: str
    question: str
    causes: int
    slack_chars: int
    blocks: int
    terminal_chars: int
    repeated: list[str]
    text: str

    @property
    def single(self) -> bool:
        return self.causes <= 1


async def measure(state: Path) -> list[Row]:
    settings = Settings(_env_file=None, CALSYNC_STATE_DIR=state)  # type: ignore[call-arg]
    rows: list[Row] = []
    with open_services(settings, announce=False) as services:
        assert services.world is not None
        load_scenario(
            DEMO_SCENARIO,
            sessions=services.sessions,
            world=services.world,
            cipher=services.cipher,
            clock=services.clock,
        )
        troubleshooter = build_troubleshooter(services)
        for rep, questions in QUESTIONS.items():
            for question in questions:
                answer = await troubleshooter.answer(f"{rep}@northwind.example", question)
                message = answer_message(answer, knowledge=troubleshooter.knowledge)
                text = slack_text(message.blocks)
                rows.append(
                    Row(
                        rep,
                        question,
                        len(answer.shown_causes) if answer.kind == "answer" else 0,
                        len(text),
                        len(message.blocks),
                        len(terminal_text(answer, troubleshooter)),
                        repeats(text),
                        text,
                    )
                )
    return rows


def summary(rows: list[Row], what: str) -> str:
    chars = [row.slack_chars for row in rows]
    blocks = [row.blocks for row in rows]
    terminal = [row.terminal_chars for row in rows]
    repeated = sum(len(row.repeated) for row in rows)
    return (
        f"| {what} | {len(rows)} | {statistics.median(chars):.0f} | {max(chars)} | "
        f"{statistics.median(blocks):.0f} | {max(blocks)} | {statistics.median(terminal):.0f} | "
        f"{max(terminal)} | {repeated} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print every answer's Slack text too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="answer-size-") as directory:
        rows = asyncio.run(measure(Path(directory)))
    print(f"Command: .venv/bin/python benchmarks/answer_size_bench.py · Python {platform.python_version()}")
    print()
    print(
        "| answers | n | Slack chars, median | Slack chars, max | blocks, median | blocks, max | "
        "terminal chars, median | terminal chars, max | repeated sentences |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(summary([row for row in rows if row.single], "single cause (or none)"))
    several = [row for row in rows if not row.single]
    if several:
        print(summary(several, "two or more causes"))
    print(summary(rows, "all"))
    print()
    print("| rep | question | causes | Slack chars | blocks | terminal chars | repeats |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row.rep} | {row.question} | {row.causes} | {row.slack_chars} | {row.blocks} | "
            f"{row.terminal_chars} | {len(row.repeated)} |"
        )
    if args.show:
        for row in rows:
            print(f"\n=== {row.rep}: {row.question!r}\n{row.text}")
            for sentence in row.repeated:
                print(f"  REPEATED: {sentence}")
    if any(row.repeated for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
