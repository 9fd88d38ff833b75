"""Question-matcher benchmark: cross-validation, threshold choice, latency and cold start.

    .venv/bin/python benchmarks/matcher_bench.py            # the report in BENCHMARKS.md
    .venv/bin/python benchmarks/matcher_bench.py --tune     # plus the hyper-parameter grid
    .venv/bin/python benchmarks/matcher_bench.py --dev-only # just the dev set, baseline vs now
    .venv/bin/python benchmarks/matcher_bench.py --baseline DIR_OR_GIT_REV  # another baseline

Prints a Markdown section (paste it into BENCHMARKS.md). What it measures:

- Repeated stratified k-fold cross-validation over everything the matcher trains on (the
  articles' `examples` + `calsync/knowledge/training.yaml`), with `off_topic` as a class of its own:
  per-class precision / recall / F1 and the confusion matrix at the chosen threshold, and a sweep
  of the threshold (the best article needs at least that probability, else "not sure" = null).
- The same folds with the test questions mangled by random typos (a deleted, doubled, swapped or
  replaced letter in ~1 of 3 words), to see how much typos cost.
- The dev set `benchmarks/matcher_dev.yaml` (same layout as training.yaml, never trained on): ~230
  questions written apart from the training data, the way reps write in Slack (vague, indirect, no
  calendar words, names and times, one-word messages, hard off-topic ones). The matcher is trained on
  everything and judged on it: accuracy, per-class precision / recall, the off-topic false-positive
  rate (off-topic questions given an article) and the wrong-confident rate (any question answered
  with an article that is not the right one), side by side for a baseline (by default the matcher
  and training.yaml of git revision `BASELINE_REV`, before the robustness work) and the current code.
- A small older dev set (`LEGACY_DEV_SET`, below): a regression check.
- Threshold choice: the one with the lowest cost, where answering with the wrong article (or
  answering an off-topic question at all) costs 3 and "not sure" on an on-topic question costs 1.
- Latency: `Matcher.match` per question, median of 5 runs over 2000 questions after a warm-up;
  `match_many` per question in batches of 256. Cold start: a fresh interpreter importing the matcher
  and loader, loading the articles and training, median of 7 runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import RepeatedStratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calsync.knowledge.loader import KnowledgeBase, load_articles  # noqa: E402
from calsync.knowledge.matcher import (  # noqa: E402
    DEFAULT_TRAINING_PATH,
    OFF_TOPIC,
    Matcher,
    MatcherConfig,
    _training_set,
    load_training,
)

DEV_PATH = ROOT / "benchmarks" / "matcher_dev.yaml"
# The matcher and training.yaml before the robustness work (dev set, placeholders, concepts, the
# short-message rule): the "before" column of the dev-set report.
BASELINE_REV = "c81df52"

WRONG_COST = 3.0  # a confident wrong article (or any article for an off-topic question)
UNSURE_COST = 1.0  # "not sure" for a question one of the articles answers
THRESHOLDS = (0.0, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)

# The first dev set, written apart from training.yaml (and the unit tests): kept as a regression check.
LEGACY_DEV_SET: tuple[tuple[str, str | None], ...] = (
    ("my appointmnt from this morning never landed in google calendar", "not-showing"),
    ("booked a call w/ Stark Industries for 11, not in outlook", "not-showing"),
    ("SP shows the booking but my cal is blank", "not-showing"),
    ("the appointments i book don't get to my calendar", "not-showing"),
    ("where did my 4pm go? not in gcal", "not-showing"),
    ("bookings are going to the wrong calendar (my personal one)", "not-showing"),
    ("the appt the lead booked yesterday isn't on my calendar", "not-showing"),
    ("calendar is missing this weeks bookings", "not-showing"),
    ("i have two of each appointment in outlook", "duplicates"),
    ("every booking is duplicated in my google cal", "duplicates"),
    ("doubled events on my calendar since monday", "duplicates"),
    ("should i delete the extra copy of the meeting?", "duplicates"),
    ("the same appointment shows up twice, is that normal", "duplicates"),
    ("DUPES AGAIN", "duplicates"),
    ("there's 2 of my 9am demo", "duplicates"),
    ("calendar shows as disconnected in settings", "not-connected"),
    ("reset my google pw yesterday and now calendar says not connected", "not-connected"),
    ("how to reconnect o365", "not-connected"),
    ("my outlook connection expired", "not-connected"),
    ("it wants me to authorize google again", "not-connected"),
    ("calendar got disconnected after IT changed permissions", "not-connected"),
    ("why did my calendar disconnect", "not-connected"),
    ("the authorize window never opens", "popup-blocked"),
    ("connect button does nothing when I click it", "popup-blocked"),
    ("chrome blocked a popup when i tried to connect outlook", "popup-blocked"),
    ("no sign in window appears for google", "popup-blocked"),
    ("reconnect does nothing, no popup", "popup-blocked"),
    ("how do i let salespartner open popups in safari", "popup-blocked"),
    ("i changed the time of a meeting in outlook but salespartner didn't update", "changes-not-syncing"),
    ("edits made in gcal don't show in salespartner", "changes-not-syncing"),
    ("rescheduled the demo in my calendar, SP still has the old slot", "changes-not-syncing"),
    ("I deleted a calendar event and the appointment got cancelled, why", "changes-not-syncing"),
    ("added an appointment straight into outlook, not in salespartner", "changes-not-syncing"),
    ("how long do calendar edits take to sync", "changes-not-syncing"),
    ("renamed a meeting in google calendar, salespartner shows old name", "changes-not-syncing"),
    ("moving from google calendar to outlook", "switch-provider"),
    ("how do i change my calendar to microsoft", "switch-provider"),
    ("we're migrating to office 365, what happens to my appointments", "switch-provider"),
    ("can I switch to gcal from outlook", "switch-provider"),
    ("switched providers, old appts stayed in google", "switch-provider"),
    ("want to use outlook now instead of google calendar", "switch-provider"),
    ("hello!", None),
    ("thank you!!", None),
    ("morning all", None),
    ("how's it going", None),
    ("i need to reset my password for salespartner", None),
    ("where do i download my invoice", None),
    ("salespartner mobile app won't open", None),
    ("can you schedule a meeting with the Acme team", None),
    ("book the big conference room for tomorrow", None),
    ("where is the appointments report", None),
    ("how many meetings did my team book last week", None),
    ("how do i add a lead", None),
    ("what's the weather in Berlin", None),
    ("the app is so slow today", None),
    ("can i get a refund", None),
    ("how do i change the email on my salespartner account", None),
    ("my leads are duplicated in the crm", None),
    ("can you book a demo of salespartner for my friend", None),
    ("what can you help me with", None),
)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]


def mangle(question: str, rng: random.Random) -> str:
    return " ".join(_typo(w, rng) if rng.random() < 0.33 else w for w in question.split())


def decide(
    probabilities: np.ndarray,
    known: np.ndarray,
    classes: Sequence[str],
    threshold: float,
    vague: Sequence[bool] | None = None,
) -> list[str]:
    """The matcher's rule, with `off_topic` standing for null (mirrors `Matcher._decide`)."""
    off = classes.index(OFF_TOPIC)
    article_columns = [i for i, c in enumerate(classes) if c != OFF_TOPIC]
    labels: list[str] = []
    flags = vague if vague is not None else [False] * len(known)
    for row, n, v in zip(probabilities, known, flags, strict=True):
        best = max(article_columns, key=lambda i: row[i])
        ok = row[best] >= threshold and row[best] > row[off] and n > 0 and not v
        labels.append(classes[best] if ok else OFF_TOPIC)
    return labels


def cost(truth: Sequence[str], predicted: Sequence[str]) -> float:
    total = 0.0
    for t, p in zip(truth, predicted, strict=True):
        if p == t:
            continue
        total += UNSURE_COST if p == OFF_TOPIC else WRONG_COST
    return total / len(truth)


@dataclasses.dataclass
class CvResult:
    truth: list[str]
    probabilities: np.ndarray
    known: np.ndarray
    vague: list[bool]
    top_two_hits: int  # among ambiguous answers: true label is one of the two alternatives
    ambiguous: int
    on_topic: int


def cross_validate(
    questions: Sequence[str],
    labels: Sequence[str],
    kb: KnowledgeBase,
    config: MatcherConfig,
    folds: int,
    repeats: int,
    typos: bool = False,
) -> CvResult:
    classes = (*kb.ids, OFF_TOPIC)
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=7)
    rng = random.Random(11)
    truth: list[str] = []
    probabilities: list[np.ndarray] = []
    known: list[np.ndarray] = []
    vague: list[bool] = []
    hits = ambiguous = on_topic = 0
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        matcher = Matcher.train([questions[i] for i in train], [labels[i] for i in train], kb.ids, config)
        test_questions = [questions[i] for i in test]
        if typos:
            test_questions = [mangle(q, rng) for q in test_questions]
        probs, n, v = matcher._score(test_questions)
        probabilities.append(probs)
        known.append(n)
        vague.extend(v)
        truth.extend(labels[i] for i in test)
        for match, i in zip(matcher.match_many(test_questions), test, strict=True):
            if labels[i] != OFF_TOPIC:
                on_topic += 1
                if match.ambiguous:
                    ambiguous += 1
                    hits += labels[i] in {a for a, _ in match.alternatives}
    del classes
    return CvResult(truth, np.vstack(probabilities), np.concatenate(known), vague, hits, ambiguous, on_topic)


def sweep(result: CvResult, classes: Sequence[str]) -> list[dict[str, float]]:
    rows = []
    truth = result.truth
    for threshold in THRESHOLDS:
        predicted = decide(result.probabilities, result.known, classes, threshold, result.vague)
        on = [(t, p) for t, p in zip(truth, predicted, strict=True) if t != OFF_TOPIC]
        off = [(t, p) for t, p in zip(truth, predicted, strict=True) if t == OFF_TOPIC]
        answered = [(t, p) for t, p in on if p != OFF_TOPIC]
        _, _, f1, _ = precision_recall_fscore_support(truth, predicted, labels=list(classes), zero_division=0)
        rows.append(
            {
                "threshold": threshold,
                "accuracy": float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)])),
                "macro_f1": float(np.mean(f1)),
                "on_answered": len(answered) / len(on),
                "on_correct": sum(t == p for t, p in on) / len(on),
                "on_wrong": sum(p not in (t, OFF_TOPIC) for t, p in on) / len(on),
                "off_recall": sum(p == OFF_TOPIC for _, p in off) / len(off),
                "cost": cost(truth, predicted),
            }
        )
    return rows


def per_class_table(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> list[str]:
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=list(classes), zero_division=0)
    lines = ["| class | precision | recall | F1 | n |", "|---|---:|---:|---:|---:|"]
    for i, c in enumerate(classes):
        name = "off-topic (null)" if c == OFF_TOPIC else c
        lines.append(f"| {name} | {p[i]:.3f} | {r[i]:.3f} | {f[i]:.3f} | {s[i]} |")
    lines.append(f"| **macro** | {np.mean(p):.3f} | {np.mean(r):.3f} | {np.mean(f):.3f} | {sum(s)} |")
    return lines


def confusion_table(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> list[str]:
    matrix = confusion_matrix(truth, predicted, labels=list(classes))
    short = {c: ("null" if c == OFF_TOPIC else c) for c in classes}
    lines = ["| true \\ predicted | " + " | ".join(short[c] for c in classes) + " |"]
    lines.append("|---|" + "---:|" * len(classes))
    for i, c in enumerate(classes):
        lines.append(f"| {short[c]} | " + " | ".join(str(v) for v in matrix[i]) + " |")
    return lines


def sweep_table(rows: list[dict[str, float]], chosen: float) -> list[str]:
    lines = [
        "| threshold | accuracy | macro F1 | on-topic answered | on-topic correct | on-topic wrong article "
        "| off-topic -> null | cost |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mark = " **(chosen)**" if row["threshold"] == chosen else ""
        lines.append(
            f"| {row['threshold']:.2f}{mark} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} "
            f"| {row['on_answered']:.3f} | {row['on_correct']:.3f} | {row['on_wrong']:.3f} "
            f"| {row['off_recall']:.3f} | {row['cost']:.3f} |"
        )
    return lines


def load_dev(path: Path = DEV_PATH) -> list[tuple[str, str]]:
    """(question, label) pairs from the dev YAML; label `OFF_TOPIC` stands for null."""
    return [(q, label) for label, questions in load_training(path).items() for q in questions]


def load_baseline(spec: str, kb: KnowledgeBase) -> tuple[str, Any]:
    """A baseline matcher: `spec` is a directory holding matcher.py + training.yaml, or a git revision."""
    tmp = Path(tempfile.mkdtemp(prefix="matcher-baseline-"))
    source = Path(spec)
    if source.is_dir():
        (tmp / "matcher.py").write_bytes((source / "matcher.py").read_bytes())
        (tmp / "training.yaml").write_bytes((source / "training.yaml").read_bytes())
        name = str(source)
    else:
        for path, target in (
            ("calsync/knowledge/matcher.py", "matcher.py"),
            ("calsync/knowledge/training.yaml", "training.yaml"),
        ):
            blob = subprocess.run(
                ["git", "show", f"{spec}:{path}"], cwd=ROOT, check=True, capture_output=True
            ).stdout
            (tmp / target).write_bytes(blob)
        name = f"git {spec}"
    module_spec = importlib.util.spec_from_file_location("_baseline_matcher", tmp / "matcher.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["_baseline_matcher"] = module  # dataclasses look their module up by name
    module_spec.loader.exec_module(module)
    return name, module.Matcher.build(kb, tmp / "training.yaml")


@dataclasses.dataclass
class DevResult:
    truth: list[str]
    predicted: list[str]
    ambiguous: list[bool]
    accuracy: float
    off_fp: float  # off-topic questions given an article
    wrong: float  # any question answered with an article that is not the right one
    on_null: float  # on-topic questions answered null
    on_correct: float


def evaluate_dev(matcher: Any, dev: Sequence[tuple[str, str]]) -> DevResult:
    matches = matcher.match_many([q for q, _ in dev])
    truth = [label for _, label in dev]
    predicted = [m.article or OFF_TOPIC for m in matches]
    pairs = list(zip(truth, predicted, strict=True))
    off = [p for t, p in pairs if t == OFF_TOPIC]
    on = [(t, p) for t, p in pairs if t != OFF_TOPIC]
    return DevResult(
        truth=truth,
        predicted=predicted,
        ambiguous=[bool(m.ambiguous) for m in matches],
        accuracy=float(np.mean([t == p for t, p in pairs])),
        off_fp=sum(p != OFF_TOPIC for p in off) / len(off),
        wrong=sum(p not in (t, OFF_TOPIC) for t, p in pairs) / len(pairs),
        on_null=sum(p == OFF_TOPIC for _, p in on) / len(on),
        on_correct=sum(t == p for t, p in on) / len(on),
    )


def dev_tables(
    before: DevResult, after: DevResult, classes: Sequence[str], names: tuple[str, str]
) -> list[str]:
    lines = [
        f"| metric | {names[0]} | {names[1]} |",
        "|---|---:|---:|",
        f"| accuracy | {before.accuracy:.3f} | {after.accuracy:.3f} |",
        f"| on-topic: right article | {before.on_correct:.3f} | {after.on_correct:.3f} |",
        f"| on-topic: null (not sure) | {before.on_null:.3f} | {after.on_null:.3f} |",
        f"| off-topic false-positive rate (off-topic given an article) | {before.off_fp:.3f} | {after.off_fp:.3f} |",
        f"| wrong-confident rate (answered with a wrong article, all questions) | {before.wrong:.3f} "
        f"| {after.wrong:.3f} |",
        "",
        f"| class | n | P {names[0]} | R {names[0]} | P {names[1]} | R {names[1]} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    pb, rb, _, support = precision_recall_fscore_support(
        before.truth, before.predicted, labels=list(classes), zero_division=0
    )
    pa, ra, _, _ = precision_recall_fscore_support(
        after.truth, after.predicted, labels=list(classes), zero_division=0
    )
    for i, c in enumerate(classes):
        name = "off-topic (null)" if c == OFF_TOPIC else c
        lines.append(f"| {name} | {support[i]} | {pb[i]:.3f} | {rb[i]:.3f} | {pa[i]:.3f} | {ra[i]:.3f} |")
    lines.append(
        f"| **macro** | {sum(support)} | {np.mean(pb):.3f} | {np.mean(rb):.3f} | {np.mean(pa):.3f} | {np.mean(ra):.3f} |"
    )
    return lines


def dev_misses(matcher: Any, dev: Sequence[tuple[str, str]]) -> list[str]:
    lines = ["| question | expected | got | confidence | top two |", "|---|---|---|---:|---|"]
    for (q, want), m in zip(dev, matcher.match_many([q for q, _ in dev]), strict=True):
        if (m.article or OFF_TOPIC) != want:
            alts = ", ".join(f"{a} {p:.2f}" for a, p in m.alternatives)
            expected = "null" if want == OFF_TOPIC else want
            lines.append(f"| {q} | {expected} | {m.article or 'null'} | {m.confidence:.2f} | {alts} |")
    return lines


def dev_report(matcher: Matcher, kb: KnowledgeBase, baseline: str, misses: bool) -> list[str]:
    dev = load_dev()
    classes = (*kb.ids, OFF_TOPIC)
    counts = {c: sum(label == c for _, label in dev) for c in classes}
    out = [
        f"### Dev set (`benchmarks/matcher_dev.yaml`, {len(dev)} questions, never trained on)",
        "",
        ", ".join(f"{'off-topic' if c == OFF_TOPIC else c} {n}" for c, n in counts.items())
        + ". Trained on everything (articles' `examples` + `training.yaml`), judged on the dev set; "
        "null counted as the off-topic class.",
        "",
    ]
    try:
        name, before_matcher = load_baseline(baseline, kb)
    except (OSError, subprocess.CalledProcessError) as exc:
        out.append(f"(baseline {baseline!r} unavailable: {exc}; showing the current matcher twice)")
        name, before_matcher = "current", matcher
    before = evaluate_dev(before_matcher, dev)
    after = evaluate_dev(matcher, dev)
    out.extend(dev_tables(before, after, classes, (f"before ({name})", "after")))
    out.append("")
    out.append(
        f'Ambiguous answers ("did you mean A or B?") after: {sum(after.ambiguous)}/{len(dev)} '
        f"(before: {sum(before.ambiguous)})."
    )
    if misses:
        out.append("")
        out.append("Misses after:")
        out.append("")
        out.extend(dev_misses(matcher, dev))
    return out


def latency(matcher: Matcher, questions: Sequence[str]) -> tuple[float, float]:
    sample = [questions[i % len(questions)] for i in range(2000)]
    for q in sample[:300]:
        matcher.match(q)
    singles = []
    batches = []
    for _ in range(5):
        start = time.perf_counter()
        for q in sample:
            matcher.match(q)
        singles.append((time.perf_counter() - start) / len(sample))
        start = time.perf_counter()
        for i in range(0, len(sample), 256):
            matcher.match_many(sample[i : i + 256])
        batches.append((time.perf_counter() - start) / len(sample))
    return statistics.median(singles) * 1000, statistics.median(batches) * 1000


COLD_START = (
    "import time; t = time.perf_counter(); "
    "from calsync.knowledge.loader import load_articles; "
    "from calsync.knowledge.matcher import Matcher; "
    "m = Matcher.build(load_articles()); m.match('warm'); "
    "print(time.perf_counter() - t)"
)


def cold_start(runs: int = 7) -> tuple[float, float]:
    inside: list[float] = []
    whole: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", COLD_START], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        whole.append(time.perf_counter() - start)
        inside.append(float(out.strip()))
    return statistics.median(inside), statistics.median(whole)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tune(questions: Sequence[str], labels: Sequence[str], kb: KnowledgeBase, folds: int) -> list[str]:
    base = MatcherConfig()
    classes = (*kb.ids, OFF_TOPIC)
    dev_set = load_dev()
    variants: list[tuple[str, MatcherConfig]] = [
        ("chosen (defaults)", base),
        ("l2=3e-5", dataclasses.replace(base, l2=3e-5)),
        ("l2=3e-4", dataclasses.replace(base, l2=3e-4)),
        ("l2=1e-3", dataclasses.replace(base, l2=1e-3)),
        ("l2=3e-3", dataclasses.replace(base, l2=3e-3)),
        ("char 3-5", dataclasses.replace(base, char_low=3, char_high=5)),
        ("char 2-5", dataclasses.replace(base, char_high=5)),
        ("words only", dataclasses.replace(base, char_weight=0.0)),
        ("chars only", dataclasses.replace(base, word_weight=0.0)),
        ("char weight 0.5", dataclasses.replace(base, char_weight=0.5)),
        ("char weight 2", dataclasses.replace(base, char_weight=2.0)),
        ("class-balanced", dataclasses.replace(base, balanced=True)),
        ("class-balanced, l2=1e-3", dataclasses.replace(base, balanced=True, l2=1e-3)),
        ("no spelling correction", dataclasses.replace(base, spelling=False)),
        ("no synonym groups", dataclasses.replace(base, concept_weight=0.0)),
        ("synonym groups weight 1", dataclasses.replace(base, concept_weight=1.0)),
        ("min_df=2", dataclasses.replace(base, min_df=2)),
    ]
    lines = [
        "| variant | best threshold | cost | macro F1 | cost with typos | macro F1 with typos | dev accuracy "
        "| dev off-topic FP | dev wrong-confident |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, config in variants:
        clean = sweep(cross_validate(questions, labels, kb, config, folds, 1), classes)
        noisy = sweep(cross_validate(questions, labels, kb, config, folds, 1, typos=True), classes)
        best = min(clean, key=lambda r: r["cost"])
        noisy_at = next(r for r in noisy if r["threshold"] == best["threshold"])
        matcher = Matcher.train(
            questions, labels, kb.ids, dataclasses.replace(config, threshold=best["threshold"])
        )
        dev_result = evaluate_dev(matcher, dev_set)
        lines.append(
            f"| {name} | {best['threshold']:.2f} | {best['cost']:.3f} | {best['macro_f1']:.3f} "
            f"| {noisy_at['cost']:.3f} | {noisy_at['macro_f1']:.3f} | {dev_result.accuracy:.3f} "
            f"| {dev_result.off_fp:.3f} | {dev_result.wrong:.3f} |"
        )
        print(lines[-1], file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tune", action="store_true", help="also run the hyper-parameter grid (slow)")
    parser.add_argument(
        "--baseline", default=BASELINE_REV, help="the dev set's 'before': a git revision or a directory"
    )
    parser.add_argument("--dev-only", action="store_true", help="only the dev-set report (fast)")
    args = parser.parse_args()

    kb = load_articles()
    if args.dev_only:
        print("\n".join(dev_report(Matcher.build(kb), kb, args.baseline, misses=True)))
        return
    questions, labels = _training_set(kb, load_training(DEFAULT_TRAINING_PATH))
    classes = (*kb.ids, OFF_TOPIC)
    config = MatcherConfig()

    result = cross_validate(questions, labels, kb, config, args.folds, args.repeats)
    rows = sweep(result, classes)
    best = min(rows, key=lambda r: r["cost"])
    predicted = decide(result.probabilities, result.known, classes, config.threshold, result.vague)
    argmax = decide(result.probabilities, result.known, classes, 0.0)
    noisy = cross_validate(questions, labels, kb, config, args.folds, args.repeats, typos=True)
    noisy_rows = sweep(noisy, classes)
    noisy_predicted = decide(noisy.probabilities, noisy.known, classes, config.threshold, noisy.vague)

    matcher = Matcher.build(kb)
    legacy_matches = matcher.match_many([q for q, _ in LEGACY_DEV_SET])
    legacy_misses = [
        (q, want, m) for (q, want), m in zip(LEGACY_DEV_SET, legacy_matches, strict=True) if m.article != want
    ]

    single_ms, batch_ms = latency(matcher, questions)
    cold_inside, cold_whole = cold_start()

    out: list[str] = []
    out.append("## Question matcher")
    out.append("")
    out.append("```sh\n.venv/bin/python benchmarks/matcher_bench.py\n```")
    out.append("")
    out.append(
        f"Machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}, Python {platform.python_version()}; "
        f"run {dt.date.today().isoformat()}."
    )
    out.append("")
    counts = {c: labels.count(c) for c in classes}
    out.append(
        f"Data: {len(questions)} questions (articles' `examples` + `training.yaml`): "
        + ", ".join(f"{'off-topic' if c == OFF_TOPIC else c} {n}" for c, n in counts.items())
        + "."
    )
    out.append("")
    out.append(
        "Model: TF-IDF word 1-2-grams + char 2-4-grams (within words) after normalisation "
        "(Slack markup, contractions, shorthand map, typo correction against the training vocabulary), "
        "multinomial logistic regression with `off_topic` as a 7th class"
        + (", class-balanced" if config.balanced else " (classes weighted by their share of the data)")
        + ", trained at "
        f"start-up. Config: `{config}`."
    )
    out.append("")
    out.append(f"### Cross-validation ({args.repeats}x repeated stratified {args.folds}-fold)")
    out.append("")
    out.append(
        f"Threshold sweep (cost: wrong article = {WRONG_COST:g}, null for an on-topic question = "
        f"{UNSURE_COST:g}; lowest-cost threshold in CV: {best['threshold']:.2f}):"
    )
    out.append("")
    out.extend(sweep_table(rows, config.threshold))
    out.append("")
    out.append(
        f"Per class at the chosen threshold {config.threshold:.2f} (null counted as the off-topic class):"
    )
    out.append("")
    out.extend(per_class_table(result.truth, predicted, classes))
    out.append("")
    out.append("Confusion matrix at the chosen threshold (rows: truth, summed over repeats):")
    out.append("")
    out.extend(confusion_table(result.truth, predicted, classes))
    out.append("")
    out.append("For comparison, without a threshold (argmax over the 7 classes):")
    out.append("")
    out.extend(per_class_table(result.truth, argmax, classes))
    out.append("")
    out.append(
        f"Ambiguity: {result.ambiguous}/{result.on_topic} on-topic test questions "
        f'were flagged ambiguous ("did you mean ...?"); for {result.top_two_hits} of them the right '
        "article was one of the two offered."
    )
    out.append("")
    noisy_at = next(r for r in noisy_rows if r["threshold"] == config.threshold)
    clean_at = next(r for r in rows if r["threshold"] == config.threshold)
    out.append(
        "### With typos (same folds, test questions mangled: ~1 in 3 words gets a deleted, doubled, "
        "swapped or replaced letter)"
    )
    out.append("")
    out.append(
        f"At threshold {config.threshold:.2f}: accuracy {noisy_at['accuracy']:.3f} (clean {clean_at['accuracy']:.3f}), "
        f"macro F1 {noisy_at['macro_f1']:.3f} (clean {clean_at['macro_f1']:.3f}), on-topic wrong article "
        f"{noisy_at['on_wrong']:.3f} (clean {clean_at['on_wrong']:.3f}), off-topic -> null "
        f"{noisy_at['off_recall']:.3f} (clean {clean_at['off_recall']:.3f})."
    )
    out.append("")
    out.extend(per_class_table(noisy.truth, noisy_predicted, classes))
    out.append("")
    out.extend(dev_report(matcher, kb, args.baseline, misses=True))
    out.append("")
    out.append(
        f"Older dev set ({len(LEGACY_DEV_SET)} questions, `LEGACY_DEV_SET` in the benchmark): correct "
        f"{len(LEGACY_DEV_SET) - len(legacy_misses)}/{len(LEGACY_DEV_SET)}"
        + (
            ": misses " + "; ".join(f"{q!r} -> {m.article}" for q, _, m in legacy_misses)
            if legacy_misses
            else ""
        )
        + "."
    )
    out.append("")
    out.append("### Speed")
    out.append("")
    out.append(
        f"- `Matcher.match`, one question at a time: median **{single_ms:.3f} ms** per question "
        "(5 runs x 2000 questions, after warm-up)."
    )
    out.append(f"- `Matcher.match_many` in batches of 256: median **{batch_ms:.3f} ms** per question.")
    out.append(
        f"- Cold start (fresh interpreter: import, load articles, train, first match): median "
        f"**{cold_inside:.3f} s** measured inside the process, {cold_whole:.3f} s including interpreter "
        "start-up (7 runs)."
    )
    if args.tune:
        out.append("")
        out.append(
            f"### Hyper-parameter grid ({args.folds}-fold CV, 1 repeat; dev set at each variant's best threshold)"
        )
        out.append("")
        out.extend(tune(questions, labels, kb, args.folds))
    print("\n".join(out))


if __name__ == "__main__":
    main()
