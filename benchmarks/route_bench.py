"""What happens to real-register messages: right article, declined, diagnosed, small talk.

The bot's front door for a known rep is: small talk (`knowledge/smalltalk.py`) → a short reply; a
confident off-topic match → declined; anything else → diagnosed, with the matched article (if any)
added. This scores that routing on sets the team did not train on, written in the register reps use
(stories, vendor words, typos, pasted errors, non-native English):

- `benchmarks/matcher_real_dev.yaml` — the dev set: never trained on, but looked at while tuning
  (the decline threshold, the small-talk words);
- `benchmarks/matcher_holdout.yaml` — the final test: written blind by someone else, never trained
  on and never looked at; run once for the figures.

Per set: for article questions, right (the label or an `also` label) / wrong article / not sure /
declined; off-topic declined (recall); vague complaints never declined; small talk recognised.

    .venv/bin/python benchmarks/route_bench.py [--misses] [SET ...]
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from calsync.knowledge.loader import load_articles
from calsync.knowledge.matcher import Matcher
from calsync.knowledge.smalltalk import small_talk

ROOT = Path(__file__).resolve().parents[1]
SETS = ("benchmarks/matcher_real_dev.yaml", "benchmarks/matcher_holdout.yaml")
SPECIAL = ("off_topic", "vague", "smalltalk")


@dataclass
class Tally:
    n: int = 0
    right: int = 0
    wrong: int = 0
    unsure: int = 0
    declined: int = 0
    talk: int = 0
    misses: list[tuple[str, str]] = field(default_factory=list)


def route(matcher: Matcher, question: str, acceptable: set[str]) -> str:
    if small_talk(question) is not None:
        return "talk"
    match = matcher.match(question)
    if match.article in acceptable:
        return "right"
    if match.article is not None:
        return "wrong"
    return "declined" if match.off_topic else "unsure"


def score(matcher: Matcher, path: Path) -> dict[str, Tally]:
    data: dict[str, list[Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))
    tallies: dict[str, Tally] = {}
    for category, items in data.items():
        tally = tallies.setdefault(category, Tally())
        for item in items:
            question = item if isinstance(item, str) else str(item["q"])
            acceptable = {category, *((item.get("also") or []) if isinstance(item, dict) else [])}
            where = route(matcher, question, acceptable)
            tally.n += 1
            setattr(tally, where, getattr(tally, where) + 1)
            good = {
                "off_topic": where == "declined",
                "vague": where not in ("declined", "talk"),
                "smalltalk": where == "talk",
            }.get(category, where == "right")
            if not good:
                tally.misses.append((where, question))
    return tallies


def rate(part: int, whole: int) -> str:
    return f"{part / whole:.3f} ({part}/{whole})" if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=list(SETS))
    parser.add_argument("--misses", action="store_true", help="list every message routed the wrong way")
    args = parser.parse_args()
    matcher = Matcher.build(load_articles())
    print(f"Command: .venv/bin/python benchmarks/route_bench.py · Python {platform.python_version()}")
    for name in args.sets:
        tallies = score(matcher, ROOT / name)
        articles = [t for category, t in tallies.items() if category not in SPECIAL]
        n = sum(t.n for t in articles)
        off, vague, talk = (tallies.get(k, Tally()) for k in SPECIAL)
        print(f"\n### {name} ({sum(t.n for t in tallies.values())} messages)\n")
        print("| measure | value | goal |")
        print("| --- | --- | --- |")
        print(f"| article questions: right article | {rate(sum(t.right for t in articles), n)} | ≥ 0.90 |")
        print(f"| article questions: wrong article | {rate(sum(t.wrong for t in articles), n)} | ≤ 0.03 |")
        print(
            f"| article questions: not sure (diagnosed, no article) | {rate(sum(t.unsure for t in articles), n)} | |"
        )
        print(f"| article questions: declined | {rate(sum(t.declined for t in articles), n)} | |")
        print(f"| off-topic declined | {rate(off.declined, off.n)} | ≥ 0.95 |")
        print(
            f"| vague complaints diagnosed (not declined) | {rate(vague.n - vague.declined - vague.talk, vague.n)} | 1.00 |"
        )
        print(f"| small talk recognised | {rate(talk.talk, talk.n)} | |")
        print("\n| category | n | right | wrong | not sure | declined | small talk |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for category, t in tallies.items():
            print(f"| {category} | {t.n} | {t.right} | {t.wrong} | {t.unsure} | {t.declined} | {t.talk} |")
        if args.misses:
            for category, t in tallies.items():
                for where, question in t.misses:
                    print(f"  {category} -> {where}: {question}")


if __name__ == "__main__":
    main()
