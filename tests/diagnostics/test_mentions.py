"""Reading which appointment a question names, and picking it among the rep's appointments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calsync.diagnostics.humanize import ago, clock_time, day_word, duration, from_now, within
from calsync.diagnostics.mentions import Mention, find_appointment, parse_mention
from calsync.diagnostics.state import AppointmentState

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "where is my 2pm with Acme tomorrow",
            Mention(words=("acme",), hour=14, minute=0, day_offset=1, pointed=("acme",)),
        ),
        (
            "What happened to the Massive Dynamic renewal call?",
            Mention(words=("massive", "dynamic", "renewal", "call"), pointed=("massive",)),
        ),
        ("I can't see tomorrow's Wonka demo", Mention(words=("wonka", "demo"), day_offset=1)),
        ("yesterday's QBRs", Mention(words=("qbr",), day_offset=-1)),
        ("the 2:30 pm on Friday", Mention(hour=14, minute=30, weekday=4)),
        ("my 9:30am", Mention(hour=9, minute=30)),
        ("my 12 pm call", Mention(words=("call",), hour=12, minute=0, pointed=("call",))),
        ("the 12am thing", Mention(hour=0, minute=0)),
        ("my 14:00", Mention(hour=14, minute=0)),
        ("the meeting at 2", Mention(hour=14, minute=0)),
        ("the one at 10 with Initech", Mention(words=("initech",), hour=10, minute=0, pointed=("initech",))),
        ("3 o'clock demo", Mention(words=("demo",), hour=15, minute=0)),
        ("the noon demo today", Mention(words=("demo",), hour=12, minute=0, day_offset=0, pointed=("demo",))),
        ("on monday with Globex", Mention(words=("globex",), weekday=0, pointed=("globex",))),
        ("where’s the Acme demo", Mention(words=("acme", "demo"), pointed=("acme",))),
        # Nothing that names an appointment: general questions.
        ("why isn't my appointment showing up?", None),
        ("every meeting shows up twice", None),
        ("my calendar says not connected", None),
        # Typos, dropped apostrophes and product shorthand name no appointment either.
        ("why isnt my apointment showing in my calender??", None),
        ("my o365 calandar says not conected", None),
        ("every appt shows up twice in gcal", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_mention(question: str | None, expected: Mention | None) -> None:
    assert parse_mention(question) == expected


@pytest.mark.parametrize(
    ("question", "specific"),
    [
        ("where is my 2pm", True),  # a time
        ("the Acme demo", True),  # "the ... X"
        ("call with Initech", True),  # "with X"
        ("tomorrow's demo", True),  # a day and a title word
        ("demo", False),  # a bare word
        ("today", False),  # a day alone: "today's meetings", not one appointment
    ],
)
def test_mention_is_specific(question: str, specific: bool) -> None:
    mention = parse_mention(question)
    assert mention is not None
    assert mention.specific is specific


def _appointment(
    id: str, title: str, start: datetime, status: str = "booked", tz: str = "UTC"
) -> AppointmentState:
    return AppointmentState(
        id=id,
        title=title,
        description="",
        start=start,
        end=start + timedelta(minutes=30),
        time_zone=tz,
        status=status,
        cancellation_reason=None,
        booked_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        links=(),
    )


TOMORROW_2PM = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
APPOINTMENTS = (
    _appointment("acme-today", "Discovery call with Acme", datetime(2026, 11, 24, 16, 0, tzinfo=UTC)),
    _appointment("acme-tomorrow", "Follow-up call with Acme", TOMORROW_2PM),
    _appointment("acme-next-week", "Contract call with Acme", datetime(2026, 12, 1, 14, 0, tzinfo=UTC)),
    _appointment("globex", "Demo for Globex", datetime(2026, 11, 26, 11, 0, tzinfo=UTC)),
    _appointment("wonka", "Tasting demo for Wonka", datetime(2026, 11, 25, 11, 0, tzinfo=UTC)),
    _appointment("wonka-old", "Tasting demo for Wonka", datetime(2026, 11, 20, 11, 0, tzinfo=UTC)),
    _appointment("massive", "Renewal call with Massive Dynamic", TOMORROW_2PM, status="cancelled"),
    _appointment("wayne", "QBR with Wayne", datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
    _appointment(
        "berlin", "Workshop with Initech", datetime(2026, 11, 27, 13, 0, tzinfo=UTC), tz="Europe/Berlin"
    ),
)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("where is my 2pm with Acme tomorrow", "acme-tomorrow"),
        ("my Acme call", "acme-today"),  # a tie on words: the nearest in time
        ("the acme call next week at 2pm", "acme-tomorrow"),  # time beats nothing; nearest of the 2pms
        ("my contract call with acme", "acme-next-week"),  # the rarer word decides
        ("I can't see tomorrow's Wonka demo", "wonka"),
        ("the wonka demo last friday", "wonka-old"),
        ("on thursday, the demo for Globex", "globex"),
        ("what happened to the massive dynamic renewal call", "massive"),  # cancelled ones too
        ("yesterday's QBR", "wayne"),
        ("my 2pm tomorrow", "acme-tomorrow"),  # the time alone (the cancelled 2pm ranks by title: none)
        ("the 2pm workshop", "berlin"),  # 13:00 UTC is 2 PM in Berlin, the appointment's own zone
        ("my 3pm with Hooli", None),  # neither title nor time matches
        ("the Hooli demo tomorrow", None),  # a name we have no appointment with: not any demo
        ("the demo with Hooli", None),
        ("the Hooli demo at 11", None),  # ... nor another client's appointment at that time
        ("tomorrow", None),  # a day alone never picks one
        ("why isn't my appointment showing", None),
    ],
)
def test_find_appointment(question: str, expected: str | None) -> None:
    found = find_appointment(parse_mention(question), APPOINTMENTS, NOW)
    assert (found.id if found else None) == expected


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=30), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(minutes=4, seconds=50), "4 minutes ago"),
        (timedelta(minutes=59, seconds=59), "59 minutes ago"),
        (timedelta(hours=2, minutes=30), "2 hours ago"),
        (timedelta(hours=6), "6 hours ago"),
        (timedelta(days=3), "3 days ago"),
        (timedelta(minutes=-11), "in 11 minutes"),
    ],
)
def test_ago(delta: timedelta, text: str) -> None:
    assert ago(delta) == text


@pytest.mark.parametrize(
    ("delta", "within_text", "from_now_text"),
    [
        (timedelta(minutes=11), "within the next 11 minutes", "in 11 minutes"),
        (timedelta(minutes=10, seconds=10), "within the next 11 minutes", "in 11 minutes"),
        (timedelta(seconds=40), "within a minute", "in a moment"),
        (timedelta(minutes=90), "within the next 2 hours", "in 2 hours"),
        (timedelta(0), "any moment now", "any moment now"),
    ],
)
def test_within_and_from_now(delta: timedelta, within_text: str, from_now_text: str) -> None:
    assert within(delta) == within_text
    assert from_now(delta) == from_now_text


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 25, 14, 0, tzinfo=UTC), "2:00 PM tomorrow"),
        (datetime(2026, 11, 24, 9, 5, tzinfo=UTC), "9:05 AM today"),
        (datetime(2026, 11, 23, 0, 30, tzinfo=UTC), "12:30 AM yesterday"),
        (datetime(2026, 11, 27, 12, 0, tzinfo=UTC), "12:00 PM Friday"),
        (datetime(2026, 11, 20, 11, 0, tzinfo=UTC), "11:00 AM last Friday"),
        (datetime(2026, 12, 3, 16, 30, tzinfo=UTC), "4:30 PM Dec 3"),
    ],
)
def test_clock_time(moment: datetime, text: str) -> None:
    assert clock_time(moment, NOW) == text
    assert clock_time(moment) == text.split(" ", 2)[0] + " " + text.split(" ", 2)[1]


def test_duration_units() -> None:
    assert duration(timedelta(hours=47)) == "47 hours"
    assert duration(timedelta(hours=49)) == "2 days"
    assert day_word(NOW, NOW) == "today"
