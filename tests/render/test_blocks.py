"""Block Kit rendering of an `Answer` and the App Home view: content, actions, escaping, limits.

Answers are composed here from findings with the real composition (`diagnostics.answer.compose`:
causes, articles, actions) and the real articles, so these tests pin what a rep reads, not the
checks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from calsync.diagnostics.answer import HEALTHY as HEALTHY_HEADLINE
from calsync.diagnostics.answer import Answer, compose
from calsync.diagnostics.findings import Finding, Severity, by_severity
from calsync.knowledge.loader import KnowledgeBase, load_articles
from calsync.render.blocks import (
    ACTION_CHECK_AGAIN,
    ACTION_DETAILS,
    ACTION_DID_YOU_MEAN,
    ACTION_HELPED,
    ACTION_NOT_HELPED,
    ACTION_OPEN_REPORT,
    ACTION_PATTERNS,
    ACTION_RECONNECT,
    ACTION_SEND_RECONNECT_LINK,
    ACTION_SYNC_NOW,
    ACTION_TALK_TO_SUPPORT,
    MAX_BUTTON_VALUE,
    MAX_HOME_BLOCKS,
    MAX_MESSAGE_BLOCKS,
    MAX_TEXT,
    Message,
    answer_message,
    base_action_id,
    checking_message,
    details_message,
    error_message,
    escape_mrkdwn,
    help_message,
    home_view,
    markup_message,
    notice_message,
    reconnect_message,
    validate_blocks,
    validate_message,
)

KB: KnowledgeBase = load_articles()
NOW = datetime(2025, 3, 4, 14, 5, tzinfo=UTC)
REPORT = "https://calsync.test/reports/42?sig=abc&exp=1"
CHECKS = ("connection", "calendar", "sync", "duplicates", "changes", "provider_switch")


# -- building answers --------------------------------------------------------------------------------


def finding(
    code: str,
    severity: Severity,
    summary: str | None = None,
    *,
    hint: str = "",
    evidence: Mapping[str, Any] | None = None,
    provider: str | None = None,
    connection_id: int | None = None,
) -> Finding:
    check = code.split(".")[0]
    return Finding(
        check=check,
        code=code,
        severity=severity,
        summary=summary or f"Summary of {code}.",
        hint=hint,
        evidence=dict(evidence or {}),
        provider=provider,
        connection_id=connection_id,
    )


def answer(
    findings: Sequence[Finding],
    *,
    question: str | None = "why isn't my appointment showing",
    matched: Sequence[str] = ("not-showing",),
    declined: bool = False,
    knowledge: KnowledgeBase = KB,
    **extra: Any,
) -> Answer:
    diagnosis_id = extra.pop("diagnosis_id", "1234")
    built = compose(
        knowledge,
        user="carla@northwind.example",
        user_name="Carla Chen",
        question=question,
        findings=by_severity(list(findings)),
        checked_at=NOW,
        checks_run=CHECKS,
        reconnect_url=lambda provider: f"https://calsync.test/connect/{provider}?t=x&y=z",
        article=matched[0] if matched and not declined else None,
        matched=() if declined else matched,
        declined=declined,
        **extra,
    )
    return dataclasses.replace(built, diagnosis_id=diagnosis_id)


HEALTHY = [
    finding("connection.ok", Severity.OK, "Google Calendar accepted our access just now.", connection_id=1),
    finding("calendar.ok", Severity.OK, "Appointments go to your own calendar.", connection_id=1),
    finding("sync.ok", Severity.OK, "Sync ran 4 minutes ago.", connection_id=1),
    finding("duplicates.none", Severity.OK, "No duplicates around today."),
]
REVOKED = [
    finding(
        "connection.revoked",
        Severity.ERROR,
        "Google Calendar refused our access: it was revoked.",
        hint="Reconnect Google Calendar.",
        evidence={"cause": "revoked", "provider_error": "invalid_grant", "access_token": "ya29.SECRET"},
        provider="google",
        connection_id=1,
    ),
    finding(
        "calendar.skipped",
        Severity.UNKNOWN,
        "I couldn't check your calendar until you reconnect.",
        provider="google",
        connection_id=1,
    ),
    finding(
        "sync.push_late",
        Severity.WARNING,
        "No appointment reached your calendar for 3 hours.",
        provider="google",
        connection_id=1,
    ),
    finding(
        "sync.overdue",
        Severity.ERROR,
        "'Tasting demo for Wonka' hasn't reached your calendar.",
        evidence={"appointments": [{"id": "a1", "title": "Tasting demo for Wonka"}]},
        provider="google",
        connection_id=1,
    ),
    finding("duplicates.none", Severity.OK, "No duplicates around today."),
]
REVOKED_ANSWER = answer(REVOKED)


# -- helpers over blocks -----------------------------------------------------------------------------


def texts(blocks: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """Every piece of text in the blocks, in order."""
    for block in blocks:
        if "text" in block and isinstance(block["text"], Mapping):
            yield block["text"]["text"]
        for element in block.get("elements", ()):
            if "text" in element:
                text = element["text"]
                yield text["text"] if isinstance(text, Mapping) else text


def all_text(message: Message | Mapping[str, Any]) -> str:
    blocks = message.blocks if isinstance(message, Message) else message["blocks"]
    return "\n".join(texts(blocks))


def buttons(blocks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(e) for b in blocks if b["type"] == "actions" for e in b["elements"]]


def by_action(blocks: Sequence[Mapping[str, Any]], base: str) -> list[dict[str, Any]]:
    return [b for b in buttons(blocks) if base_action_id(b["action_id"]) == base]


def assert_valid(message: Message) -> None:
    assert validate_message(message) == []
    json.dumps({"text": message.text, "blocks": message.blocks})  # JSON-ready
    for button in buttons(message.blocks):
        if "url" not in button:
            json.loads(button["value"])  # every non-url button's value is JSON


# -- every variant is valid Block Kit ------------------------------------------------------------------

VARIANTS: dict[str, Answer] = {
    "healthy": answer(HEALTHY),
    "revoked": REVOKED_ANSWER,
    "warning": answer(
        [finding("calendar.not_primary", Severity.WARNING, "Appointments go to a shared calendar.")]
    ),
    "unknown": answer(
        [finding("provider.unavailable", Severity.UNKNOWN, "I couldn't reach Google just now.")]
    ),
    "info": answer([finding("sync.pending", Severity.INFO, "Booked 5 minutes ago; expect it within 15.")]),
    "diagnose": answer(REVOKED, question=None, matched=()),
    "no findings": answer([]),
    "two providers": answer(
        [
            finding("connection.revoked", Severity.ERROR, provider="google", connection_id=1),
            finding("connection.expired", Severity.ERROR, provider="microsoft", connection_id=2),
        ]
    ),
    "ambiguous": answer(
        HEALTHY,
        matched=("not-showing", "changes-not-syncing"),
        ambiguous=True,
        alternatives=(("not-showing", 0.45), ("changes-not-syncing", 0.41)),
    ),
    "off topic": answer(HEALTHY, question="how do I reset my password", declined=True),
    "off topic, calendar broken": answer(REVOKED, question="how do I reset my password", declined=True),
    "unsure, nothing found": answer(
        HEALTHY,
        question="hmm",
        matched=(),
        alternatives=(("duplicates", 0.3), ("not-showing", 0.28)),
    ),
    "small talk": dataclasses.replace(
        answer([], question="hi"), kind="smalltalk", headline="Hi, Carla! Ask me anything.", actions=()
    ),
    "no diagnosis id": answer(HEALTHY, diagnosis_id=None),
}


@pytest.mark.parametrize("for_agent", [False, True], ids=["rep", "agent"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_valid_block_kit(name: str, for_agent: bool) -> None:
    message = answer_message(VARIANTS[name], for_agent=for_agent, report_url=REPORT if for_agent else None)
    assert_valid(message)
    assert message.text.strip()


def test_simple_messages_are_valid() -> None:
    for message in (checking_message(), error_message("x"), help_message(False), help_message(True)):
        assert_valid(message)


# -- the rep's answer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "emoji"),
    [(Severity.ERROR, "❌"), (Severity.WARNING, "⚠️"), (Severity.UNKNOWN, "❔"), (Severity.INFO, "ℹ️")],
)
def test_the_headline_comes_first_with_its_causes_emoji(severity: Severity, emoji: str) -> None:
    findings = [finding("sync.x", severity, "The worst thing."), finding("duplicates.none", Severity.OK)]
    message = answer_message(answer(findings))
    assert message.blocks[0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"{emoji} *The worst thing.*"},
    }
    assert message.text == "The worst thing."


def test_a_healthy_answer_says_so_and_what_was_checked() -> None:
    message = answer_message(VARIANTS["healthy"])
    assert message.blocks[0]["text"]["text"] == f"✅ *{HEALTHY_HEADLINE}*"
    text = all_text(message)
    assert "*Check your connection status* — ✓ _checked for you: your calendar is connected_" in text
    assert "*Give it a moment* — ✓ _checked for you: syncs are on time_" in text
    assert "❌" not in text


def test_one_cause_one_fix_its_steps_and_nothing_it_explains() -> None:
    message = answer_message(REVOKED_ANSWER)
    text = all_text(message)
    lines = text.split("\n")
    assert lines[0] == (
        "❌ *Google Calendar refused our access: it was revoked. \u2018Tasting demo for Wonka\u2019 is waiting "
        "for this.*"
    )
    assert lines[1] == (
        "*Fix:* Reconnect Google Calendar: sign in again and allow the permissions — it takes a minute."
    )
    assert "*How to reconnect*" in text and "      1. Go to Settings &gt; Calendar Connections" in text
    assert 'From the help center: _Calendar Shows "Not Connected"_' in text
    # Folded into the cause: the late push, the overdue appointment and the check that could not look.
    for folded in ("3 hours", "hasn't reached", "couldn't check", "Why this happens", "Give it a moment"):
        assert folded not in text, folded
    assert "❌ *How" not in text and "invalid_grant" not in text and "connection.revoked" not in text
    assert "ya29" not in json.dumps(message.blocks)
    assert len(text) <= 1200


def test_details_show_every_finding_with_its_hint_but_no_evidence() -> None:
    message = details_message(REVOKED_ANSWER)
    assert_valid(message)
    text = all_text(message)
    assert "*What I checked*" in text
    assert (
        "❌ Google Calendar refused our access: it was revoked.\n      → _Reconnect Google Calendar._" in text
    )
    assert "❔ I couldn't check your calendar until you reconnect." in text
    assert "⚠️ No appointment reached your calendar for 3 hours." in text
    assert "✅ No duplicates around today." in text
    assert "invalid_grant" not in text and "ya29" not in json.dumps(message.blocks)
    assert [base_action_id(b["action_id"]) for b in buttons(message.blocks)] == [
        ACTION_CHECK_AGAIN,
        ACTION_TALK_TO_SUPPORT,
    ]


def test_a_second_independent_cause_is_said_once_after_the_first() -> None:
    ans = answer(
        [
            *REVOKED,
            finding(
                "duplicates.old_provider_still_active",
                Severity.ERROR,
                "The old Outlook connection is still active: every appointment lands twice.",
            ),
        ]
    )
    text = all_text(answer_message(ans))
    assert [c.code for c in ans.shown_causes] == [
        "connection.revoked",
        "duplicates.old_provider_still_active",
    ]
    assert "❌ *Also:* The old Outlook connection is still active: every appointment lands twice." in text
    assert "*Check for multiple calendars*" in text
    assert text.count("Reconnect Google Calendar: sign in again") == 1


@pytest.mark.parametrize(
    ("provider", "label"), [("google", "Reconnect Google Calendar"), ("microsoft", "Reconnect Outlook")]
)
def test_reconnect_is_a_primary_url_button_per_provider(provider: str, label: str) -> None:
    ans = answer([finding("connection.expired", Severity.ERROR, provider=provider, connection_id=1)])
    blocks = answer_message(ans).blocks
    [button] = by_action(blocks, ACTION_RECONNECT)
    assert button["action_id"] == ACTION_RECONNECT
    assert button["text"]["text"] == label
    assert button["url"] == f"https://calsync.test/connect/{provider}?t=x&y=z"
    assert button["style"] == "primary"
    assert button["value"] == provider
    assert blocks[-1]["type"] == "actions"  # the actions row ends the message
    # In a channel the same button carries no link, only whose and which it is.
    [public] = by_action(answer_message(ans, private=False).blocks, ACTION_RECONNECT)
    assert "url" not in public and json.loads(public["value"]) == {"diagnosis": "1234", "provider": provider}
    assert by_action(blocks, ACTION_TALK_TO_SUPPORT) == [], "the rep has a fix of their own"


def test_two_reconnect_buttons_get_unique_action_ids() -> None:
    blocks = answer_message(VARIANTS["two providers"]).blocks
    reconnects = by_action(blocks, ACTION_RECONNECT)
    assert [b["action_id"] for b in reconnects] == ["reconnect", "reconnect_1"]
    assert [b["value"] for b in reconnects] == ["google", "microsoft"]
    ids = [b["action_id"] for b in buttons(blocks)]
    assert len(ids) == len(set(ids))


# (variant, the buttons in order)
BUTTONS = [
    (
        "healthy",
        [ACTION_DETAILS, ACTION_CHECK_AGAIN, ACTION_HELPED, ACTION_NOT_HELPED, ACTION_TALK_TO_SUPPORT],
    ),
    ("revoked", [ACTION_RECONNECT, ACTION_DETAILS, ACTION_CHECK_AGAIN, ACTION_HELPED, ACTION_NOT_HELPED]),
    (
        "info",
        [
            ACTION_SYNC_NOW,
            ACTION_DETAILS,
            ACTION_CHECK_AGAIN,
            ACTION_HELPED,
            ACTION_NOT_HELPED,
            ACTION_TALK_TO_SUPPORT,
        ],
    ),
    ("off topic", [ACTION_TALK_TO_SUPPORT]),
    ("off topic, calendar broken", [ACTION_RECONNECT]),
    ("small talk", []),
    ("no diagnosis id", [ACTION_DETAILS, ACTION_CHECK_AGAIN, ACTION_TALK_TO_SUPPORT]),
]


@pytest.mark.parametrize(("name", "expected"), BUTTONS, ids=[row[0] for row in BUTTONS])
def test_the_buttons_lead_with_the_fix(name: str, expected: list[str]) -> None:
    blocks = answer_message(VARIANTS[name]).blocks
    assert [base_action_id(b["action_id"]) for b in buttons(blocks)] == expected


def test_sync_now_is_the_fix_when_an_appointment_waits_on_a_cycle() -> None:
    ans = answer(
        [finding("sync.overdue", Severity.ERROR, "'Demo' hasn't reached your calendar.", connection_id=1)]
    )
    blocks = answer_message(ans).blocks
    [sync] = by_action(blocks, ACTION_SYNC_NOW)
    assert sync["style"] == "primary" and "*Fix:* Sync now sends it right away." in all_text(
        answer_message(ans)
    )


def blocks_message(blocks: list[dict[str, Any]]) -> Message:
    return Message(text="-", blocks=blocks)


def test_button_values_are_the_contract() -> None:
    blocks = answer_message(VARIANTS["healthy"]).blocks
    # Each carries the diagnosis it came from: its subject is the answer's owner (issue 15).
    question = {"article": "not-showing", "question": "why isn't my appointment showing", "diagnosis": "1234"}
    [check] = by_action(blocks, ACTION_CHECK_AGAIN)
    [details] = by_action(blocks, ACTION_DETAILS)
    assert json.loads(check["value"]) == json.loads(details["value"]) == question
    [helped] = by_action(blocks, ACTION_HELPED)
    [not_helped] = by_action(blocks, ACTION_NOT_HELPED)
    assert (
        json.loads(helped["value"])
        == json.loads(not_helped["value"])
        == {"diagnosis": "1234", "article": "not-showing"}
    )
    assert helped["text"]["text"] == "👍 Helped" and not_helped["text"]["text"] == "👎 Didn't help"
    [support] = by_action(blocks, ACTION_TALK_TO_SUPPORT)
    assert json.loads(support["value"]) == {"diagnosis": "1234"}
    assert support["text"]["text"] == "Talk to support"


def test_a_diagnosis_without_a_question_checks_again_with_nulls() -> None:
    blocks = answer_message(VARIANTS["diagnose"]).blocks
    [check] = by_action(blocks, ACTION_CHECK_AGAIN)
    assert json.loads(check["value"]) == {"article": None, "question": None, "diagnosis": "1234"}


def test_no_feedback_buttons_without_a_diagnosis_id() -> None:
    blocks = answer_message(VARIANTS["no diagnosis id"]).blocks
    assert by_action(blocks, ACTION_HELPED) == [] and by_action(blocks, ACTION_NOT_HELPED) == []
    [support] = by_action(blocks, ACTION_TALK_TO_SUPPORT)
    assert json.loads(support["value"]) == {"diagnosis": None}


def test_ambiguous_question_with_nothing_wrong_offers_did_you_mean_and_both_articles() -> None:
    message = answer_message(VARIANTS["ambiguous"], for_agent=False)
    text = all_text(message)
    assert "Did you mean “Appointments Not Showing Up” or “Changes Made in Calendar Not Reflecting”?" in text
    headers = [b["text"]["text"] for b in message.blocks if b["type"] == "header"]
    assert headers == ["Appointments Not Showing Up", "Changes Made in Calendar Not Reflecting"]
    guesses = by_action(message.blocks, ACTION_DID_YOU_MEAN)
    assert [b["action_id"] for b in guesses] == ["did_you_mean_0", "did_you_mean_1"]
    assert [json.loads(b["value"]) for b in guesses] == [
        {"article": "not-showing", "question": "why isn't my appointment showing", "diagnosis": "1234"},
        {
            "article": "changes-not-syncing",
            "question": "why isn't my appointment showing",
            "diagnosis": "1234",
        },
    ]


def test_unsure_with_a_problem_answers_with_the_problem_and_no_guessing() -> None:
    ans = answer(
        REVOKED, question="ugh", matched=(), alternatives=(("duplicates", 0.3), ("not-showing", 0.28))
    )
    message = answer_message(ans)
    assert message.blocks[0]["text"]["text"].startswith("❌ *Google Calendar refused our access")
    assert by_action(message.blocks, ACTION_DID_YOU_MEAN) == []


def test_unsure_with_nothing_found_says_what_was_checked_and_asks() -> None:
    message = answer_message(VARIANTS["unsure, nothing found"])
    text = all_text(message)
    assert text.startswith("✅ *I checked your calendar connection and found nothing wrong.*")
    assert [json.loads(b["value"])["article"] for b in by_action(message.blocks, ACTION_DID_YOU_MEAN)] == [
        "duplicates",
        "not-showing",
    ]


def test_a_matched_article_with_guidance_comes_second_beside_a_cause() -> None:
    ans = answer(REVOKED, question="the sign in popup doesnt open", matched=("popup-blocked",))
    message = answer_message(ans)
    headers = [b["text"]["text"] for b in message.blocks if b["type"] == "header"]
    text = all_text(message)
    assert headers == ["Popup Blocked When Connecting"]
    assert text.index("*Fix:* Reconnect") < text.index("Allow popups for this site")


def test_off_topic_says_what_calsync_helps_with_and_where_to_go() -> None:
    message = answer_message(VARIANTS["off topic"])
    text = all_text(message)
    for article in KB.articles:
        assert escape_mrkdwn(article.title) in text
    assert "SalesPartner support" in text and "password" in text and "billing" in text
    assert "not something I can help with" in message.text
    assert "By the way" not in text


def test_off_topic_from_a_rep_whose_calendar_is_broken_adds_one_line_and_its_fix() -> None:
    message = answer_message(VARIANTS["off topic, calendar broken"])
    text = all_text(message)
    assert "❌ *By the way:* Google Calendar refused our access: it was revoked." in text
    assert text.count("Reconnect Google Calendar: sign in again") == 1
    assert "How to reconnect" not in text  # one line, not the whole answer


def test_small_talk_is_one_line() -> None:
    message = answer_message(VARIANTS["small talk"])
    assert message.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Hi, Carla! Ask me anything."}}
    ]


# -- the agent's answer ----------------------------------------------------------------------------


def test_agent_sees_every_finding_with_code_and_evidence_but_never_a_token() -> None:
    message = answer_message(REVOKED_ANSWER, for_agent=True, report_url=REPORT)
    assert message.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔎 Carla Chen · carla@northwind.example", "emoji": True},
    }
    text = all_text(message)
    assert "`connection.revoked`\ncause: revoked\nprovider_error: invalid_grant" in text
    assert "No duplicates around today." in text and "`duplicates.none`" in text  # ok findings too
    assert "ya29" not in json.dumps(message.blocks) and "access_token" not in json.dumps(message.blocks)
    assert message.text.startswith("Carla Chen (carla@northwind.example): Google Calendar refused")
    assert "*What I found*\n❌ Google Calendar refused" in text
    assert "*Causes*\n❌ `connection.revoked` Reconnect Google Calendar" in text
    evidence_blocks = [
        b for b in message.blocks if b["type"] == "context" and "`connection.revoked`" in str(b)
    ]
    assert len(evidence_blocks) == 1


def test_agent_buttons_send_a_reconnect_link_and_open_the_report_but_ask_no_feedback() -> None:
    blocks = answer_message(VARIANTS["two providers"], for_agent=True, report_url=REPORT).blocks
    sends = by_action(blocks, ACTION_SEND_RECONNECT_LINK)
    assert [json.loads(b["value"]) for b in sends] == [
        {"rep": "carla@northwind.example", "provider": "google"},
        {"rep": "carla@northwind.example", "provider": "microsoft"},
    ]
    assert [b["text"]["text"] for b in sends] == [
        "Send Google Calendar reconnect link to rep",
        "Send Outlook reconnect link to rep",
    ]
    [report] = by_action(blocks, ACTION_OPEN_REPORT)
    assert report["url"] == REPORT
    for absent in (ACTION_HELPED, ACTION_NOT_HELPED, ACTION_RECONNECT, ACTION_TALK_TO_SUPPORT):
        assert by_action(blocks, absent) == []


def test_agent_without_report_url_or_reconnect_has_no_agent_buttons() -> None:
    blocks = answer_message(VARIANTS["healthy"], for_agent=True).blocks
    assert buttons(blocks) == []
    single = answer_message(REVOKED_ANSWER, for_agent=True).blocks
    [send] = by_action(single, ACTION_SEND_RECONNECT_LINK)
    assert send["text"]["text"] == "Send reconnect link to rep" and send["action_id"] == "send_reconnect_link"


@pytest.mark.parametrize(
    "value",
    [
        {"when": datetime(2025, 1, 1, tzinfo=UTC)},
        {"nested": {"refresh_token": "r-SECRET", "ok": [1, 2]}},
        {"client_secret": "c-SECRET", "Token": "t-SECRET"},
        {"long": "x" * 10_000},
        {f"k{i}": i for i in range(40)},
    ],
)
def test_evidence_is_json_safe_compact_and_scrubbed(value: dict[str, Any]) -> None:
    ans = answer([finding("sync.last_run_failed", Severity.ERROR, evidence=value, connection_id=1)])
    message = answer_message(ans, for_agent=True)
    assert_valid(message)
    dumped = json.dumps(message.blocks, ensure_ascii=False)
    assert "SECRET" not in dumped and "refresh_token" not in dumped and "client_secret" not in dumped
    assert "x" * 400 not in dumped


# -- escaping --------------------------------------------------------------------------------------

NASTY = "<script>alert(1)</script> & <@U123> <!channel>"


def test_data_is_escaped_everywhere() -> None:
    nasty_article = dataclasses.replace(KB.get("not-showing"), title=f"Title {NASTY}", summary=NASTY)
    knowledge = dataclasses.replace(
        KB, articles=tuple(nasty_article if a.id == "not-showing" else a for a in KB.articles)
    )
    ans = dataclasses.replace(
        answer(
            [
                finding("sync.x", Severity.INFO, f"Summary {NASTY}", hint=NASTY, evidence={"n": NASTY}),
                *HEALTHY,
            ],
            question=f"why {NASTY}",
            knowledge=knowledge,
        ),
        user_name=f"Name {NASTY}",
        user="a&b<x>@example.com",
    )
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;@U123&gt; &lt;!channel&gt;"
    for for_agent in (False, True):
        message = answer_message(ans, for_agent=for_agent, knowledge=knowledge)
        assert_valid(message)
        mrkdwn = "\n".join(t for t in texts(message.blocks) if "<script>" in t or "&lt;script" in t)
        assert escaped in mrkdwn
        assert f"Summary {escaped}" in message.text
    # Headers are plain text: shown literally, so not escaped (Slack parses no markup there).
    ans = answer(HEALTHY, question=f"why {NASTY}", knowledge=knowledge)
    headers = [
        b["text"]["text"] for b in answer_message(ans, knowledge=knowledge).blocks if b["type"] == "header"
    ]
    assert headers == [f"Title {NASTY}"]


def test_escape_mrkdwn() -> None:
    assert escape_mrkdwn("a & b <@U1> c>") == "a &amp; b &lt;@U1&gt; c&gt;"
    assert escape_mrkdwn("plain") == "plain"


def test_error_message_is_one_escaped_line() -> None:
    message = error_message("I don't know <@U999> &\nfriends")
    assert_valid(message)
    assert message.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "⚠️ I don't know &lt;@U999&gt; &amp; friends"}}
    ]


# -- limits ------------------------------------------------------------------------------------------


def huge_answer() -> Answer:
    long = "A very long summary with <tags> & ampersands. " * 60  # ~2,800 characters
    severities = [Severity.ERROR, Severity.WARNING, Severity.UNKNOWN, Severity.INFO, Severity.OK]
    findings = [
        finding(
            f"{['connection', 'calendar', 'sync', 'duplicates', 'changes'][i % 5]}.f{i}",
            severities[i % 5],
            f"#{i} {long}",
            hint="Do this & that " * 50,
            evidence={f"key{j}": "v&<>" * 200 for j in range(20)},
            provider="google",
            connection_id=i,
        )
        for i in range(40)
    ]
    findings.append(
        finding("connection.revoked", Severity.ERROR, "V " * 5_000, provider="google", connection_id=99)
    )
    findings.append(finding("connection.expired", Severity.ERROR, provider="microsoft", connection_id=98))
    return answer(
        findings,
        matched=[article.id for article in KB.articles],
        question='why?! “quotes” " \\ 😀 ' * 1_000,
        ambiguous=True,
        alternatives=(("duplicates", 0.5), ("not-showing", 0.4)),
    )


@pytest.mark.parametrize("for_agent", [False, True], ids=["rep", "agent"])
def test_a_huge_answer_stays_within_the_limits_and_keeps_the_headline_and_actions(for_agent: bool) -> None:
    ans = huge_answer()
    message = answer_message(ans, for_agent=for_agent, report_url=REPORT)
    assert_valid(message)
    assert len(message.blocks) <= MAX_MESSAGE_BLOCKS
    assert all(len(t) <= MAX_TEXT for t in texts(message.blocks))
    assert len(message.text) <= 3000
    headline = next(b for b in message.blocks if b["type"] == "section")
    assert headline["text"]["text"].startswith("❌ *") and headline["text"]["text"].endswith("…")
    assert "…" in all_text(message)  # something was cut, and it says so
    assert message.blocks[-1]["type"] == "actions"
    ids = {base_action_id(b["action_id"]) for b in buttons(message.blocks)}
    if for_agent:
        assert {ACTION_SEND_RECONNECT_LINK, ACTION_OPEN_REPORT} <= ids
        assert "#0 A very long summary" in all_text(message)  # the worst findings lead
    else:
        assert {ACTION_RECONNECT, ACTION_DETAILS, ACTION_CHECK_AGAIN, ACTION_HELPED} <= ids
    for button in buttons(message.blocks):
        assert len(button.get("value", "")) <= MAX_BUTTON_VALUE
        assert len(button["text"]["text"]) <= 75


def test_button_values_fit_with_a_question_full_of_escapes() -> None:
    question = '\x01"' * 3_000  # each character is 2-6 characters once JSON-encoded
    ans = answer(
        HEALTHY,
        question=question,
        ambiguous=True,
        alternatives=(("not-showing", 0.5), ("duplicates", 0.5)),
        matched=("not-showing", "duplicates"),
    )
    message = answer_message(ans)
    assert_valid(message)
    for button in by_action(message.blocks, ACTION_CHECK_AGAIN) + by_action(
        message.blocks, ACTION_DID_YOU_MEAN
    ):
        assert len(button["value"]) <= MAX_BUTTON_VALUE
        assert json.loads(button["value"])["question"].startswith('\x01"')


def test_the_question_travels_truncated_to_500() -> None:
    ans = answer(HEALTHY, question="q" * 900)
    [check] = by_action(answer_message(ans).blocks, ACTION_CHECK_AGAIN)
    assert json.loads(check["value"])["question"] == "q" * 499 + "…"


# -- checking, help ----------------------------------------------------------------------------------


def test_checking_message_is_the_placeholder() -> None:
    message = checking_message()
    assert message.text == "Checking your calendar connection…"
    assert "Checking your calendar connection…" in all_text(message)


@pytest.mark.parametrize("is_agent", [False, True])
def test_help_lists_the_commands(is_agent: bool) -> None:
    text = all_text(help_message(is_agent))
    assert "DM" in text and "@mention" in text
    assert "`/calsync diagnose`" in text and "`/calsync reconnect`" in text
    assert ("`/calsync diagnose @user`" in text) is is_agent


# -- App Home ----------------------------------------------------------------------------------------


def valid_view(view: dict[str, Any]) -> None:
    assert view["type"] == "home"
    assert validate_blocks(view["blocks"], max_blocks=MAX_HOME_BLOCKS) == []
    json.dumps(view)


def test_home_without_an_answer_is_neutral() -> None:
    view = home_view(None, name="Carla")
    valid_view(view)
    text = all_text(view)
    assert "Hi Carla" in text and "Open this tab again" in text
    assert buttons(view["blocks"]) == []


def test_home_for_someone_not_linked_explains_and_points_to_support() -> None:
    view = home_view(None, name="Zed", not_a_user=True)
    valid_view(view)
    text = all_text(view)
    assert "isn't linked to a SalesPartner user" in text and "support" in text
    assert buttons(view["blocks"]) == []


def test_home_healthy_shows_each_row_with_its_mark_and_check_again_only() -> None:
    view = home_view(VARIANTS["healthy"], name="Carla")
    valid_view(view)
    text = all_text(view)
    assert "✅ *Connection*: Google Calendar accepted our access just now." in text
    assert "✅ *Calendar*: Appointments go to your own calendar." in text
    assert "✅ *Last sync*: Sync ran 4 minutes ago." in text
    assert "Messages" in text and "@mention" in text
    assert [b["action_id"] for b in buttons(view["blocks"])] == [ACTION_CHECK_AGAIN]
    assert json.loads(buttons(view["blocks"])[0]["value"]) == {"article": None, "question": None}


def test_home_revoked_shows_the_problem_and_reconnect() -> None:
    view = home_view(answer(REVOKED, question=None, matched=()), name="Carla")
    valid_view(view)
    text = all_text(view)
    assert "❌ *Connection*: Google Calendar refused our access: it was revoked." in text
    assert "→ _Reconnect Google Calendar._" in text
    assert "❔ *Calendar*" in text and "❌ *Last sync*" in text
    assert [b["action_id"] for b in buttons(view["blocks"])] == [ACTION_RECONNECT, ACTION_CHECK_AGAIN]
    assert "invalid_grant" not in json.dumps(view)


def test_home_with_missing_rows_and_other_problems() -> None:
    ans = answer(
        [
            finding("connection.ok", Severity.OK),
            finding("duplicates.found", Severity.WARNING, "Some meetings show up twice <&>."),
        ],
        question=None,
        matched=(),
    )
    view = home_view(ans)
    valid_view(view)
    text = all_text(view)
    assert "❔ *Calendar*: not checked" in text
    assert "⚠️ Some meetings show up twice &lt;&amp;&gt;." in text
    assert "Hi 👋" in text


def test_home_with_a_huge_answer_stays_within_the_limits() -> None:
    valid_view(home_view(huge_answer(), name="N" * 500))


# -- the validator and the action-id contract --------------------------------------------------------


def button(action_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": "Go"}, "action_id": action_id, **extra}


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ([{"type": "divider"}] * 51, "51 blocks (max 50)"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "3001 characters"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], "151 characters"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}], "not allowed"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "<@U123>"}}], "unescaped '<'"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "a & b"}}], "unescaped '&'"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": " "}}], "empty"),
        ([{"type": "actions", "elements": [button("a"), button("a")]}], "duplicate action_id"),
        ([{"type": "actions", "elements": [button("a" * 256)]}], "action_id longer"),
        ([{"type": "actions", "elements": [button("a", value="v" * 2001)]}], "value must be"),
        (
            [
                {
                    "type": "actions",
                    "elements": [{**button("a"), "text": {"type": "plain_text", "text": "x" * 76}}],
                }
            ],
            "76 characters",
        ),
        ([{"type": "actions", "elements": []}], "needs 1 to 25"),
        ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "x"}] * 11}], "needs 1 to 10"),
        ([{"type": "image"}], "unknown block type"),
    ],
)
def test_validate_blocks_finds_problems(blocks: list[dict[str, Any]], problem: str) -> None:
    problems = validate_blocks(blocks)
    assert problems and any(problem in p for p in problems), problems


def test_validate_message_checks_the_fallback_text() -> None:
    assert validate_message(Message(text="", blocks=[])) == ["fallback text: text is empty"]
    assert "fallback text" in validate_message(Message(text="x" * 3001, blocks=[]))[0]


def test_validator_allows_the_date_markup_it_emits() -> None:
    text = "Checked <!date^1741097100^{time}|Checked 2025-03-04 14:05 UTC>"
    assert validate_blocks([{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}]) == []


@pytest.mark.parametrize(
    ("action_id", "base"),
    [
        ("reconnect", ACTION_RECONNECT),
        ("reconnect_1", ACTION_RECONNECT),
        ("did_you_mean_0", ACTION_DID_YOU_MEAN),
        ("feedback_helped", ACTION_HELPED),
        ("send_reconnect_link_1", ACTION_SEND_RECONNECT_LINK),
        ("reconnected", None),
        ("something_else", None),
    ],
)
def test_action_ids_map_back_to_the_contract(action_id: str, base: str | None) -> None:
    assert base_action_id(action_id) == base
    if base is not None:
        assert ACTION_PATTERNS[base].match(action_id)


# -- notes, markup, reconnect links, a preface -------------------------------------------------------


def test_notice_message_keeps_lines_and_escapes() -> None:
    message = notice_message("Thanks — glad that helped.\nA & B <@U1>", emoji="🙏")
    assert_valid(message)
    assert all_text(message) == "🙏 Thanks — glad that helped.\nA &amp; B &lt;@U1&gt;"


def test_markup_message_keeps_deliberate_mentions_and_links() -> None:
    mrkdwn = f"Support request from <@U0ANA> ({escape_mrkdwn('Ana & co')}) <https://x.test/r?a=1|report>"
    message = markup_message(mrkdwn, fallback="Support request from Ana & co")
    assert validate_message(message, allow_markup=True) == []
    assert validate_message(message) != []  # the strict check still flags markup
    assert all_text(message) == mrkdwn
    assert message.text == "Support request from Ana &amp; co"
    # Mass mentions are never allowed, even with allow_markup.
    loud = markup_message("<!channel> look", fallback="x")
    assert validate_message(loud, allow_markup=True) != []


def test_reconnect_message_has_one_url_button_per_provider() -> None:
    message = reconnect_message({"google": "https://c.test/g", "microsoft": "https://c.test/m", "x": None})
    assert_valid(message)
    found = by_action(message.blocks, ACTION_RECONNECT)
    assert [(b["action_id"], b["text"]["text"], b["url"], b["style"]) for b in found] == [
        ("reconnect", "Reconnect Google Calendar", "https://c.test/g", "primary"),
        ("reconnect_1", "Reconnect Outlook", "https://c.test/m", "primary"),
    ]
    assert "couldn't make a reconnect link" in all_text(reconnect_message({"google": None}))


@pytest.mark.parametrize("for_agent", [False, True], ids=["rep", "agent"])
def test_a_preface_goes_first_and_counts_against_the_budget(for_agent: bool) -> None:
    preface = "Support request from <@U0ANA> (Carla)."
    message = answer_message(huge_answer(), for_agent=for_agent, report_url=REPORT, preface=preface)
    assert validate_message(message, allow_markup=True) == []
    assert message.blocks[0]["text"]["text"] == preface
    assert len(message.blocks) <= MAX_MESSAGE_BLOCKS and message.blocks[-1]["type"] == "actions"
