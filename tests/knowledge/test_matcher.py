"""The question matcher: fresh questions (none of them in training.yaml) -> the right article or None."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calsync.knowledge.loader import ARTICLE_IDS, KnowledgeBase, load_articles
from calsync.knowledge.matcher import (
    DEFAULT_TRAINING_PATH,
    GENERAL,
    NUMPY_BATCH,
    OFF_TOPIC,
    Match,
    Matcher,
    TrainingError,
    load_training,
    normalize,
)


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_articles()


@pytest.fixture(scope="session")
def matcher(kb: KnowledgeBase) -> Matcher:
    return Matcher.build(kb)


def _training_questions() -> set[str]:
    data = load_training(DEFAULT_TRAINING_PATH)
    return {" ".join(q.lower().split()) for questions in data.values() for q in questions}


ON_TOPIC = [
    # not-showing
    pytest.param(
        "my booking with Umbrella Corp for 1pm never made it into google calendar",
        "not-showing",
        id="ns-plain",
    ),
    pytest.param("appoitnments from salespartner r missing in my calender", "not-showing", id="ns-typos"),
    pytest.param("appt not in gcal??", "not-showing", id="ns-shorthand"),
    pytest.param("customer booked through chat, nothing on my outlook", "not-showing", id="ns-outlook"),
    pytest.param(
        "<@U04XYZ> the demo i booked for thurs isn't on my cal :confused:", "not-showing", id="ns-slack"
    ),
    pytest.param(
        "salespartner puts my bookings in my personal calendar instead of work",
        "not-showing",
        id="ns-wrong-cal",
    ),
    # duplicates
    pytest.param("why do my appointments appear two times in google calendar", "duplicates", id="dup-plain"),
    pytest.param("dupes all over my o365 calendar", "duplicates", id="dup-shorthand"),
    pytest.param("i see my 10am with Acme twice, can i delete one", "duplicates", id="dup-delete-one"),
    pytest.param("duplicte apointments in my calender", "duplicates", id="dup-typos"),
    pytest.param("every booking got copied, now there's double of everything", "duplicates", id="dup-double"),
    # not-connected
    pytest.param("calendar connection says not connected, how do i fix it", "not-connected", id="nc-plain"),
    pytest.param("gcal disconected again", "not-connected", id="nc-typo-shorthand"),
    pytest.param(
        "updated my outlook password and now the calendar is disconnected", "not-connected", id="nc-password"
    ),
    pytest.param("my o365 calendar authorization has expired", "not-connected", id="nc-expired"),
    pytest.param("how do i reconnect my google calendar to salespartner", "not-connected", id="nc-reconnect"),
    # popup-blocked
    pytest.param(
        "the login window doesn't open when i click connect calendar", "popup-blocked", id="pb-plain"
    ),
    pytest.param("chrome blocks the pop up for google sign in", "popup-blocked", id="pb-chrome"),
    pytest.param("clicking Authorize does absolutely nothing", "popup-blocked", id="pb-authorize"),
    pytest.param("popup blokced when i try to conect outlook", "popup-blocked", id="pb-typos"),
    pytest.param("safari won't show the microsoft sign in window", "popup-blocked", id="pb-safari"),
    # changes-not-syncing
    pytest.param(
        "i moved my 2pm with Acme to 4pm in gcal and salespartner still says 2",
        "changes-not-syncing",
        id="cs-moved",
    ),
    pytest.param(
        "edited the appointment title in outlook, not updated in salespartner",
        "changes-not-syncing",
        id="cs-title",
    ),
    pytest.param(
        "if i delete an event in google calendar does the appointment get cancelled",
        "changes-not-syncing",
        id="cs-delete",
    ),
    pytest.param(
        "events i add in my calendar dont appear in salespartner", "changes-not-syncing", id="cs-added"
    ),
    pytest.param(
        "resceduled a meeting in my calender but SP didnt update", "changes-not-syncing", id="cs-typos"
    ),
    # switch-provider
    pytest.param("how do i go from google calendar to outlook", "switch-provider", id="sp-plain"),
    pytest.param("we're moving to o365, how do i switch my calendar", "switch-provider", id="sp-shorthand"),
    pytest.param(
        "will my old appointments move to outlook if i switch from gcal", "switch-provider", id="sp-old-appts"
    ),
    pytest.param("i want to swich my calender to microsoft", "switch-provider", id="sp-typos"),
    # Indirect: no calendar or sync words, a client's name, "where is it" / "gone" / "cancelled itself".
    pytest.param("where has my walkthrough with sterling cooper gone?", "not-showing", id="ns-indirect-gone"),
    pytest.param("my 4:30 with Initrode disappeared", "not-showing", id="ns-indirect-time-name"),
    pytest.param(
        "customer told me she grabbed a slot on wednesday, i've got nothing",
        "not-showing",
        id="ns-indirect-client",
        # Known weakness: no calendar word and unseen verbs ("grabbed", "got nothing") -> null, not sure.
        marks=pytest.mark.xfail(strict=True, reason="indirect, no calendar words: the matcher says not sure"),
    ),
    pytest.param("my 9:15 with Gringotts is there two times", "duplicates", id="dup-indirect-name"),
    pytest.param(
        "the walkthrough with the Gekko account says cancelled, nobody cancelled it",
        "changes-not-syncing",
        id="cs-indirect-cancelled",
    ),
    pytest.param("my demo got cancelled all by itself??", "changes-not-syncing", id="cs-cancelled-itself"),
    pytest.param(
        "we're going all in on microsoft next quarter, what about salespartner",
        "switch-provider",
        id="sp-indirect",
    ),
]

OFF_TOPIC_QUESTIONS = [
    pytest.param("hi", id="hi"),
    pytest.param("hey hey", id="hey"),
    pytest.param("thanks!", id="thanks"),
    pytest.param("thank you, that fixed it 🙌", id="thanks-fixed"),
    pytest.param("good evening", id="good-evening"),
    pytest.param("how can I reserve a meeting room for friday", id="meeting-room"),
    pytest.param("i want to change my password", id="change-password"),
    pytest.param("reset my SalesPartner password please", id="reset-sp-password"),
    pytest.param("salespartner app is super slow this morning", id="app-slow"),
    pytest.param("where can i find the report of my appointments", id="appointments-report"),
    pytest.param("could you book a product demo for me and my boss", id="book-demo"),
    pytest.param("how do i pay my salespartner bill", id="billing"),
    pytest.param("my invoice has the wrong address", id="invoice"),
    pytest.param("the salespartner android app crashes on startup", id="mobile-app"),
    pytest.param("will it snow this weekend", id="weather"),
    pytest.param("how do i move a deal to the next stage", id="crm-deal"),
    pytest.param("how do i export my leads", id="crm-export"),
    pytest.param("what are you able to do", id="capabilities"),
    # Hard ones: they share words with calendar questions.
    pytest.param("can you grab the meeting room on floor 2 at noon", id="meeting-room-noon"),
    pytest.param("please book a discovery call with Initrode for me", id="bot-book-call"),
    pytest.param("export a report of every appointment my team booked", id="appointments-export"),
    pytest.param("SSO keeps bouncing me back to the login page", id="sso-login"),
    pytest.param("the salespartner ios app shows all my contacts twice", id="mobile-contacts-twice"),
    pytest.param("move this deal to the proposal stage please", id="crm-pipeline"),
    pytest.param("invoice 4411 lists the wrong number of seats", id="invoice-seats"),
]

# One or two words that name a topic, not a problem: "not sure" (null), never a confident article.
VAGUE_QUESTIONS = [
    pytest.param("gcal", id="gcal"),
    pytest.param("Outlook!", id="outlook-bang"),
    pytest.param("meetings", id="meetings"),
    pytest.param("booking", id="booking"),
    pytest.param("exchange", id="exchange"),
    pytest.param("calendar stuff", id="calendar-stuff"),
    pytest.param("calendar sync", id="calendar-sync"),
    pytest.param("google calendar help", id="google-help"),
    pytest.param("my calendar is not working", id="not-working"),
]


@pytest.mark.parametrize(("question", "expected"), ON_TOPIC)
def test_on_topic_questions_find_their_article(matcher: Matcher, question: str, expected: str) -> None:
    match = matcher.match(question)
    assert match.article == expected, match
    assert 0.0 < match.confidence <= 1.0
    assert match.alternatives[0] == (expected, pytest.approx(match.confidence))


@pytest.mark.parametrize("question", OFF_TOPIC_QUESTIONS)
def test_off_topic_questions_get_no_article(matcher: Matcher, question: str) -> None:
    match = matcher.match(question)
    assert match.article is None, match
    assert 0.0 <= match.confidence <= 1.0


@pytest.mark.parametrize("question", VAGUE_QUESTIONS)
def test_a_topic_word_alone_gets_no_article(matcher: Matcher, question: str) -> None:
    match = matcher.match(question)
    assert match.article is None, match
    assert len(match.alternatives) == 2  # the bot may still offer "did you mean ...?"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        pytest.param("dupes!!", "duplicates", id="dupes"),
        pytest.param("calendar disconnected!!", "not-connected", id="disconnected"),
        pytest.param("popups blocked", "popup-blocked", id="popups"),
    ],
)
def test_a_short_message_naming_a_problem_is_still_answered(
    matcher: Matcher, question: str, expected: str
) -> None:
    assert matcher.match(question).article == expected


def test_the_test_questions_are_not_training_data() -> None:
    training = _training_questions()
    questions = [p.values[0] for p in (*ON_TOPIC, *OFF_TOPIC_QUESTIONS, *VAGUE_QUESTIONS)]
    copied = [q for q in questions if " ".join(str(q).lower().split()) in training]
    # A few one-word greetings are unavoidable; everything longer must be fresh.
    assert [q for q in copied if len(str(q).split()) > 1] == []


def test_the_test_questions_are_not_in_the_dev_set() -> None:
    dev_path = Path(__file__).resolve().parents[2] / "benchmarks" / "matcher_dev.yaml"
    dev = {" ".join(q.lower().split()) for questions in load_training(dev_path).values() for q in questions}
    questions = [p.values[0] for p in (*ON_TOPIC, *OFF_TOPIC_QUESTIONS, *VAGUE_QUESTIONS)]
    assert [q for q in questions if " ".join(str(q).lower().split()) in dev] == []


def _held_out(name: str) -> list[str]:
    """The questions of a held-out set; items may be `{q: ..., also: [...]}`."""
    import yaml

    path = Path(__file__).resolve().parents[2] / "benchmarks" / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [item if isinstance(item, str) else item["q"] for items in data.values() for item in items]


@pytest.mark.parametrize("name", ["matcher_dev.yaml", "matcher_real_dev.yaml", "matcher_holdout.yaml"])
def test_the_held_out_sets_are_not_training_data(name: str) -> None:
    training = _training_questions()
    # One-word messages ("help") may appear in both; nothing longer may leak into training.
    leaked = [q for q in _held_out(name) if " ".join(q.lower().split()) in training and len(q.split()) > 1]
    assert leaked == []


@pytest.mark.parametrize(
    "question",
    [
        pytest.param("", id="empty"),
        pytest.param("   \t  ", id="whitespace"),
        pytest.param("\n", id="newline"),
    ],
)
def test_blank_questions_are_off_topic_with_zero_confidence(matcher: Matcher, question: str) -> None:
    assert matcher.match(question) == Match(None, 0.0, ())


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        pytest.param("カレンダーに予定が表示されません", None, id="japanese"),
        pytest.param("😡😡😡", None, id="only-emoji"),
        pytest.param("???", None, id="punctuation"),
        pytest.param(
            "mon rendez-vous n'apparaît pas dans mon calendrier google 📅", None, id="french-unsure"
        ),
        pytest.param("my appointmént isn’t showing in my cälendar 📅", "not-showing", id="accents-emoji"),
    ],
)
def test_non_ascii_input(matcher: Matcher, question: str, expected: str | None) -> None:
    match = matcher.match(question)
    if expected is None:
        assert match.article is None or match.confidence < 0.6, match
    else:
        assert match.article == expected, match


def test_very_long_input_is_truncated_not_refused(matcher: Matcher) -> None:
    question = "every appointment shows up twice in my calendar " + "blah " * 100_000
    match = matcher.match(question)
    assert match.article == "duplicates"
    assert matcher.match("x" * 1_000_000).article is None


@pytest.mark.parametrize(
    ("alternatives", "ambiguous"),
    [
        pytest.param((("not-showing", 0.45), ("changes-not-syncing", 0.40)), True, id="close"),
        pytest.param((("not-showing", 0.80), ("changes-not-syncing", 0.10)), False, id="clear-winner"),
        pytest.param((("not-showing", 0.15), ("duplicates", 0.14)), False, id="both-below-floor"),
        pytest.param((("not-showing", 0.5),), False, id="one-alternative"),
        pytest.param((), False, id="none"),
    ],
)
def test_ambiguity_rule(alternatives: tuple[tuple[str, float], ...], ambiguous: bool) -> None:
    assert Match("not-showing", 0.5, alternatives).ambiguous is ambiguous


def test_a_question_between_two_articles_is_reported_as_ambiguous(matcher: Matcher) -> None:
    # Half "appointment missing from the calendar", half "my calendar edits do not reach SalesPartner".
    match = matcher.match("after i moved it in my calendar the booking doesnt show anymore")
    assert match.ambiguous, match
    assert {a for a, _ in match.alternatives} == {"not-showing", "changes-not-syncing"}


def test_alternatives_are_the_top_two_articles_best_first(matcher: Matcher) -> None:
    for match in matcher.match_many(["dupes in gcal", "hello", "switch to outlook"]):
        assert len(match.alternatives) == 2
        (first_id, first), (second_id, second) = match.alternatives
        assert first_id != second_id
        assert {first_id, second_id} <= set(ARTICLE_IDS)
        assert 1.0 >= first >= second >= 0.0


def test_match_many_agrees_with_match(matcher: Matcher) -> None:
    questions = ["gcal dupes", "", "hi", "calendar disconnected", "popup blocked in chrome"]
    assert matcher.match_many(questions) == [matcher.match(q) for q in questions]
    assert matcher.match_many([]) == []
    assert matcher.match_many(iter(questions)) == matcher.match_many(questions)


def test_probabilities_cover_every_class(matcher: Matcher) -> None:
    probabilities = matcher.probabilities(["dupes in gcal", "hi"])
    assert matcher.classes == (*ARTICLE_IDS, GENERAL, OFF_TOPIC)
    assert probabilities.shape == (2, 8)
    assert probabilities.sum(axis=1) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        pytest.param("<@U123ABC> my GCAL appts", "my google calendar appointments", id="mention-shorthand"),
        pytest.param("see <https://x.example/a|this page> :tada:", "see this page", id="link-emoji"),
        pytest.param("it isn't in o365", "it is not in outlook", id="contraction-o365"),
        pytest.param("Office 365 pop-up", "outlook popup", id="phrases"),
        pytest.param("dupes in my cal", "duplicates in my calendar", id="dupes-cal"),
        pytest.param("*bold* _it_ `code`", "bold it code", id="formatting"),
        pytest.param("my 2pm with Acme on Friday", "my <time> with <name> on <day>", id="time-name-day"),
        pytest.param("moved it from 9 to 10:30 a.m.", "moved it from <time> to <time>", id="bare-hours"),
        pytest.param(
            "Lead from Pied Piper says it's not in Google",
            "lead from <name> says it not in google",
            id="titled-name",
        ),
        pytest.param("call with the client", "call with the client", id="with-common-word"),
        pytest.param("It Says Not Connected", "it says not connected", id="title-case-is-not-a-name"),
    ],
)
def test_normalize(raw: str, normalized: str) -> None:
    assert normalize(raw) == normalized


def test_custom_training_file(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = tmp_path / "training.yaml"
    path.write_text("duplicates: [double trouble everywhere]\noff_topic: [lunch menu please, hello]\n")
    matcher = Matcher.build(kb, path)
    assert matcher.match("double trouble").article == "duplicates"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("- just a list\n", "must map", id="not-a-mapping"),
        pytest.param("duplicates: [ok]\noff_topic: [yes, no]\n", "non-empty questions", id="yaml-booleans"),
        pytest.param("no-such-article: [hm]\noff_topic: [hi]\n", "unknown articles", id="unknown-article"),
        pytest.param("duplicates: [double]\n", "off_topic", id="no-off-topic"),
        pytest.param("duplicates: [unclosed\n", "cannot read", id="bad-yaml"),
    ],
)
def test_bad_training_files_are_refused(
    kb: KnowledgeBase, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "training.yaml"
    path.write_text(content)
    with pytest.raises(TrainingError, match=message):
        Matcher.build(kb, path)


def test_the_trained_model_is_cached_and_retrained_when_what_it_learns_from_changes(tmp_path: Path) -> None:
    kb = load_articles()
    cache = tmp_path / "cache"
    trained = Matcher.build(kb, cache=cache)
    (stored,) = cache.iterdir()
    loaded = Matcher.build(kb, cache=cache)
    questions = ["my calendar is broken", "every appt shows up twice", "reset my password", "AADSTS700082"]
    assert np.allclose(trained.probabilities(questions), loaded.probabilities(questions))
    assert trained.classes == loaded.classes
    # Another training file (an admin's edit): another key, a fresh model; a broken file is ignored.
    edited = tmp_path / "training.yaml"
    edited.write_text(DEFAULT_TRAINING_PATH.read_text() + "  - one more vague complaint about sync\n")
    Matcher.build(kb, edited, cache=cache)
    assert len(list(cache.iterdir())) == 2
    stored.write_bytes(b"not a model")
    assert Matcher.build(kb, cache=cache).match("every appt shows up twice").article == "duplicates"


def test_a_big_batch_scored_with_numpy_matches_one_question_at_a_time(matcher: Matcher) -> None:
    questions = [q for qs in load_training(DEFAULT_TRAINING_PATH).values() for q in qs][::7]
    questions += ["", "   ", "zzzz qqqq", "my 2pm with Acme vanished"]
    assert len(questions) >= NUMPY_BATCH
    batched = matcher.match_many(questions)
    alone = [matcher.match(question) for question in questions]
    assert [m.article for m in batched] == [m.article for m in alone]
    assert [m.off_topic for m in batched] == [m.off_topic for m in alone]
    for together, single in zip(batched, alone, strict=True):
        assert together.confidence == pytest.approx(single.confidence, abs=1e-9)
        assert [a for a, _ in together.alternatives] == [a for a, _ in single.alternatives]
