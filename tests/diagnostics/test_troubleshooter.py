"""`Troubleshooter.answer`: the whole path from a question to an Answer, over the real emulators."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from calsync.diagnostics.answer import HEALTHY, Answer
from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.checks import ALL_CHECKS
from calsync.diagnostics.findings import Finding, Severity
from calsync.diagnostics.troubleshooter import Troubleshooter, UnknownUser
from calsync.knowledge.loader import KnowledgeBase, load_articles
from calsync.knowledge.matcher import Matcher
from calsync.syncbackend.models import AuditEntry, CalendarConnection, User
from tests.harness import Sandbox

DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
NOT_SHOWING = "why isn't my appointment showing"


@pytest.fixture(scope="module")
def knowledge() -> KnowledgeBase:
    return load_articles()


@pytest.fixture(scope="module")
def matcher(knowledge: KnowledgeBase) -> Matcher:
    return Matcher.build(knowledge)


def troubleshooter(
    sandbox: Sandbox,
    knowledge: KnowledgeBase,
    matcher: Matcher,
    checks: Sequence[Check] = ALL_CHECKS,
    budget: float = 6.0,
) -> Troubleshooter:
    return Troubleshooter(
        sessions=sandbox.sessions,
        providers=sandbox.providers,
        cipher=sandbox.cipher,
        knowledge=knowledge,
        matcher=matcher,
        checks=checks,
        clock=sandbox.clock,
        reconnect_url=lambda email, provider: f"https://calsync.test/connect/{provider}?for={email}",
        budget=budget,
    )


# Each demo rep, asked the way reps write (vague, a story, typos, vendor words, frustration): the one
# cause first, its buttons, the first article and its steps.
# (rep, question, the first cause, reconnect buttons, sync now, first article and its steps)
DEMO_ANSWERS = [
    ("ana", "why isnt my apointment showing in my calender??", None, [], False, ("not-showing", None)),
    ("ben", "o365 not showing the meetings from salespartner??", None, [], False, ("not-showing", None)),
    (
        "carla",
        "it keeps asking me to authorise google again",
        "connection.revoked",
        ["google"],
        False,
        ("not-connected", ["reconnect"]),
    ),
    (
        "carla",
        "my calendar is broken",
        "connection.revoked",
        ["google"],
        False,
        ("not-connected", ["reconnect"]),
    ),
    (
        "dev",
        "outlook says NOT CONNECTED again ugh",
        "connection.expired",
        ["microsoft"],
        False,
        ("not-connected", ["reconnect"]),
    ),
    (
        "erin",
        "sync stopped for our whole team this morning, did IT block SalesPartner?",
        "connection.consent_removed",
        ["microsoft"],
        False,
        ("not-connected", ["reconnect"]),
    ),
    (
        "farid",
        "my manager can't see my demos on my work calendar",
        "calendar.not_primary",
        [],
        False,
        ("not-showing", ["right-calendar"]),
    ),
    (
        "gina",
        "nothing has synced since this morning",
        "calendar.not_found",
        ["google"],
        False,
        ("not-showing", ["right-calendar"]),
    ),
    ("hugo", "where is my meeting", "calendar.read_only", [], False, ("not-showing", ["right-calendar"])),
    (
        "iris",
        "i think my demos are going to my gmail not my work cal",
        "calendar.personal_account",
        [],
        False,
        ("not-showing", ["right-calendar"]),
    ),
    ("jack", "sync is stuck", "sync.last_run_failed", [], True, None),
    (
        "kate",
        "just booked a demo with pied piper, where is it?",
        "sync.pending",
        [],
        True,
        ("not-showing", ["give-it-a-moment"]),
    ),
    (
        "leo",
        "every meeting shows up 2x since i added outlook",
        "duplicates.old_provider_still_active",
        [],
        False,
        ("duplicates", ["multiple-calendars"]),
    ),
    (
        "maya",
        "switched to outlook last week, why are my old meetings still in google??",
        "provider_switch.switched",
        [],
        False,
        ("switch-provider", ["important"]),
    ),
    (
        "nora",
        "what happened to my renewal call with massive dynamic?",
        "sync.appointment_cancelled",
        [],
        False,
        ("changes-not-syncing", ["what-doesnt-sync"]),
    ),
    (
        "omar",
        "moved my demo in outlook but SP still shows the old time",
        "changes.pending",
        [],
        True,
        ("changes-not-syncing", ["sync-timing"]),
    ),
    ("pia", "calendar thing not working again :(", "provider.rate_limited", [], False, None),
    ("quinn", "where did my appointments go??", "provider.unavailable", [], False, None),
]


def sentences(text: str) -> list[str]:
    import re

    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.strip()) > 12]


def assert_coherent(answer: Answer) -> None:
    """One cause leads, each fix once, nothing said twice, no "contact support" beside a rep fix."""
    from calsync.render.blocks import answer_message
    from tests.render.test_blocks import all_text, buttons

    message = answer_message(answer)
    text = all_text(message)
    said = sentences(text)
    assert len(said) == len(set(said)), [s for s in said if said.count(s) > 1]
    kinds = [b["action_id"] for b in buttons(message.blocks)]
    if answer.has_rep_fix:
        assert "nothing for you to fix" not in text and "talk_to_support" not in kinds
    reconnect = any(c.fix.kind == "reconnect" for c in answer.shown_causes)
    assert ("reconnect" in kinds) == reconnect
    assert not (reconnect and "sync_now" in kinds), "a sync cannot get through before a reconnect"
    if answer.shown_causes:
        assert answer.headline == answer.shown_causes[0].summary
    assert "❌" not in "".join(t for t in text.split("\n") if t.startswith("*") and "—" in t)


@pytest.mark.parametrize(
    ("rep", "question", "cause", "reconnect", "sync_now", "first_article"),
    DEMO_ANSWERS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(DEMO_ANSWERS)],
)
async def test_each_demo_rep_hears_their_own_cause_first_in_their_own_words(
    sandbox: Sandbox,
    knowledge: KnowledgeBase,
    matcher: Matcher,
    rep: str,
    question: str,
    cause: str | None,
    reconnect: list[str],
    sync_now: bool,
    first_article: tuple[str, list[str] | None] | None,
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer(f"{rep}@northwind.example", question)

    assert answer.kind == "answer", "diagnosed, never declined"
    shown = answer.shown_causes
    if cause is None:
        assert not [c for c in shown if c.severity.rank >= Severity.WARNING.rank]
        assert answer.headline == HEALTHY
    else:
        assert shown[0].code == cause, [c.code for c in shown]
        assert len(shown) == 1, [c.code for c in shown]
    assert [a.provider for a in answer.actions if a.kind == "reconnect"] == reconnect
    assert any(a.kind == "sync_now" for a in answer.actions) == sync_now
    if first_article is None:
        assert answer.articles == () or answer.articles[0].cause is None
    else:
        article, steps = first_article
        assert answer.articles[0].article.id == article
        if steps is not None:
            assert [m.step.key for m in answer.articles[0].steps] == steps
    assert_coherent(answer)
    # A flaky provider is never a disconnection.
    if rep in ("pia", "quinn"):
        assert not {f.code for f in answer.findings} & {"connection.revoked", "connection.expired"}


async def test_a_revoked_grant_folds_its_consequences_into_one_cause(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    """Carla's late push, failed run, overdue appointment and the checks that could not look are
    one cause; the JSON still has every finding and says which cause stands for them."""
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer(
        "carla@northwind.example", "why isn't my appointment showing"
    )
    (cause,) = answer.shown_causes
    assert cause.code == "connection.revoked"
    assert set(cause.findings) >= {
        "connection.revoked",
        "sync.push_late",
        "sync.last_run_failed",
        "sync.overdue",
        "calendar.skipped",
        "changes.skipped",
    }
    assert "‘Tasting demo for Wonka’ is waiting for this." in answer.headline
    data = answer.to_json()
    assert {f["code"] for f in data["findings"]} >= set(cause.findings)
    assert data["headline"] == answer.headline
    assert data["causes"][0]["code"] == "connection.revoked"
    assert data["causes"][0]["fix"]["kind"] == "reconnect"
    assert data["articles"][0] == "not-connected"


async def test_a_deleted_calendar_is_never_a_connectivity_problem(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer("gina@northwind.example", NOT_SHOWING)
    assert answer.headline.startswith(
        "The calendar 'Q3 Pipeline' that SalesPartner writes to no longer exists"
    )
    assert not [f for f in answer.findings if f.code.startswith("provider.")]
    assert "reach Google" not in " ".join(c.summary for c in answer.shown_causes)


async def test_steps_are_marked_by_what_they_are_for_this_rep(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)
    service = troubleshooter(sandbox, knowledge, matcher)
    hugo = await service.answer("hugo@northwind.example", NOT_SHOWING)
    assert [(m.step.key, m.mark) for m in hugo.articles[0].steps] == [("right-calendar", "do")]
    ana = await service.answer("ana@northwind.example", NOT_SHOWING)
    assert [(m.step.key, m.mark, m.note) for m in ana.articles[0].steps] == [
        ("check-connection", "checked", "your calendar is connected"),
        ("right-calendar", "checked", "the right calendar is selected"),
        ("give-it-a-moment", "checked", "syncs are on time"),
    ]


# (rep, question, the leading cause, words of the headline) — an appointment the question names
NAMED = [
    (
        "ana",
        "where is my 2pm with acme tomorrow?",
        "sync.appointment_found",
        "'Discovery call with Acme' is on your calendar 'Ana Alvarez' (Google Calendar)",
    ),
    (
        "ana",
        "where is my 2pm with Dunmore tomorrow?",
        "sync.appointment_not_identified",
        "at 2:00 PM tomorrow you have 'Discovery call with Acme'",
    ),
    (
        "carla",
        "wheres the wonka tasting demo??",
        "connection.revoked",
        "\u2018Tasting demo for Wonka\u2019 is waiting for this.",
    ),
    (
        "nora",
        "what happened to my renewal call with massive dynamic?",
        "sync.appointment_cancelled",
        "because its event was deleted in your calendar",
    ),
]


@pytest.mark.parametrize(("rep", "question", "cause", "words"), NAMED)
async def test_an_appointment_the_question_names_is_traced(
    sandbox: Sandbox,
    knowledge: KnowledgeBase,
    matcher: Matcher,
    rep: str,
    question: str,
    cause: str,
    words: str,
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer(f"{rep}@northwind.example", question)
    assert answer.shown_causes[0].code == cause and words in answer.headline
    assert_coherent(answer)


@pytest.mark.parametrize(
    "question", ["where is my apointmnet in outlok calender", "calender not showing my appointmnets", "why"]
)
async def test_typos_and_plain_questions_are_not_appointment_lookups(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher, question: str
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer("ana@northwind.example", question)
    assert not [f for f in answer.findings if f.code.startswith("sync.appointment_")]


# (rep, question, what a declined answer adds) — clearly about something else
DECLINED = [
    ("ana", "how do I reset my SalesPartner password?", None),
    ("ana", "can u export my pipeline to csv", None),
    ("carla", "how do I reset my SalesPartner password?", "connection.revoked"),
]


@pytest.mark.parametrize(("rep", "question", "line"), DECLINED)
async def test_off_topic_is_declined_but_a_broken_calendar_gets_one_line(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher, rep: str, question: str, line: str | None
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer(f"{rep}@northwind.example", question)
    assert answer.off_topic and answer.headline.startswith("That's not something I can help with")
    assert answer.to_json()["article"] is None and answer.articles == ()
    assert [c.code for c in answer.shown_causes] == ([line] if line else [])
    assert [a.kind for a in answer.actions] == (
        ["reconnect", "contact_support"] if line else ["contact_support"]
    )


# (message, the short reply starts with) — no diagnosis, no provider call
SMALL_TALK = [
    ("hi", "Hi, Ana!"),
    ("hey bot", "Hi, Ana!"),
    ("thx that worked!!", "Glad I could help"),
    ("", "Tell me what's going on"),
    (":wave: :tada:", "Tell me what's going on"),
]


@pytest.mark.parametrize(("message", "reply"), SMALL_TALK)
async def test_small_talk_gets_a_short_reply_and_no_diagnosis(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher, message: str, reply: str
) -> None:
    sandbox.load_file(DEMO)
    before = len(sandbox.world.requests())
    answer = await troubleshooter(sandbox, knowledge, matcher).answer("ana@northwind.example", message)
    assert answer.kind == "smalltalk" and answer.headline.startswith(reply)
    assert answer.findings == () and answer.actions == ()
    assert len(sandbox.world.requests()) == before  # no provider was called


STACK_TRACE = """Traceback (most recent call last):
  File "sync.py", line 42, in push
    raise CalendarError("invalid_grant: Token has been expired or revoked.")
CalendarError: invalid_grant: Token has been expired or revoked."""
# (what the rep sent) — a clear reply about themselves, never a crash, never anyone else
BAD_INPUT = [
    pytest.param("😡😡😡", id="only-emoji"),
    pytest.param("calendar " * 5000, id="40k-paste"),
    pytest.param('```\nERROR 401 Unauthorized\n{"error": "invalid_grant"}\n```', id="code-block"),
    pytest.param(STACK_TRACE, id="stack-trace"),
    pytest.param("mi calendario no muestra las citas de salespartner", id="spanish"),
    pytest.param("<@U0DEMOBEN> why is ben's calendar broken?", id="names-someone-else"),
]


@pytest.mark.parametrize("message", BAD_INPUT)
async def test_bad_input_gets_a_clear_reply_about_the_rep_only(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher, message: str
) -> None:
    sandbox.load_file(DEMO)
    answer = await troubleshooter(sandbox, knowledge, matcher).answer("carla@northwind.example", message)
    assert answer.user == "carla@northwind.example"
    assert all("ben@" not in f.summary for f in answer.findings)
    assert answer.headline and len(answer.headline) < 400
    if answer.kind == "answer":
        assert answer.shown_causes[0].code == "connection.revoked", "Carla's own cause, whatever she sent"
        assert_coherent(answer)


async def test_unknown_user_is_refused(sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher) -> None:
    sandbox.load_file(DEMO)
    with pytest.raises(UnknownUser):
        await troubleshooter(sandbox, knowledge, matcher).diagnose("nobody@northwind.example")


async def test_rotated_refresh_tokens_are_stored_and_the_diagnosis_audited(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)

    def stored() -> bytes | None:
        with sandbox.sessions() as session:
            connection = session.scalars(
                select(CalendarConnection).where(CalendarConnection.account_email == "ben@northwind.example")
            ).one()
            return connection.refresh_token_encrypted

    before = stored()
    service = troubleshooter(sandbox, knowledge, matcher)
    first = await service.diagnose("ben@northwind.example", actor="U0AGENT")
    assert first.findings[0].code == "connection.ok"
    assert stored() != before  # Microsoft rotated the refresh token and we kept the new one
    second = await service.diagnose("ben@northwind.example", actor="U0AGENT")
    assert second.findings[0].code == "connection.ok"  # the stored token is the one that works now
    with sandbox.sessions() as session:
        entries = session.scalars(
            select(AuditEntry)
            .join(User, User.id == AuditEntry.subject_user_id)
            .where(User.email == "ben@northwind.example")
        ).all()
    assert [(entry.actor, entry.action, entry.result) for entry in entries] == [
        ("U0AGENT", "diagnose", "ok")
    ] * 2
    assert entries[0].detail["codes"][0] == "connection.ok"
    assert [first.diagnosis_id, second.diagnosis_id] == [str(entry.id) for entry in entries]


async def _crashes(context: CheckContext) -> list[Finding]:
    raise RuntimeError("boom")


async def _never_finishes(context: CheckContext) -> list[Finding]:
    await asyncio.Event().wait()
    return []


async def test_a_crashing_or_stuck_check_leaves_the_others_standing(
    sandbox: Sandbox, knowledge: KnowledgeBase, matcher: Matcher
) -> None:
    sandbox.load_file(DEMO)
    broken = Check(name="broken", title="Broken", run_rep=_crashes)
    stuck = Check(name="stuck", title="Stuck", run_rep=_never_finishes)
    service = troubleshooter(sandbox, knowledge, matcher, checks=(*ALL_CHECKS, broken, stuck), budget=0.5)
    answer = await service.diagnose("carla@northwind.example")
    codes = [finding.code for finding in answer.findings]
    assert codes[0] == "connection.revoked"
    assert "internal.check_failed" in codes and "stuck.timeout" in codes
    internal = next(f for f in answer.findings if f.code == "internal.check_failed")
    assert internal.severity is Severity.UNKNOWN and internal.evidence == {
        "check": "broken",
        "error": "RuntimeError",
    }
