"""How the matcher reads a question: the rep's Slack text normalised into tokens and features.

Steps 1-3 of the matcher (see `calsync.knowledge.matcher`): `normalize`/`tokenize` (Slack markup,
contractions, shorthand and typos, placeholders for times, days and names), the spelling corrector
(`Speller`), and the word, character and synonym-group features the model is trained on.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

MAX_QUESTION_CHARS = 2000  # how much of a question is read (the bot, the pages, the CLI); Slack allows 40 000

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
TIME_TOKEN = "<time>"
NAME_TOKEN = "<name>"
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
_SENTINELS: Mapping[str, str] = {"zqtimez": TIME_TOKEN, "zqdatez": _DAY}
# A bare hour after these words is a time too: "at 3", "from 9 to 11", "still says 2".
_HOUR_CONTEXT = frozenset(
    {"at", "from", "to", "till", "til", "until", "says", "shows", "say", "show", "around"}
)

# Words that are never a client's name, even capitalised or after "with".
NOT_NAMES = _wordset(
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
            token = TIME_TOKEN
        is_name = (
            token not in NOT_NAMES
            and token.isalpha()
            and ((out and out[-1] == "with") or i in titled or (previous_name and i in titled))
        )
        if is_name:
            if not previous_name:
                out.append(NAME_TOKEN)
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
        if words[i] in NOT_NAMES or words[i] in _TOKEN_MAP or words[i] in _DAYS:
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


class Speller:
    """Maps an unknown word to a known one at (roughly) one edit: SymSpell's deletion index."""

    MIN_LENGTH = 5

    def __init__(self, vocabulary: Counter[str]) -> None:
        self._known = vocabulary
        self.known: Mapping[str, int] = vocabulary
        # Built on the first word that needs correcting: most questions have none, and building it is
        # a good part of a `calsync match` start from the cache.
        self._index: dict[str, list[str]] | None = None
        self._cache: dict[str, str] = {}

    def _deletion_index(self) -> dict[str, list[str]]:
        if self._index is None:
            index: dict[str, list[str]] = {}
            for word in self._known:
                if len(word) < self.MIN_LENGTH - 1 or not word.isalpha():
                    continue
                index.setdefault(word, []).append(word)
                for deleted in _deletes(word):
                    index.setdefault(deleted, []).append(word)
            self._index = index  # one assignment: threads racing here build equal indexes
        return self._index

    def correct(self, word: str) -> str:
        if word in self._known or len(word) < self.MIN_LENGTH or not word.isalpha():
            return word
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        index = self._deletion_index()
        candidates: set[str] = set(index.get(word, ()))
        for deleted in _deletes(word):
            candidates.update(index.get(deleted, ()))
            if deleted in self._known:
                candidates.add(deleted)
        # Typos rarely hit the first letter; requiring it keeps e.g. "cancel" from becoming "channel".
        candidates = {c for c in candidates if c[0] == word[0]}
        best = max(candidates, key=lambda c: (self._known[c], c), default=word)
        if len(self._cache) < 100_000:
            self._cache[word] = best
        return best


# -- features -------------------------------------------------------------------------------------


def word_features(tokens: Sequence[str]) -> list[str]:
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
CONCEPTS: Mapping[str, str] = {
    word: f"<{concept}>" for concept, words in _CONCEPT_GROUPS.items() for word in words.split()
}


def concept_features(tokens: Sequence[str]) -> list[str]:
    """Group features: one per synonym group word, plus bigrams with the groups standing in."""
    mapped = [CONCEPTS.get(t, t) for t in tokens]
    features = [f"c:{m}" for m, t in zip(mapped, tokens, strict=True) if m != t or t.startswith("<")]
    features.extend(
        f"cb:{a} {b}" for a, b in itertools.pairwise(mapped) if a.startswith("<") or b.startswith("<")
    )
    return features


def char_features(tokens: Sequence[str], low: int, high: int) -> list[str]:
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


def is_vague(tokens: Sequence[str]) -> bool:
    if len(tokens) > _VAGUE_MAX + 2:
        return False
    content = [t for t in tokens if t not in _FILLER]
    return len(content) <= _VAGUE_MAX and all(t in _GENERIC for t in content)
