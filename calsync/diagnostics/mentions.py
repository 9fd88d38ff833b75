"""Which appointment a rep's question names: "where is my 2pm with Acme tomorrow", "I can't see
tomorrow's Wonka demo", "what happened to the massive dynamic renewal call".

`parse_mention` reads a time ("2pm", "2:30 pm", "14:00", "at 2", "noon"), a day ("today",
"tomorrow", "yesterday's", "on friday") and the words that may be part of a title ("acme", "demo",
"qbr") out of the question; `find_appointment` scores the rep's appointments against it (title
words, weighted by how rare they are among the rep's appointments, then time, then day) and picks
the best, the nearest in time on a tie. At least one title word or the time must match.

Times of day are read in each appointment's own time zone; a bare hour is read as business hours
("at 2" is 2 PM, "at 9" is 9 AM).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.diagnostics.state import AppointmentState

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_OFFSETS = {"today": 0, "tonight": 0, "tomorrow": 1, "yesterday": -1}

# Words that never identify an appointment: grammar, the question itself, and the product's own
# vocabulary ("calendar", "sync", "appointment"). Words that *are* in titles ("demo", "call",
# "renewal", "qbr") are deliberately not here.
_STOPWORD_TEXT = """
    a about after again all also am an and any anymore appear appeared appearing appears are aren't
    around as at be been before booked book but by can can't cannot come could did didn't do does
    doesn't don't event events find for from get gets going gone got had has hasn't have haven't
    he hello help her hey hi his how i i'm i've if in into is isn't it it's its just last lost
    me meeting meetings mine missing more morning afternoon evening moved my myself next no not now
    of on one only or our out over please pm see seeing seem seems shows show showing shown since
    so some still that the their them then there these this those to up us was wasn't we we're
    were weren't what what's when where where's which who why why's will with won't would yet you
    your appointment appointments calendar calendars google outlook gmail microsoft office sync
    synced syncing salespartner schedule scheduled happened happen happening disappeared vanished
    deleted cancelled canceled o'clock noon midday week day days time there's thing every twice double
    duplicate duplicates copy copies same new old edit edits change changes changed changing work
    works working broken connect connected disconnected reconnect account password popup blocked
    window switch switched switching provider phone app issue problem wrong right instead anything
    nothing something everything keep keeps ok okay sure thanks thank anyone someone say says said
    tell told look looks looking manager boss team whole colleague colleagues assistant people
    everybody everyone
"""
_SHORTHAND = "gcal o365 office365 m365 ms exchange appt appts mtg mtgs cal cals dupe dupes"
# Reps drop apostrophes ("isnt") and mistype the generic words ("apointment", "calender"):
# neither identifies an appointment.
STOPWORDS = frozenset(
    {word for word in _STOPWORD_TEXT.split()}
    | {word.replace("'", "") for word in _STOPWORD_TEXT.split()}
    | set(_SHORTHAND.split())
)
_TYPO_TARGETS = tuple(word for word in STOPWORDS if len(word) >= 5 and "'" not in word)


def edits_apart(a: str, b: str, limit: int) -> bool:
    """Whether at most `limit` insertions, deletions, substitutions or swaps of neighbours turn a
    into b (optimal string alignment distance, stopping early past the limit)."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


@functools.lru_cache(maxsize=8192)
def is_generic(word: str) -> bool:
    """A stopword, or a typo of a longer one: one edit from a word of 5+ letters ("calender",
    "outlok"), two from one of 8+ ("apointmnet").

    Remembered per word (the words reps use repeat; comparing one with every stopword costs ~40 µs,
    and the sync check reads each question once per connection)."""
    if word in STOPWORDS:
        return True
    if len(word) < 5:
        return False
    return any(
        edits_apart(word, target, 2 if len(target) >= 8 and len(word) >= 7 else 1) for target in _TYPO_TARGETS
    )


_MERIDIEM = r"(?P<meridiem>a\.?m\.?|p\.?m\.?)"
_TIME_PATTERNS = (
    # 2pm, 2 pm, 2:30 pm, 2.30pm, 11 a.m.
    re.compile(rf"\b(?P<hour>1[0-2]|0?[1-9])(?:[:.](?P<minute>[0-5]\d))?\s*{_MERIDIEM}(?![a-z])"),
    # 14:00, 9:30 (24-hour or bare)
    re.compile(r"\b(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)\b"),
    # at 2, at 10, 3 o'clock
    re.compile(r"\bat\s+(?P<hour>1[0-2]|0?[1-9])\b(?![:.]\d)"),
    re.compile(r"\b(?P<hour>1[0-2]|0?[1-9])\s*o'?clock\b"),
)
_NOON = re.compile(r"\b(noon|midday)\b")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# "with Acme", "for Globex", "the Acme demo", "my QBR": a phrase pointing at one appointment.
_POINTER = re.compile(r"\b(?:with|for|the|my|our|this|that)\s+(?=(?P<word>[a-z0-9]+(?:'[a-z]+)?))")


@dataclass(frozen=True)
class Mention:
    """What a question says about one appointment. Absent parts are None / empty."""

    words: tuple[str, ...] = ()  # candidate title words, normalized (lowercase, singular)
    hour: int | None = None  # 0-23
    minute: int | None = None
    day_offset: int | None = None  # today 0, tomorrow 1, yesterday -1
    weekday: int | None = None  # Monday 0 ... Sunday 6
    # Words right after "with", "for", "the", "my"...: the names the question points at ("with Acme").
    pointed: tuple[str, ...] = ()

    @property
    def has_time(self) -> bool:
        return self.hour is not None

    @property
    def has_day(self) -> bool:
        return self.day_offset is not None or self.weekday is not None

    @property
    def specific(self) -> bool:
        """Whether the question seems to name one appointment (so "none matches" is worth saying)."""
        return self.has_time or bool(self.pointed) or (self.has_day and bool(self.words))

    def describe(self) -> str:
        """The mention in words, for evidence and summaries: "2:00 PM tomorrow acme"."""
        parts: list[str] = []
        if self.hour is not None:
            hour = self.hour % 12 or 12
            parts.append(f"{hour}:{self.minute or 0:02d} {'AM' if self.hour < 12 else 'PM'}")
        if self.day_offset is not None:
            parts.append({0: "today", 1: "tomorrow", -1: "yesterday"}[self.day_offset])
        elif self.weekday is not None:
            parts.append(WEEKDAYS[self.weekday].capitalize())
        parts.extend(self.words)
        return " ".join(parts)


def normalize(word: str) -> str:
    """Lowercase, no possessive, singular-ish: "Tomorrow's" -> "tomorrow", "demos" -> "demo".
    Stopwords and day names come back whole ("this", "tuesday")."""
    word = word.lower().replace("’", "'")
    if word in STOPWORDS:
        return word
    word = word.removesuffix("'s").removesuffix("'")
    if word in STOPWORDS or word in WEEKDAYS or word in _DAY_OFFSETS:
        return word
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word


def _business_hour(hour: int) -> int:
    """A bare "2" means 2 PM, "9" means 9 AM: meetings happen in business hours."""
    return hour + 12 if 1 <= hour <= 7 else hour


def _parse_time(text: str) -> tuple[tuple[int, int] | None, str]:
    """The first time of day in `text`, and the text with every time taken out."""
    found: tuple[int, int] | None = None
    for index, pattern in enumerate(_TIME_PATTERNS):
        match = pattern.search(text)
        if match is None:
            continue
        hour = int(match["hour"])
        minute = int(match.groupdict().get("minute") or 0)
        if index == 0:
            meridiem = match["meridiem"][0]
            hour = hour % 12 + (12 if meridiem == "p" else 0)
        elif index == 1:
            hour = _business_hour(hour) if hour <= 12 else hour
        else:
            hour = _business_hour(hour)
        if found is None:
            found = (hour, minute)
        text = pattern.sub(" ", text)
    if _NOON.search(text):
        found = found or (12, 0)
        text = _NOON.sub(" ", text)
    return found, text


def parse_mention(question: str | None) -> Mention | None:
    """What the question says about an appointment, or None when it names none (no time, no day,
    no word that could be part of a title)."""
    if not question:
        return None
    text = question.lower().replace("’", "'")[:500]
    time_of_day, text = _parse_time(text)
    day_offset: int | None = None
    weekday: int | None = None
    words: list[str] = []
    for raw in _WORD.findall(text):
        word = normalize(raw)
        if word in _DAY_OFFSETS:
            day_offset = _DAY_OFFSETS[word] if day_offset is None else day_offset
            continue
        if word in WEEKDAYS:
            weekday = WEEKDAYS.index(word) if weekday is None else weekday
            continue
        if is_generic(word) or word.isdigit() or len(word) < 2:
            continue
        if word not in words:
            words.append(word)
    pointed: list[str] = []
    for match in _POINTER.finditer(text):
        word = normalize(match["word"])
        if word in words and word not in pointed:
            pointed.append(word)
    if time_of_day is None and day_offset is None and weekday is None and not words:
        return None
    return Mention(
        words=tuple(words),
        hour=time_of_day[0] if time_of_day else None,
        minute=time_of_day[1] if time_of_day else None,
        day_offset=day_offset,
        weekday=weekday,
        pointed=tuple(pointed),
    )


def title_words(title: str) -> set[str]:
    return {normalize(word) for word in _WORD.findall(title.lower().replace("’", "'"))} - STOPWORDS


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day_matches(mention: Mention, start: datetime, now: datetime, zone: tzinfo) -> bool:
    local = start.astimezone(zone)
    if mention.day_offset is not None:
        return local.date() == (now.astimezone(zone) + timedelta(days=mention.day_offset)).date()
    if mention.weekday is not None:
        return local.weekday() == mention.weekday and abs(start - now) <= timedelta(days=7)
    return False


@dataclass(frozen=True)
class Match:
    appointment: AppointmentState
    score: float
    title_hits: tuple[str, ...]
    time_match: bool
    day_match: bool


def score_appointments(
    mention: Mention, appointments: Sequence[AppointmentState], now: datetime
) -> list[Match]:
    """Every appointment that matches at least a title word or the time, best first.

    A name the question points at ("with Initech", "the Initech demo") that is in none of the rep's
    titles means an appointment we don't have: nothing is picked (not another client's appointment
    at the same time, nor any "demo"); the sync check then says so and what is at that time.
    """
    titles = {appointment.id: title_words(appointment.title) for appointment in appointments}
    known = set().union(*titles.values()) if titles else set()
    unknown_name = any(word not in known for word in mention.pointed)
    frequency = {
        word: sum(word in words for words in titles.values()) for word in mention.words
    }  # a word in one title only ("acme") outweighs one in every title ("call")
    matches: list[Match] = []
    for appointment in appointments:
        zone = _zone(appointment.time_zone)
        hits = tuple(word for word in mention.words if word in titles[appointment.id])
        local = appointment.start.astimezone(zone)
        time_match = mention.hour is not None and (local.hour, local.minute) == (
            mention.hour,
            mention.minute or 0,
        )
        if unknown_name or not (time_match or hits):
            continue
        day_match = mention.has_day and _day_matches(mention, appointment.start, now, zone)
        score = sum(1 + 2 / frequency[word] for word in hits)
        score += 2.0 if time_match else (-1.0 if mention.has_time else 0.0)
        score += 2.0 if day_match else (-1.0 if mention.has_day else 0.0)
        matches.append(Match(appointment, score, hits, time_match, day_match))
    matches.sort(key=lambda match: (-match.score, abs(match.appointment.start - now)))
    return matches


def find_appointment(
    mention: Mention | None, appointments: Iterable[AppointmentState], now: datetime
) -> AppointmentState | None:
    """The appointment the mention most likely means, or None."""
    if mention is None:
        return None
    matches = score_appointments(mention, tuple(appointments), now)
    return matches[0].appointment if matches else None
