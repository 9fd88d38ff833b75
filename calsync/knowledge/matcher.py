"""The question matcher: a rep's question -> one of the help-center articles, or None.

How it works (figures and the choice of every constant below: `benchmarks/matcher_bench.py`):

1. `normalize` cleans the text the way reps write in Slack: lowercase, Slack markup (`<@U123>`,
   `<http://x|label>`, `:emoji:`) removed, contractions split ("isn't" -> "is not"), shorthand and
   common typos expanded ("gcal" -> "google calendar", "appt" -> "appointment", "o365" -> "outlook").
   Placeholders: clock times and dates -> `<time>`, weekdays -> `<day>`, a client's name (the word
   after "with", a capitalised word mid-sentence) -> `<name>`, so "my 2pm with Acme" generalises.
2. Words the training data never saw are corrected to a known word one edit away ("disconected"
   -> "disconnected") with a SymSpell-style deletion index: a dictionary look-up, not a scan. An
   unknown word right before "call"/"demo"/"meeting"... is a name ("my acme call" -> `<name>`).
3. Features: TF-IDF word unigrams + bigrams, TF-IDF character 2-4-grams inside words (which
   catch the typos step 2 misses), and TF-IDF synonym-group features (meeting/call/demo/booking ->
   `<appt>`, vanished/disappeared/missing -> `<gone>`, calendar/agenda -> `<calendar>`, ...: written
   from the help center, they carry a word the training never used in that spot), each block
   L2-normalised and weighted.
4. A multinomial logistic regression over the six articles plus an explicit `off_topic` class,
   trained once (L-BFGS on scipy.sparse matrices, `calsync.knowledge.model`) and cached. scikit-learn
   is deliberately not used: importing it alone costs ~0.9 s. Answering with the cached model is
   plain Python (a few hundred multiply-adds per question): importing numpy and scipy would cost more
   than `calsync match` spends on everything else (issue 18).
5. The best article wins only if it beats `off_topic` and `general` and its probability reaches
   `threshold`; otherwise the answer is None ("I'm not sure"): a wrong confident answer is worse.
   A message of at most three topic words and nothing else ("appointment", "outlook", "calendar
   broken") is always None: it names a topic, not a problem (the alternatives are still reported).
6. None comes in two kinds, and the bot treats them apart: `off_topic` (the off-topic class has at
   least `decline_threshold` and beats the rest: the password, billing, the CRM — declined) and not
   sure (the bot diagnoses the rep's connection and leads with what it finds). A seventh class,
   `general`, is trained on vague sync complaints ("my calendar is broken", "sync is stuck"): on
   topic, no one article, so never declined.

Nothing here is a module-level model: `Matcher.build` returns an immutable, thread-safe object.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import mul
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from calsync.knowledge.loader import KnowledgeBase
from calsync.knowledge.tfidf import TfidfBlock
from calsync.knowledge.wording import (
    CONCEPTS,
    MAX_QUESTION_CHARS,
    NAME_TOKEN,
    NOT_NAMES,
    TIME_TOKEN,
    Speller,
    char_features,
    concept_features,
    is_vague,
    normalize,
    tokenize,
    word_features,
)

if TYPE_CHECKING:
    from scipy import sparse

    from calsync.knowledge.model import FloatArray, IntArray

__all__ = [
    "DEFAULT_TRAINING_PATH",
    "GENERAL",
    "MAX_QUESTION_CHARS",
    "NUMPY_BATCH",
    "OFF_TOPIC",
    "Match",
    "Matcher",
    "MatcherConfig",
    "TrainingError",
    "load_training",
    "normalize",
]

OFF_TOPIC = "off_topic"
GENERAL = "general"  # about calendar sync, but no one article: the diagnosis leads
DEFAULT_TRAINING_PATH = Path(__file__).resolve().with_name("training.yaml")


class TrainingError(ValueError):
    """The training file is missing, malformed, or names an article the knowledge base lacks."""


# -- the answer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """What the matcher thinks a question is about."""

    article: str | None  # None: off-topic, or not sure enough
    confidence: float  # 0..1, for `article`; when None, how sure we are that it is off-topic
    alternatives: tuple[tuple[str, float], ...] = ()  # top two articles with probabilities, best first
    ambiguity_ratio: float = field(default=0.6, repr=False, compare=False)
    ambiguity_floor: float = field(default=0.2, repr=False, compare=False)
    off_topic: bool = False  # None because it is clearly about something else (decline it)

    @property
    def ambiguous(self) -> bool:
        """The top two articles are close: the bot should ask "did you mean A or B?"."""
        if len(self.alternatives) < 2:
            return False
        (_, first), (_, second) = self.alternatives[0], self.alternatives[1]
        return second >= self.ambiguity_floor and second >= self.ambiguity_ratio * first


# -- configuration and training data ----------------------------------------------------------


@dataclass(frozen=True)
class MatcherConfig:
    """Every tunable, with the values cross-validation picked (see benchmarks/matcher_bench.py)."""

    threshold: float = 0.45  # the best article needs at least this probability (see the benchmark)
    decline_threshold: float = 0.5  # off-topic needs at least this to be declined (else: not sure)
    l2: float = 1e-4  # regularisation strength (on the mean loss)
    char_low: int = 2
    char_high: int = 4
    word_weight: float = 1.0
    char_weight: float = 1.0
    concept_weight: float = 0.5  # the synonym-group block (0: off)
    min_df: int = 1
    balanced: bool = False  # True: weight classes equally (CV: worse; off-topic's larger share helps)
    spelling: bool = True
    ambiguity_ratio: float = 0.55  # second >= ratio * first ...
    ambiguity_floor: float = 0.2  # ... and second >= floor -> ambiguous
    max_iterations: int = 300


# Bump when the features, the model or the cache file change: a cached model of another version is
# never used.
MODEL_VERSION = 5
# From this many questions at once (a file piped to `calsync match`), numpy scores the batch: its
# import (0.1-0.3 s) pays for itself; fewer (a person typing, the bot) are scored in plain Python.
NUMPY_BATCH = 64
_CACHE_MAGIC = b"calsync-matcher\n"
_CACHE_HEADER = struct.Struct("<QQ")  # the JSON's length in bytes, the number of coefficients


def default_cache_dir() -> Path:
    """Where trained models are kept: `CALSYNC_CACHE_DIR`, else `$XDG_CACHE_HOME/calsync`, else
    `~/.cache/calsync`."""
    if os.environ.get("CALSYNC_CACHE_DIR"):
        return Path(os.environ["CALSYNC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "calsync"


def _model_key(kb: KnowledgeBase, training_text: str, config: MatcherConfig) -> str:
    """The cache key: the training file's text as it is (parsing it is the slow part of a start from
    the cache, so it is parsed only to train), the articles' ids and examples, the config."""
    digest = hashlib.sha256()
    articles = [[article.id, list(article.examples)] for article in kb.articles]
    payload = {"v": MODEL_VERSION, "t": training_text, "a": articles}
    digest.update(json.dumps(payload, ensure_ascii=False).encode())
    digest.update(repr(config).encode())
    return digest.hexdigest()[:24]


def _read_training_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path}: cannot read the training file: {exc}") from exc


def load_training(path: Path, text: str | None = None) -> dict[str, list[str]]:
    """`{article_id or "off_topic": [questions]}` from a training YAML file (`text`: already read)."""
    if text is None:
        text = _read_training_text(path)
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser: ~10x faster
        data: Any = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise TrainingError(f"{path}: cannot read the training file: {exc}") from exc
    if not isinstance(data, dict):
        raise TrainingError(f"{path}: must map article ids (and off_topic) to lists of questions")
    problems: list[str] = []
    result: dict[str, list[str]] = {}
    for key, questions in data.items():
        if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
            problems.append(f"{key!r}: must be a list of non-empty questions (quote entries such as '?')")
            continue
        result[str(key)] = [q.strip() for q in questions]
    if problems:
        raise TrainingError(f"{path}: " + "; ".join(problems))
    return result


def _training_set(kb: KnowledgeBase, training: Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
    unknown = sorted(set(training) - set(kb.ids) - {OFF_TOPIC, GENERAL})
    if unknown:
        raise TrainingError(f"training data names unknown articles: {', '.join(unknown)}")
    if not training.get(OFF_TOPIC):
        raise TrainingError(f"training data needs {OFF_TOPIC!r} questions")
    questions: list[str] = []
    labels: list[str] = []
    for article in kb.articles:
        for question in (*article.examples, *training.get(article.id, ())):
            questions.append(question)
            labels.append(article.id)
    for label in (GENERAL, OFF_TOPIC):
        for question in training.get(label, ()):
            questions.append(question)
            labels.append(label)
    return questions, labels


# -- the matcher --------------------------------------------------------------------------------


class Matcher:
    """Trained once (`build`: from the cache, or seconds of training), then `match` is pure
    computation: thread-safe, well under a millisecond.

    `coef` holds the weights class by class: one array of doubles per class, indexed by feature
    column, so a class's score is one `sum(map(...))` over the question's columns, in C."""

    def __init__(
        self,
        classes: tuple[str, ...],
        speller: Speller | None,
        words: TfidfBlock,
        chars: TfidfBlock,
        concepts: TfidfBlock,
        coef: Sequence[array[float]],
        intercept: Sequence[float],
        config: MatcherConfig,
    ) -> None:
        self.classes = classes
        self.article_ids = tuple(c for c in classes if c not in (OFF_TOPIC, GENERAL))
        self.config = config
        self._speller = speller
        self._words = words
        self._chars = chars
        self._concepts = concepts
        self._coef = tuple(coef)
        self._weights: Any = None  # numpy's view of `coef`, made by the first big batch
        self._intercept = [float(value) for value in intercept]
        self._off = classes.index(OFF_TOPIC)
        self._general = classes.index(GENERAL) if GENERAL in classes else None
        self._article_columns = [i for i, c in enumerate(classes) if c in self.article_ids]

    @classmethod
    def build(
        cls,
        kb: KnowledgeBase,
        training: Path | None = None,
        config: MatcherConfig | None = None,
        *,
        cache: Path | Literal[False] | None = None,
    ) -> Matcher:
        """Train on the articles' examples plus the training file (default: training.yaml).

        Training takes seconds, so the trained model is kept in `cache` (default: the user's cache
        directory, `default_cache_dir()`; False: none), under a key of everything it is trained
        from: the articles' ids and examples, the training file, the config and this code's model
        version. An admin who edits an article or the training file gets a freshly trained model on
        the next start; a cache that cannot be read or written is simply not used."""
        training_path = training if training is not None else DEFAULT_TRAINING_PATH
        text = _read_training_text(training_path)
        config = config or MatcherConfig()
        directory = default_cache_dir() if cache is None else cache
        path = directory / f"matcher-{_model_key(kb, text, config)}.model" if directory else None
        if path is not None:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, struct.error):
                return cls._load(path, config)
        questions, labels = _training_set(kb, load_training(training_path, text))
        matcher = cls.train(questions, labels, kb.ids, config)
        if path is not None:
            with contextlib.suppress(OSError):
                matcher._save(path)
        return matcher

    # -- the cached model (JSON and little-endian doubles only: nothing executable is ever loaded) --
    # Read with the standard library alone (no numpy.load), so a start from the cache imports nothing
    # heavy: magic, header (JSON length, coefficient count), JSON, then the coefficients class by class.

    def _save(self, path: Path) -> None:
        speller = dict(self._speller.known) if self._speller is not None else None
        meta = {
            "classes": list(self.classes),
            "blocks": [[list(b.index), b.idf, b.offset] for b in (self._words, self._chars, self._concepts)],
            "speller": speller,
            "intercept": self._intercept,
        }
        header = json.dumps(meta, ensure_ascii=False).encode()
        coef = array("d")
        for weights in self._coef:
            coef.extend(weights)
        if sys.byteorder == "big":
            coef.byteswap()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as handle:
            handle.write(_CACHE_MAGIC + _CACHE_HEADER.pack(len(header), len(coef)) + header)
            coef.tofile(handle)
        os.replace(partial, path)  # whole or not at all, whoever writes at the same time

    @classmethod
    def _load(cls, path: Path, config: MatcherConfig) -> Matcher:
        stored = path.read_bytes()
        if not stored.startswith(_CACHE_MAGIC):
            raise ValueError(f"{path}: not a cached matcher model")
        start = len(_CACHE_MAGIC)
        header_size, count = _CACHE_HEADER.unpack_from(stored, start)
        start += _CACHE_HEADER.size
        meta = json.loads(stored[start : start + header_size])
        words, chars, concepts = (
            TfidfBlock.restore(features, idf, offset) for features, idf, offset in meta["blocks"]
        )
        classes = tuple(meta["classes"])
        size = words.size + chars.size + concepts.size
        start += header_size
        if count != size * len(classes) or len(stored) - start != count * 8:
            raise ValueError(f"{path}: truncated cached matcher model")
        coef = []
        for k in range(len(classes)):
            weights = array("d", stored[start + k * size * 8 : start + (k + 1) * size * 8])
            if sys.byteorder == "big":
                weights.byteswap()
            coef.append(weights)
        speller = Speller(Counter(meta["speller"])) if meta["speller"] is not None else None
        return cls(classes, speller, words, chars, concepts, coef, meta["intercept"], config)

    @classmethod
    def train(
        cls,
        questions: Sequence[str],
        labels: Sequence[str],
        article_ids: Sequence[str],
        config: MatcherConfig | None = None,
    ) -> Matcher:
        """Train on labelled questions (labels: article ids, `GENERAL` or `OFF_TOPIC`); used by `build`
        and CV."""
        import numpy as np

        from calsync.knowledge.model import train_softmax

        config = config or MatcherConfig()
        classes = (*article_ids, *((GENERAL,) if GENERAL in labels else ()), OFF_TOPIC)
        stray = set(labels) - set(classes)
        if stray:
            raise TrainingError(f"unknown labels: {', '.join(sorted(stray))}")
        tokenized = [tokenize(q) for q in questions]
        speller: Speller | None = None
        if config.spelling:
            speller = Speller(Counter(t for tokens in tokenized for t in tokens))
        word_docs = [word_features(t) for t in tokenized]
        char_docs = [char_features(t, config.char_low, config.char_high) for t in tokenized]
        concept_docs = [concept_features(t) for t in tokenized]
        words = TfidfBlock(word_docs, 0, config.min_df)
        chars = TfidfBlock(char_docs, words.size, config.min_df)
        concepts = TfidfBlock(concept_docs, words.size + chars.size, config.min_df)
        matcher = cls(classes, speller, words, chars, concepts, (), [0.0] * len(classes), config)
        features = matcher._matrix(tokenized)

        label_index = np.array([classes.index(label) for label in labels], dtype=np.int64)
        counts = np.bincount(label_index, minlength=len(classes)).astype(np.float64)
        sample_weight = 1.0 / counts[label_index] if config.balanced else np.ones(len(label_index))
        coef, intercept = train_softmax(
            features, label_index, len(classes), config.l2, sample_weight, config.max_iterations
        )
        matcher._coef = tuple(
            array("d", np.ascontiguousarray(coef[:, k], dtype=np.float64).tobytes())
            for k in range(len(classes))
        )
        matcher._intercept = [float(value) for value in intercept]
        return matcher

    # -- inference --------------------------------------------------------------------------------

    def _correct(self, tokens: list[str]) -> list[str]:
        if self._speller is None:
            return tokens
        corrected = [self._speller.correct(t) for t in tokens]
        # A word nobody in the training data ever wrote, right before "call"/"demo"/...: a client's
        # name ("my acme call vanished" -> "my <name> call vanished").
        known = self._speller.known
        for i in range(len(corrected) - 1):
            word = corrected[i]
            if (
                word.isalpha()
                and word not in known
                and word not in NOT_NAMES
                and CONCEPTS.get(corrected[i + 1]) == "<appt>"
                and corrected[i + 1] not in (NAME_TOKEN, TIME_TOKEN)
            ):
                corrected[i] = NAME_TOKEN
        return corrected

    def _rows(self, tokenized: Sequence[list[str]]) -> Iterator[tuple[list[int], list[float]]]:
        """Each question's features: its columns and TF-IDF values (a sparse row)."""
        config = self.config
        for tokens in tokenized:
            columns: list[int] = []
            values: list[float] = []
            for block, features, weight in (
                (self._words, word_features(tokens), config.word_weight),
                (self._chars, char_features(tokens, config.char_low, config.char_high), config.char_weight),
                (self._concepts, concept_features(tokens), config.concept_weight),
            ):
                if weight == 0.0:
                    continue
                block_columns, block_values = block.row(features, weight)
                columns.extend(block_columns)
                values.extend(block_values)
            yield columns, values

    def _matrix(self, tokenized: Sequence[list[str]]) -> sparse.csr_matrix:
        """The feature matrix, for training (numpy and scipy are imported only to train)."""
        import numpy as np
        from scipy import sparse

        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for columns, values in self._rows(tokenized):
            indices.extend(columns)
            data.extend(values)
            indptr.append(len(indices))
        shape = (len(tokenized), self._words.size + self._chars.size + self._concepts.size)
        return sparse.csr_matrix((np.array(data), np.array(indices, dtype=np.int64), indptr), shape=shape)

    def _score_rows(self, questions: Sequence[str]) -> tuple[list[list[float]], list[int], list[bool]]:
        """Class probabilities, the number of known features and the vague flag, per question."""
        tokenized = [self._correct(tokenize(q)) for q in questions]
        rows = list(self._rows(tokenized))
        if len(rows) >= NUMPY_BATCH:
            probabilities = self._batch_probabilities(rows)
        else:
            by_class = tuple(zip(self._coef, self._intercept, strict=True))
            probabilities = []
            for columns, values in rows:
                scores = [
                    sum(map(mul, values, map(weights.__getitem__, columns))) + bias
                    for weights, bias in by_class
                ]
                top = max(scores)
                exponentials = [math.exp(score - top) for score in scores]
                total = sum(exponentials)
                probabilities.append([value / total for value in exponentials])
        return probabilities, [len(columns) for columns, _ in rows], [is_vague(t) for t in tokenized]

    def _batch_probabilities(self, rows: Sequence[tuple[list[int], list[float]]]) -> list[list[float]]:
        """The same scores for a big batch with numpy (imported here, once a batch is worth it)."""
        import numpy as np

        if self._weights is None:  # (classes x features), views of the class arrays: no copy
            self._weights = np.stack([np.frombuffer(weights, dtype=np.float64) for weights in self._coef])
        columns = np.fromiter(chain.from_iterable(c for c, _ in rows), dtype=np.int64)
        values = np.fromiter(chain.from_iterable(v for _, v in rows), dtype=np.float64)
        owners = np.repeat(np.arange(len(rows)), [len(c) for c, _ in rows])
        contributions = self._weights[:, columns] * values
        scores = np.stack(
            [np.bincount(owners, weights=row, minlength=len(rows)) for row in contributions], axis=1
        ) + np.array(self._intercept)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        result: list[list[float]] = scores.tolist()
        return result

    def _probabilities(self, questions: Sequence[str]) -> tuple[FloatArray, IntArray]:
        probabilities, known, _ = self._score(questions)
        return probabilities, known

    def _score(self, questions: Sequence[str]) -> tuple[FloatArray, IntArray, list[bool]]:
        """`_score_rows` as numpy arrays (for the benchmark's cross-validation and `probabilities`)."""
        import numpy as np

        probabilities, known, vague = self._score_rows(questions)
        shape = (len(probabilities), len(self.classes))
        return (
            np.array(probabilities, dtype=np.float64).reshape(shape),
            np.array(known, dtype=np.int64),
            vague,
        )

    def probabilities(self, questions: Sequence[str]) -> FloatArray:
        """Class probabilities (columns in `self.classes` order), one row per question."""
        return self._probabilities(questions)[0]

    def _decide(self, row: Sequence[float], blank: bool, known_features: int, vague: bool = False) -> Match:
        config = self.config
        if blank:
            return Match(None, 0.0, (), config.ambiguity_ratio, config.ambiguity_floor)
        articles = [float(row[column]) for column in self._article_columns]
        order = sorted(range(len(articles)), key=lambda i: -articles[i])[:2]
        alternatives = tuple((self.article_ids[i], round(articles[i], 6)) for i in order)
        best_id, best = alternatives[0]
        off = float(row[self._off])
        general = float(row[self._general]) if self._general is not None else 0.0
        if best >= config.threshold and best > max(off, general) and known_features > 0 and not vague:
            return Match(best_id, best, alternatives, config.ambiguity_ratio, config.ambiguity_floor)
        declined = off >= config.decline_threshold and off > general and not vague
        return Match(
            None, round(off, 6), alternatives, config.ambiguity_ratio, config.ambiguity_floor, declined
        )

    def match(self, question: str) -> Match:
        return self.match_many([question])[0]

    def match_many(self, questions: Iterable[str]) -> list[Match]:
        """Match a batch at once: what `calsync match` streams through."""
        batch = [q[:MAX_QUESTION_CHARS] for q in questions]
        if not batch:
            return []
        probabilities, known, vague = self._score_rows(batch)
        return [
            self._decide(row, not q.strip(), int(n), v)
            for row, q, n, v in zip(probabilities, batch, known, vague, strict=True)
        ]
