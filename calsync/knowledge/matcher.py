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
   trained at start-up (L-BFGS on scipy.sparse matrices; ~0.1 s). scikit-learn is deliberately not
   used at run time: importing it alone costs ~0.9 s of the 1.5 s cold-start budget.
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
import itertools
import json
import math
import os
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml
from scipy import sparse

from calsync.knowledge.loader import KnowledgeBase

__all__ = [
    "DEFAULT_TRAINING_PATH",
    "GENERAL",
    "MAX_QUESTION_CHARS",
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
MAX_QUESTION_CHARS = 2000  # how much of a question is read (the bot, the pages, the CLI); Slack allows 40 000
DEFAULT_TRAINING_PATH = Path(__file__).resolve().with_name("training.yaml")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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


# -- text normalisation ---------------------------------------------------------------------------

_SLACK_LINK = re.compile(r"<(?:https?|mailto|ftp):[^>|]*(?:\|([^>]*))?>")
_SLACK_REF = re.compile(r"<[@#!][^>]*>")
_URL = re.compile(r"\b(?:https?://|www\.)\S+")
_EMOJI_CODE = re.compile(r":[a-z0-9_+\-]+:")
_TOKEN = re.compile(r"[^\W_]+")
_AADSTS = re.compile(r"^aadsts\d+$")  # AADSTS700082, AADSTS65001 ...: one word, whatever the code
_CONTRACTIONS = (
    (re.compile(r"\bcan'?t\b", re.IGNORECASE), "can not"),
    (re.compile(r"\bwon'?t\b", re.IGNORECASE), "will not"),
    (re.compile(r"n't\b", re.IGNORECASE), " not"),
    (re.compile(r"'(?:s|re|ve|ll|d|m)\b", re.IGNORECASE), ""),
)

# Shorthand, product names and frequent typos -> canonical words. Applied per token.
_TOKEN_MAP: Mapping[str, str] = {
    # calendar
    "cal": "calendar",
    "cals": "calendars",
    "calender": "calendar",
    "calandar": "calendar",
    "calander": "calendar",
    "calendr": "calendar",
    "calenders": "calendars",
    "gcal": "google calendar",
    "gcals": "google calendar",
    "gcalendar": "google calendar",
    "ical": "icloud calendar",
    # providers
    "o365": "outlook",
    "m365": "outlook",
    "ms365": "outlook",
    "office365": "outlook",
    "outlok": "outlook",
    "outllook": "outlook",
    "exchange": "outlook exchange",
    "msft": "microsoft",
    "gmail": "google gmail",
    "gsuite": "google workspace",
    "googel": "google",
    "gogle": "google",
    "goog": "google",
    "sp": "salespartner",
    # appointments and meetings
    "appt": "appointment",
    "appts": "appointments",
    "apt": "appointment",
    "apts": "appointments",
    "apointment": "appointment",
    "apointments": "appointments",
    "appointmnet": "appointment",
    "appoinment": "appointment",
    "appoinments": "appointments",
    "mtg": "meeting",
    "mtgs": "meetings",
    "mting": "meeting",
    "evnt": "event",
    "evnts": "events",
    # duplicates
    "dupes": "duplicates",
    "dupe": "duplicate",
    "dups": "duplicates",
    "dup": "duplicate",
    "dupl": "duplicate",
    "doubled": "double",
    "2x": "twice",
    # sync and connection
    "synch": "sync",
    "synching": "syncing",
    "synched": "synced",
    "sinc": "sync",
    "reauth": "reauthorize",
    "auth": "authorize",
    "oauth": "authorize",
    "dc": "disconnected",
    "dced": "disconnected",
    "pw": "password",
    "pwd": "password",
    "passwd": "password",
    # pop-ups
    "popups": "popup",
    "popup": "popup",
    "pup": "popup",
    # chat words
    "u": "you",
    "ur": "your",
    "pls": "please",
    "plz": "please",
    "thx": "thanks",
    "thnx": "thanks",
    "ty": "thanks",
    "tmrw": "tomorrow",
    "tmr": "tomorrow",
    "w": "with",
    "bc": "because",
    "cuz": "because",
    "isnt": "is not",
    "arent": "are not",
    "wasnt": "was not",
    "werent": "were not",
    "dont": "do not",
    "doesnt": "does not",
    "didnt": "did not",
    "cant": "can not",
    "cannot": "can not",
    "wont": "will not",
    "havent": "have not",
    "hasnt": "has not",
    "couldnt": "could not",
    "wouldnt": "would not",
    "shouldnt": "should not",
    "aint": "is not",
    "nothin": "nothing",
}
# Two-word phrases -> one canonical form. Applied after the token map.
_PHRASE_MAP: Mapping[tuple[str, str], str] = {
    ("office", "365"): "outlook",
    ("microsoft", "365"): "outlook",
    ("ms", "365"): "outlook",
    ("pop", "up"): "popup",
    ("pop", "ups"): "popup",
    ("google", "cal"): "google calendar",
    ("re", "connect"): "reconnect",
    ("re", "authorize"): "reauthorize",
    ("dis", "connected"): "disconnected",
    ("sales", "partner"): "salespartner",
}


def _wordset(text: str) -> frozenset[str]:
    """A set of words written as one whitespace-separated string (easier to read and edit)."""
    return frozenset(text.split())


# Weekdays -> one placeholder: "my friday demo" and "my tuesday call" are the same question.
_DAY = "<day>"
_TIME_TOKEN = "<time>"
_NAME = "<name>"
_DAYS = _wordset(
    "monday mon mondays tuesday tue tues tuesdays wednesday wed weds wednesdays thursday thu thur thurs "
    "thursdays friday fri fridays saturday sat saturdays sunday sun sundays"
)
# Clock times ("2pm", "9:30", "10 a.m.") and dates ("12/3", "3rd") -> placeholders, before tokenizing.
_CLOCK = re.compile(
    r"\b(?:[01]?\d|2[0-3])(?::[0-5]\d)?\s?(?:am|pm|a\.m\.|p\.m\.)(?![a-z])|\b(?:[01]?\d|2[0-3])[:h][0-5]\d\b",
    re.IGNORECASE,
)
_DATE = re.compile(r"\b\d{1,2}[/.]\d{1,2}(?:[/.]\d{2,4})?\b|\b\d{1,2}(?:st|nd|rd|th)\b", re.IGNORECASE)
_SENTINELS: Mapping[str, str] = {"zqtimez": _TIME_TOKEN, "zqdatez": _DAY}
# A bare hour after these words is a time too: "at 3", "from 9 to 11", "still says 2".
_HOUR_CONTEXT = frozenset(
    {"at", "from", "to", "till", "til", "until", "says", "shows", "say", "show", "around"}
)

# Words that are never a client's name, even capitalised or after "with".
_NOT_NAMES = _wordset(
    """a an the my our your his her their its this that these those me you him them us it i we they
    all both each every some any no nothing one two three my mine someone somebody anyone
    what which who whom whose when where why how and or but so if not is are was were be been
    of in on at to for from by about into over after before under again just only also still
    google outlook microsoft exchange office icloud apple gmail workspace teams zoom slack
    salespartner calendar calendars chrome safari firefox edge browser settings connections connection
    connected disconnected current authorize reauthorize reconnect connect not popup popups window
    appointment appointments meeting meetings call calls demo demos booking bookings event events
    client clients customer customers lead leads prospect prospects team manager boss colleague
    sync syncing synced duplicates duplicate ok okay thanks please hi hello hey crm sso it
    """
)


def _expand(tokens: Iterable[str]) -> list[str]:
    expanded: list[str] = []
    for token in tokens:
        mapped = _TOKEN_MAP.get(token)
        if mapped is None:
            expanded.append(token)
        else:
            expanded.extend(mapped.split())
    merged: list[str] = []
    i = 0
    while i < len(expanded):
        if i + 1 < len(expanded):
            phrase = _PHRASE_MAP.get((expanded[i], expanded[i + 1]))
            if phrase is not None:
                merged.extend(phrase.split())
                i += 2
                continue
        merged.append(expanded[i])
        i += 1
    return merged


def _placeholders(tokens: list[str], titled: set[int]) -> list[str]:
    """Times, days and client names -> placeholders ("my 2pm with Acme" ~ "my 10am with Globex").

    A name is the word after "with" (unless it is a common or product word) plus the capitalised
    words right after it, or any capitalised word mid-sentence that is not a product word.
    """
    out: list[str] = []
    previous_name = False
    for i, token in enumerate(tokens):
        token = _SENTINELS.get(token, token)
        if token in _DAYS:
            token = _DAY
        elif token.isdigit() and len(token) <= 2 and out and out[-1] in _HOUR_CONTEXT and int(token) <= 24:
            token = _TIME_TOKEN
        is_name = (
            token not in _NOT_NAMES
            and token.isalpha()
            and ((out and out[-1] == "with") or i in titled or (previous_name and i in titled))
        )
        if is_name:
            if not previous_name:
                out.append(_NAME)
            previous_name = True
            continue
        previous_name = False
        out.append(token)
    return out


def tokenize(question: str) -> list[str]:
    """The normalised words of a question (before typo correction against a vocabulary)."""
    text = unicodedata.normalize("NFKC", question[:MAX_QUESTION_CHARS])
    text = _SLACK_LINK.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _SLACK_REF.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _EMOJI_CODE.sub(" ", text)
    text = text.replace("\u2019", "'").replace("`", "'")
    text = _CLOCK.sub(" zqtimez ", text)
    text = _DATE.sub(" zqdatez ", text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    text = text.replace("'", "")
    words = [_AADSTS.sub("aadsts", w.lower()) for w in _TOKEN.findall(text)]
    titled = _titled_words(text, words)
    expanded: list[str] = []
    titled_after: set[int] = set()
    for i, word in enumerate(words):
        parts = _expand([word])
        if i in titled and len(parts) == 1:
            titled_after.add(len(expanded))
        expanded.extend(parts)
    merged = _expand(expanded)  # two-word phrases ("office 365")
    return _placeholders(merged, titled_after if len(merged) == len(expanded) else set())


_SENTENCE_END = frozenset('.!?:;\n>*_-("')


def _titled_words(text: str, words: Sequence[str]) -> set[int]:
    """Indexes (in `words`) of capitalised words mid-sentence: "the call with Pied Piper" -> 4, 5.

    Only when the message is in normal case (not Title Case Everywhere or ALL CAPS).
    """
    spans = [(m.start(), m.group()) for m in _TOKEN.finditer(text)]
    if len(spans) != len(words):
        return set()
    titled: set[int] = set()
    inside = capitalised = 0
    for i, (start, word) in enumerate(spans):
        before = text[:start].rstrip(" \t")
        if not before or before[-1] in _SENTENCE_END:
            continue
        inside += 1
        capitalised += word[0].isupper()
        if len(word) < 2 or not word[0].isupper() or not word[1:].islower():
            continue
        if words[i] in _NOT_NAMES or words[i] in _TOKEN_MAP or words[i] in _DAYS:
            continue
        titled.add(i)
    if capitalised * 2 > inside:  # Title Case Text (or ALL CAPS): capitals say nothing
        return set()
    return titled


def normalize(question: str) -> str:
    """The question as the matcher sees it, before typo correction: `tokenize` joined by spaces."""
    return " ".join(tokenize(question))


# -- typo correction ------------------------------------------------------------------------------


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


class _Speller:
    """Maps an unknown word to a known one at (roughly) one edit: SymSpell's deletion index."""

    MIN_LENGTH = 5

    def __init__(self, vocabulary: Counter[str]) -> None:
        self._known = vocabulary
        self.known: Mapping[str, int] = vocabulary
        self._index: dict[str, list[str]] = {}
        for word in vocabulary:
            if len(word) < self.MIN_LENGTH - 1 or not word.isalpha():
                continue
            self._index.setdefault(word, []).append(word)
            for deleted in _deletes(word):
                self._index.setdefault(deleted, []).append(word)
        self._cache: dict[str, str] = {}

    def correct(self, word: str) -> str:
        if word in self._known or len(word) < self.MIN_LENGTH or not word.isalpha():
            return word
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        candidates: set[str] = set(self._index.get(word, ()))
        for deleted in _deletes(word):
            candidates.update(self._index.get(deleted, ()))
            if deleted in self._known:
                candidates.add(deleted)
        # Typos rarely hit the first letter; requiring it keeps e.g. "cancel" from becoming "channel".
        candidates = {c for c in candidates if c[0] == word[0]}
        best = max(candidates, key=lambda c: (self._known[c], c), default=word)
        if len(self._cache) < 100_000:
            self._cache[word] = best
        return best


# -- features -------------------------------------------------------------------------------------


def _word_features(tokens: Sequence[str]) -> list[str]:
    features = [f"w:{t}" for t in tokens]
    features.extend(f"b:{a} {b}" for a, b in itertools.pairwise(tokens))
    return features


# Synonym groups written from the help center's vocabulary (not from any question set): each word
# also yields its group's feature, so a word the training data never used in that spot still counts
# ("my demo vanished" ~ "my appointment disappeared"). Also the calendar-vocabulary signal.
_CONCEPT_GROUPS: Mapping[str, str] = {
    "appt": "appointment appointments meeting meetings call calls demo demos booking bookings event events "
    "session sessions slot slots consultation consult visit visits intro invite invites reservation "
    "<name> <time>",
    "when": "<day> today tomorrow yesterday tonight morning afternoon evening week weekend later earlier",
    "gone": "vanished vanish vanishes vanishing disappeared disappear disappears disappearing gone missing "
    "nowhere absent blank empty lost poof trace",
    "cancel": "cancelled canceled cancel cancels cancelling canceling cancellation cancelation",
    "delete": "delete deleted deletes deleting remove removed removes removing trash trashed "
    "cleaned cleaning cleared clear tidied erase erased declined decline",
    "edit": "moved move moving rescheduled reschedule rescheduling changed change changes edited edit "
    "edits updated update updates renamed rename pushed push dragged drag shifted modified",
    "provider": "google outlook microsoft exchange icloud apple gmail workspace",
    "calendar": "calendar calendars agenda diary schedule",
    "double": "twice double doubled doubles duplicate duplicates duplicated copy copies triple "
    "cloned clone identical",
    "browser": "chrome safari firefox edge browser brave opera adblocker blocker",
    "window": "popup window windows login signin screen box prompt",
    "connection": "connected disconnected connection connect reconnect linked unlinked link "
    "authorize reauthorize authorization expired revoked access permission permissions token",
    # What identity providers and IT say when a grant stops working (OAuth error names, AADSTS codes
    # — `aadsts` stands for every `AADSTS12345` — consent and approval screens, MFA).
    "signin_error": "aadsts invalid grant interaction consent approval approve admin administrator "
    "mfa multifactor verification unauthorized sso conditional",
    "person": "client clients customer customers lead leads prospect prospects",
    "switch": "switch switching switched swap migrate migrating migrated moving transfer",
}
_CONCEPTS: Mapping[str, str] = {
    word: f"<{concept}>" for concept, words in _CONCEPT_GROUPS.items() for word in words.split()
}


def _concept_features(tokens: Sequence[str]) -> list[str]:
    """Group features: one per synonym group word, plus bigrams with the groups standing in."""
    mapped = [_CONCEPTS.get(t, t) for t in tokens]
    features = [f"c:{m}" for m, t in zip(mapped, tokens, strict=True) if m != t or t.startswith("<")]
    features.extend(
        f"cb:{a} {b}" for a, b in itertools.pairwise(mapped) if a.startswith("<") or b.startswith("<")
    )
    return features


def _char_features(tokens: Sequence[str], low: int, high: int) -> list[str]:
    features: list[str] = []
    for token in tokens:
        if token.startswith("<"):  # a placeholder: its letters mean nothing
            continue
        padded = f" {token} "
        length = len(padded)
        for n in range(low, min(high, length) + 1):
            features.extend(padded[i : i + n] for i in range(length - n + 1))
    return features


# A message of at most `_VAGUE_MAX` such words (ignoring filler) names a topic, not a problem:
# "appointment", "outlook", "calendar broken", "help". The bot should not pick an article for it.
_VAGUE_MAX = 3
_GENERIC = _wordset(
    """calendar calendars appointment appointments meeting meetings call calls demo demos booking
    bookings event events outlook google gmail microsoft exchange office icloud apple salespartner
    sync syncing synced help issue issues problem problems question questions broken working work
    works wrong error bug bugs urgent again settings account integration setup app not
    <name> <time> <day> today tomorrow thing stuff something
    """
)
_FILLER = _wordset(
    """a an the my our your i me is it its this that with in on of for to do does did
    please pls hi hey hello bot quick q so just all
    """
)


def _vague(tokens: Sequence[str]) -> bool:
    if len(tokens) > _VAGUE_MAX + 2:
        return False
    content = [t for t in tokens if t not in _FILLER]
    return len(content) <= _VAGUE_MAX and all(t in _GENERIC for t in content)


class _TfidfBlock:
    """One TF-IDF block (sublinear tf, smooth idf, L2 norm), like scikit-learn's, minus the import."""

    def __init__(self, documents: Sequence[Sequence[str]], offset: int, min_df: int) -> None:
        df: Counter[str] = Counter()
        for features in documents:
            df.update(set(features))
        kept = sorted(f for f, count in df.items() if count >= min_df)
        n = len(documents)
        self._set(kept, [math.log((1 + n) / (1 + df[f])) + 1.0 for f in kept], offset)

    def _set(self, kept: Sequence[str], idf: list[float], offset: int) -> None:
        self.index: dict[str, int] = {f: offset + i for i, f in enumerate(kept)}
        self.idf: list[float] = idf
        self.offset = offset

    @classmethod
    def restore(cls, kept: Sequence[str], idf: list[float], offset: int) -> _TfidfBlock:
        """A block as `_save` stored it (its features in column order)."""
        block = cls.__new__(cls)
        block._set(kept, [float(value) for value in idf], int(offset))
        return block

    @property
    def size(self) -> int:
        return len(self.index)

    def row(self, features: Sequence[str], weight: float) -> tuple[list[int], list[float]]:
        counts: Counter[int] = Counter()
        index = self.index
        for feature in features:
            column = index.get(feature)
            if column is not None:
                counts[column] += 1
        if not counts:
            return [], []
        columns = list(counts)
        values = [(1.0 + math.log(c)) * self.idf[col - self.offset] for col, c in counts.items()]
        norm = math.sqrt(sum(v * v for v in values))
        return columns, [weight * v / norm for v in values]


# -- the classifier -------------------------------------------------------------------------------


def _softmax(scores: FloatArray) -> FloatArray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _lbfgs(
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    start: FloatArray,
    max_iterations: int,
    tolerance: float = 1e-5,
    memory: int = 10,
) -> FloatArray:
    """Minimise a smooth convex function: L-BFGS with a backtracking (Armijo) line search."""
    x = start
    value, gradient = objective(x)
    history: list[tuple[FloatArray, FloatArray, float]] = []
    for _ in range(max_iterations):
        if float(np.abs(gradient).max()) < tolerance:
            break
        q = gradient.copy()
        alphas: list[float] = []
        for s, y, rho in reversed(history):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        if history:
            s, y, _ = history[-1]
            q *= float(s @ y) / float(y @ y)
        else:
            q /= max(1.0, float(np.linalg.norm(q)))
        for (s, y, rho), alpha in zip(history, reversed(alphas), strict=True):
            beta = rho * float(y @ q)
            q += (alpha - beta) * s
        direction = -q
        slope = float(gradient @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            history.clear()
            direction = -gradient
            slope = -float(gradient @ gradient)
        step = 1.0
        for _ in range(30):
            candidate = x + step * direction
            new_value, new_gradient = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s_k, y_k = candidate - x, new_gradient - gradient
        curvature = float(s_k @ y_k)
        if curvature > 1e-12:
            history.append((s_k, y_k, 1.0 / curvature))
            if len(history) > memory:
                history.pop(0)
        if value - new_value < 1e-10 * max(1.0, abs(value)):
            x, value, gradient = candidate, new_value, new_gradient
            break
        x, value, gradient = candidate, new_value, new_gradient
    return x


def _train_softmax(
    features: sparse.csr_matrix,
    labels: IntArray,
    classes: int,
    l2: float,
    sample_weight: FloatArray,
    max_iterations: int,
) -> tuple[FloatArray, FloatArray]:
    """Multinomial logistic regression: weighted mean log loss + l2/2 * |W|^2 (bias unpenalised)."""
    n, d = features.shape
    transposed = features.T.tocsr()
    targets = np.zeros((n, classes))
    targets[np.arange(n), labels] = 1.0
    weights = sample_weight / sample_weight.sum()

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        w = theta[: d * classes].reshape(d, classes)
        b = theta[d * classes :]
        scores = features @ w + b
        scores -= scores.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scores).sum(axis=1))
        log_p = scores - log_norm[:, None]
        loss = -float((weights * (log_p * targets).sum(axis=1)).sum()) + 0.5 * l2 * float((w * w).sum())
        residual = (np.exp(log_p) - targets) * weights[:, None]
        grad_w = transposed @ residual + l2 * w
        grad_b = residual.sum(axis=0)
        return loss, np.concatenate([np.asarray(grad_w).ravel(), grad_b])

    theta = _lbfgs(objective, np.zeros(d * classes + classes), max_iterations)
    return theta[: d * classes].reshape(d, classes).copy(), theta[d * classes :].copy()


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


# Bump when the features or the model change: a cached model of another version is never used.
MODEL_VERSION = 3


def default_cache_dir() -> Path:
    """Where trained models are kept: `CALSYNC_CACHE_DIR`, else `$XDG_CACHE_HOME/calsync`, else
    `~/.cache/calsync`."""
    if os.environ.get("CALSYNC_CACHE_DIR"):
        return Path(os.environ["CALSYNC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "calsync"


def _model_key(
    questions: Sequence[str], labels: Sequence[str], article_ids: Sequence[str], config: MatcherConfig
) -> str:
    digest = hashlib.sha256()
    payload = {"v": MODEL_VERSION, "q": list(questions), "l": list(labels), "a": list(article_ids)}
    digest.update(json.dumps(payload, ensure_ascii=False).encode())
    digest.update(repr(config).encode())
    return digest.hexdigest()[:24]


def load_training(path: Path) -> dict[str, list[str]]:
    """`{article_id or "off_topic": [questions]}` from a training YAML file."""
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser: ~10x faster
        data: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
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
    """Trained once (`build`, ~0.1 s), then `match` is pure computation: thread-safe, ~0.1 ms."""

    def __init__(
        self,
        classes: tuple[str, ...],
        speller: _Speller | None,
        words: _TfidfBlock,
        chars: _TfidfBlock,
        concepts: _TfidfBlock,
        coef: FloatArray,
        intercept: FloatArray,
        config: MatcherConfig,
    ) -> None:
        self.classes = classes
        self.article_ids = tuple(c for c in classes if c not in (OFF_TOPIC, GENERAL))
        self.config = config
        self._speller = speller
        self._words = words
        self._chars = chars
        self._concepts = concepts
        self._coef = coef
        self._intercept = intercept
        self._off = classes.index(OFF_TOPIC)
        self._general = classes.index(GENERAL) if GENERAL in classes else None
        self._article_columns = np.array([i for i, c in enumerate(classes) if c in self.article_ids])

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
        data = load_training(training if training is not None else DEFAULT_TRAINING_PATH)
        questions, labels = _training_set(kb, data)
        config = config or MatcherConfig()
        directory = default_cache_dir() if cache is None else cache
        path = (
            directory / f"matcher-{_model_key(questions, labels, kb.ids, config)}.npz" if directory else None
        )
        if path is not None:
            with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
                return cls._load(path, config)
        matcher = cls.train(questions, labels, kb.ids, config)
        if path is not None:
            with contextlib.suppress(OSError):
                matcher._save(path)
        return matcher

    # -- the cached model (arrays and JSON only: nothing executable is ever loaded) ---------------

    def _save(self, path: Path) -> None:
        speller = dict(self._speller.known) if self._speller is not None else None
        meta = {
            "classes": list(self.classes),
            "blocks": [[list(b.index), b.idf, b.offset] for b in (self._words, self._chars, self._concepts)],
            "speller": speller,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with partial.open("wb") as handle:
            np.savez(handle, coef=self._coef, intercept=self._intercept, meta=np.array(json.dumps(meta)))
        os.replace(partial, path)  # whole or not at all, whoever writes at the same time

    @classmethod
    def _load(cls, path: Path, config: MatcherConfig) -> Matcher:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            coef, intercept = stored["coef"], stored["intercept"]
        words, chars, concepts = (
            _TfidfBlock.restore(features, idf, offset) for features, idf, offset in meta["blocks"]
        )
        speller = _Speller(Counter(meta["speller"])) if meta["speller"] is not None else None
        return cls(tuple(meta["classes"]), speller, words, chars, concepts, coef, intercept, config)

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
        config = config or MatcherConfig()
        classes = (*article_ids, *((GENERAL,) if GENERAL in labels else ()), OFF_TOPIC)
        stray = set(labels) - set(classes)
        if stray:
            raise TrainingError(f"unknown labels: {', '.join(sorted(stray))}")
        tokenized = [tokenize(q) for q in questions]
        speller: _Speller | None = None
        if config.spelling:
            speller = _Speller(Counter(t for tokens in tokenized for t in tokens))
        word_docs = [_word_features(t) for t in tokenized]
        char_docs = [_char_features(t, config.char_low, config.char_high) for t in tokenized]
        concept_docs = [_concept_features(t) for t in tokenized]
        words = _TfidfBlock(word_docs, 0, config.min_df)
        chars = _TfidfBlock(char_docs, words.size, config.min_df)
        concepts = _TfidfBlock(concept_docs, words.size + chars.size, config.min_df)
        matcher = cls(classes, speller, words, chars, concepts, np.zeros((0, 0)), np.zeros(0), config)
        features = matcher._matrix(tokenized)

        label_index = np.array([classes.index(label) for label in labels], dtype=np.int64)
        counts = np.bincount(label_index, minlength=len(classes)).astype(np.float64)
        sample_weight = 1.0 / counts[label_index] if config.balanced else np.ones(len(label_index))
        coef, intercept = _train_softmax(
            features, label_index, len(classes), config.l2, sample_weight, config.max_iterations
        )
        matcher._coef = coef
        matcher._intercept = intercept
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
                and word not in _NOT_NAMES
                and _CONCEPTS.get(corrected[i + 1]) == "<appt>"
                and corrected[i + 1] not in (_NAME, _TIME_TOKEN)
            ):
                corrected[i] = _NAME
        return corrected

    def _matrix(self, tokenized: Sequence[list[str]]) -> sparse.csr_matrix:
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        config = self.config
        for tokens in tokenized:
            for block, features, weight in (
                (self._words, _word_features(tokens), config.word_weight),
                (self._chars, _char_features(tokens, config.char_low, config.char_high), config.char_weight),
                (self._concepts, _concept_features(tokens), config.concept_weight),
            ):
                if weight == 0.0:
                    continue
                columns, values = block.row(features, weight)
                indices.extend(columns)
                data.extend(values)
            indptr.append(len(indices))
        shape = (len(tokenized), self._words.size + self._chars.size + self._concepts.size)
        return sparse.csr_matrix((np.array(data), np.array(indices, dtype=np.int64), indptr), shape=shape)

    def _probabilities(self, questions: Sequence[str]) -> tuple[FloatArray, IntArray]:
        probabilities, known, _ = self._score(questions)
        return probabilities, known

    def _score(self, questions: Sequence[str]) -> tuple[FloatArray, IntArray, list[bool]]:
        """Class probabilities, the number of known features and the vague flag, per question."""
        tokenized = [self._correct(tokenize(q)) for q in questions]
        matrix = self._matrix(tokenized)
        scores = np.asarray(matrix @ self._coef) + self._intercept
        return _softmax(scores), np.diff(matrix.indptr), [_vague(t) for t in tokenized]

    def probabilities(self, questions: Sequence[str]) -> FloatArray:
        """Class probabilities (columns in `self.classes` order), one row per question."""
        return self._probabilities(questions)[0]

    def _decide(self, row: FloatArray, blank: bool, known_features: int, vague: bool = False) -> Match:
        config = self.config
        if blank:
            return Match(None, 0.0, (), config.ambiguity_ratio, config.ambiguity_floor)
        articles = row[self._article_columns]
        order = np.argsort(-articles)[:2]
        alternatives = tuple((self.article_ids[i], round(float(articles[i]), 6)) for i in order)
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
        """Match a batch at once (one sparse matrix product): what `calsync match` streams through."""
        batch = [q[:MAX_QUESTION_CHARS] for q in questions]
        if not batch:
            return []
        probabilities, known, vague = self._score(batch)
        return [
            self._decide(row, not q.strip(), int(n), v)
            for row, q, n, v in zip(probabilities, batch, known, vague, strict=True)
        ]
