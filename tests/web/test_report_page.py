"""The agent's full report speaks of the rep in the third person: an agent reads it, so no sentence
on it says "your calendar" or "you" to the rep (what the rep sees in Slack keeps its own words)."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import httpx
import pytest

from calsync.render.agent import about_rep
from tests.web.conftest import Pages

SECOND_PERSON = re.compile(r"\byou(r|rs|rself|'re|'ve|'ll|'d)?\b", re.IGNORECASE)


def visible_text(html: str) -> str:
    body = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.DOTALL)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


# (rep, the rep's first name, a phrase the report must say about them)
REPS = [
    ("carla@northwind.example", "Carla", "access to Carla's Google Calendar"),
    ("ana@northwind.example", "Ana", "Ana's Google Calendar (ana@northwind.example) is connected"),
    ("hugo@northwind.example", "Hugo", "They can only read"),
    ("gina@northwind.example", "Gina", "no longer shared with them"),
    ("iris@northwind.example", "Iris", "Iris's personal Gmail"),
    ("leo@northwind.example", "Leo", "Leo"),
]


@pytest.mark.parametrize(("rep", "name", "phrase"), REPS, ids=[r[1] for r in REPS])
def test_the_report_speaks_of_the_rep_in_the_third_person(
    pages: Pages, rep: str, name: str, phrase: str
) -> None:
    token = pages.signer.make("report", {"agent": "U0DEMOSAM", "rep": rep}, timedelta(minutes=15))
    response = httpx.get(f"{pages.url}/reports/{token}", timeout=60)
    assert response.status_code == 200, response.text
    text = visible_text(response.text)
    assert phrase in text
    assert not SECOND_PERSON.findall(text), [m.group(0) for m in SECOND_PERSON.finditer(text)][:5]
    assert "Traceback" not in text


# (written to the rep, as the report says it of Carla)
REWRITES = [
    ("Your calendar connection looks healthy.", "Carla's calendar connection looks healthy."),
    (
        "Select a calendar you can edit, such as your own.",
        "Select a calendar they can edit, such as Carla's own.",
    ),
    ("It is no longer shared with you.", "It is no longer shared with them."),
    ("You've only used Outlook.", "They've only used Outlook."),
    (
        "Your personal Gmail is connected, not your work account.",
        "Carla's personal Gmail is connected, not their work account.",
    ),
    ("Youth and layout stay.", "Youth and layout stay."),
]


@pytest.mark.parametrize(("to_rep", "about"), REWRITES)
def test_about_rep_turns_second_person_into_third(to_rep: str, about: str) -> None:
    assert about_rep(to_rep, "Carla") == about
