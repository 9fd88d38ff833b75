"""Bad input, generated: signed requests over real HTTP to the running app (slash commands, DMs,
button clicks and raw interactivity payloads), scenario files into the loader, and reconnect links
used by someone else.

What every one of them must do: answer HTTP 200 or a 4xx (never a 5xx), answer the person in plain
words (no traceback, no class name, no @here from their own text, blocks Slack accepts), and change
nothing it should not. "Nothing" is precise: the rows of users, calendar connections, appointments
and event links stay as they were (but for the token columns a diagnosis refreshes, see
`conftest.TOKEN_COLUMNS`). A question or a diagnosis still writes what it always writes: an audit
entry and the claimed Slack event id.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from calsync.render.blocks import (
    ACTION_CHECK_AGAIN,
    ACTION_DID_YOU_MEAN,
    ACTION_HELPED,
    ACTION_NOT_HELPED,
    ACTION_OPEN_REPORT,
    ACTION_RECONNECT,
    ACTION_SEND_RECONNECT_LINK,
    ACTION_TALK_TO_SUPPORT,
)
from calsync.sandbox.scenario import ScenarioError, load_scenario
from calsync.sandbox.slack_requests import FORM, JSON, command_body, event_body, signed_headers
from calsync.sandbox.world import SandboxBase
from calsync.syncbackend.models import AuditEntry, Base, CalendarConnection, User
from tests.bot.conftest import AGENT_BY_SETTING, SlackHarness, sign, wait_for
from tests.harness import Sandbox
from tests.robustness.conftest import DEMO, Robust, leaks, protected_rows
from tests.web.conftest import _Forms

ANA, SAM, GHOST, CARLA = "U0DEMOANA", "U0DEMOSAM", "U0DEMOGHOST", "U0DEMOCARLA"
CHECKING = "Checking your calendar connection"
BROADCASTS = ("<!here", "<!channel", "<!everyone", "<!subteam")
_ids = itertools.count(1)

# Generated input is bounded and the same on every run (CI must be deterministic).
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    # One app and one demo world for all examples of a test, on purpose (see the module docstring).
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
    ],
)


def shown(node: Any) -> list[str]:
    """The text Slack renders from Block Kit: every `text`, never a button's `value` or `url`
    (opaque strings handed back on a click, which may carry the rep's own words)."""
    if isinstance(node, dict):
        found = [node["text"]] if isinstance(node.get("text"), str) else []
        return found + [
            part for key, value in node.items() if key not in ("value", "url") for part in shown(value)
        ]
    if isinstance(node, list):
        return [part for item in node for part in shown(item)]
    return []


def said(messages: list[Any]) -> str:
    """What people see of `messages`: the notification text and the rendered blocks."""
    return "\n".join("\n".join([m.text, *shown(m.blocks or [])]) for m in messages)


# The Web API calls by which calsync shows someone something.
SHOWING = ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url", "views.publish")


def failed_slack_calls(sandbox: Sandbox) -> list[tuple[str, str | None]]:
    """Answers Slack refused (invalid blocks, too long...): the person saw nothing or a placeholder."""
    return [(c.method, c.error) for c in sandbox.world.slack_calls() if c.method in SHOWING and not c.ok]


def assert_plain(reply: str, words: str) -> None:
    """What a person is shown: no exception text, and no broadcast mention made of their words."""
    assert leaks(reply, allowed_in=words) == [], reply
    assert not [b for b in BROADCASTS if b in reply], reply


# -- what people type ---------------------------------------------------------------------------------

# Slack markup as it arrives in command and message text.
MARKUP = [
    "<@U0DEMOCARLA|carla>",
    "<@U123|x>",
    "<@W0NOBODY>",
    "<!here>",
    "<!channel>",
    "<!everyone>",
    "<!subteam^S0SUPPORT|@support-agents>",
    "<#C0HELP|calendar-help>",
    "<mailto:carla@northwind.example|carla@northwind.example>",
    "<mailto:|>",
    "<https://evil.example/|click me>",
    "<>",
    "<@",
    "&lt;script&gt;",
    "*bold* _it_ ~st~ `code` ```block```",
    ":calendar: :+1::skin-tone-3:",
]
VERBS = ["", "help", "?", "diagnose", "DIAGNOSE", "reconnect", "Reconnect now", "diagnose diagnose"]
# Text any Slack client can send: no lone surrogates (they cannot be encoded as UTF-8 at all).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
CONTROL = st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), min_size=1, max_size=40)
SCRIPTS = st.text(
    st.characters(
        min_codepoint=0x0370, max_codepoint=0x1F9FF, exclude_categories=["Cs", "Co", "Cn"]
    ),  # Greek, Cyrillic, Hebrew, Arabic, CJK, emoji...
    min_size=1,
    max_size=80,
)
HUGE = st.builds(
    lambda unit, times: unit * times,
    st.sampled_from(["x", "é", "日本", "🗓️", "<!here> ", "diagnose "]),
    st.integers(min_value=1_000, max_value=12_000),
)
WORDS = st.one_of(
    ANY_TEXT,
    CONTROL,
    SCRIPTS,
    HUGE,
    st.sampled_from(MARKUP),
    st.builds(
        " ".join,
        st.lists(st.one_of(st.sampled_from(VERBS), st.sampled_from(MARKUP), SCRIPTS, CONTROL), max_size=4),
    ),
)
COMMAND_TEXT = st.one_of(WORDS, st.builds(lambda verb, rest: f"{verb} {rest}", st.sampled_from(VERBS), WORDS))


@settings(FUZZ, max_examples=30)
@given(user=st.sampled_from([ANA, SAM, GHOST]), text=COMMAND_TEXT)
@example(user=SAM, text="diagnose <@U0DEMOCARLA|carla> <!here>")
@example(user=SAM, text="diagnose <mailto:carla@northwind.example|carla@northwind.example>")
@example(user=SAM, text="diagnose <@W0NOBODY|ghost>")
@example(user=ANA, text="diagnose <@U0DEMOCARLA|carla>")
@example(user=ANA, text="\x00\x1b[31m diagnose \u202e")
def test_any_command_text_gets_a_clear_private_answer_and_changes_nothing(
    robust: Robust, user: str, text: str
) -> None:
    slack, sandbox = robust.slack, robust.slack.sandbox
    before = protected_rows(sandbox.sessions)
    channel = f"C0FUZZ{next(_ids):05d}"

    response, _ = slack.command(user, text, channel=channel)

    assert response.status_code == 200
    replies = wait_for(
        lambda: [m for m in slack.ephemeral_for(user, channel) if CHECKING not in m.text],
        what="the command's answer",
    )
    assert_plain(said(replies), text)
    # Only the person who typed it sees anything.
    assert [m for m in sandbox.world.slack_messages(channel) if m.ephemeral_for != user] == []
    assert failed_slack_calls(sandbox) == []
    assert protected_rows(sandbox.sessions) == before


@pytest.mark.xfail(
    strict=True,
    reason="slack_bolt's parse_body reads any form body containing 'payload' as an interactivity payload, "
    "so the command is unhandled (404) and Slack shows the rep an error; calsync cannot re-encode a "
    "signed body. Fixed upstream: this test starts passing (and strict xfail fails) - then drop the mark.",
)
def test_a_command_that_mentions_payload_is_answered(robust_one_rep: Robust) -> None:
    slack = robust_one_rep.slack
    response, channel = slack.command(ANA, "what is a payload")
    assert response.status_code == 200
    wait_for(lambda: slack.ephemeral_for(ANA, channel), what="the answer")


@settings(FUZZ, max_examples=20)
@given(user=st.sampled_from([ANA, GHOST]), text=WORDS)
@example(user=ANA, text="why isn't my appointment showing " * 300)  # longer than a button value may be
@example(user=ANA, text="<!channel> every appt shows up twice <@U0DEMOCARLA>")
@example(user=ANA, text="")
def test_any_dm_gets_one_clear_answer_and_changes_nothing(robust: Robust, user: str, text: str) -> None:
    slack, sandbox = robust.slack, robust.slack.sandbox
    before = protected_rows(sandbox.sessions)
    channel = slack.dm_channel(user)
    earlier = len(sandbox.world.slack_messages(channel))

    response, _ = slack.dm(user, text)

    assert response.status_code == 200
    answer = wait_for(
        lambda: (
            new
            if (new := sandbox.world.slack_messages(channel)[earlier:])
            and all(CHECKING not in m.text for m in new)
            else None
        ),
        what="the answer in the DM",
    )
    assert len(answer) == 1  # one answer, the placeholder updated in place
    assert_plain(said(answer), text)
    assert failed_slack_calls(sandbox) == []
    assert protected_rows(sandbox.sessions) == before


# -- what buttons send -------------------------------------------------------------------------------

# Action ids whose listener answers the person (through the response URL, or by updating the message).
# "Sync now" is left out: it pushes the rep's appointments, a write by design (tests/bot/test_sync_now.py).
ANSWERING_ACTIONS = [
    ACTION_CHECK_AGAIN,
    f"{ACTION_DID_YOU_MEAN}_0",
    ACTION_HELPED,
    ACTION_NOT_HELPED,
    ACTION_TALK_TO_SUPPORT,
    ACTION_SEND_RECONNECT_LINK,
]
# Acked and done (link buttons), or not ours at all (Bolt has no listener: 404).
SILENT_ACTIONS = [ACTION_RECONNECT, f"{ACTION_OPEN_REPORT}_2", "delete_everything", "", "check_again_x", "💥"]
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
BUTTON_VALUE = st.one_of(
    ANY_TEXT,
    HUGE,
    JSONISH.map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "article": st.one_of(st.sampled_from(["not-showing", "duplicates", "nope", ""]), JSONISH),
            "question": st.one_of(WORDS, JSONISH),
            "diagnosis": st.one_of(st.sampled_from(["1", "-1", "999999", ""]), JSONISH),
            "rep": st.one_of(st.sampled_from(["carla@northwind.example", "nobody@x", ""]), JSONISH),
            "provider": st.one_of(st.sampled_from(["google", "microsoft", "yahoo"]), JSONISH),
        },
    ).map(json.dumps),
)
MISSING = object()  # a field left out of the payload


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(MISSING), strategy)


def _payload(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not MISSING}


@st.composite
def answering_click(draw: st.DrawFn, response_url: str, message_ts: str, channel: str) -> dict[str, Any]:
    """A block_actions payload for a button whose listener answers, with anything else in it."""
    action = _payload(
        {
            "action_id": draw(st.sampled_from(ANSWERING_ACTIONS)),
            "block_id": draw(_maybe(ANY_TEXT)),
            "type": draw(_maybe(st.sampled_from(["button", "static_select", "💥"]))),
            "value": draw(_maybe(BUTTON_VALUE)),
            "action_ts": draw(_maybe(ANY_TEXT)),
        }
    )
    container = draw(
        st.one_of(
            st.just(
                {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False}
            ),
            st.just(
                {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": True}
            ),
            st.just({"type": "message", "message_ts": "1.000001", "channel_id": "C0NOWHERE"}),
            JSONISH,
            st.just(MISSING),
        )
    )
    user = draw(
        st.one_of(
            st.sampled_from([{"id": ANA}, {"id": SAM}, {"id": AGENT_BY_SETTING}, {"id": GHOST}]),
            st.builds(lambda uid: {"id": uid}, ANY_TEXT),
            JSONISH,
            st.just(MISSING),
        )
    )
    return _payload(
        {
            "type": "block_actions",
            "user": user,
            "team": draw(_maybe(st.just({"id": "T0SANDBOX"}))),
            "api_app_id": "A0CALSYNC",
            "container": container,
            "channel": draw(_maybe(st.one_of(st.just({"id": channel}), JSONISH))),
            "message": draw(_maybe(st.one_of(st.just({"ts": message_ts, "text": ""}), JSONISH))),
            "response_url": response_url,
            "trigger_id": draw(_maybe(ANY_TEXT)),
            "actions": [action],
        }
    )


SILENT_PAYLOAD = st.one_of(
    # Not JSON, or JSON that is not an object.
    st.one_of(ANY_TEXT, st.sampled_from(["{", '{"type": "block_actions"', "null", "[]", '"x"', "{}"])),
    JSONISH.map(json.dumps),
    # Well-formed, but for nothing that answers.
    st.builds(
        lambda action_id, value, kind: json.dumps(
            {
                "type": kind,
                "user": {"id": ANA},
                "actions": [{"action_id": action_id, "value": value}],
                "container": {},
            }
        ),
        st.sampled_from(SILENT_ACTIONS),
        BUTTON_VALUE,
        st.sampled_from(["block_actions", "interactive_message", "view_submission", "shortcut", "💥"]),
    ),
    st.just(json.dumps({"type": "block_actions", "user": {"id": ANA}, "actions": []})),
    st.just(json.dumps({"type": "block_actions", "user": {"id": ANA}})),
)


def _post_form(slack: SlackHarness, fields: dict[str, str] | bytes) -> Any:
    body = fields if isinstance(fields, bytes) else urlencode(fields).encode()
    return slack.post(body, FORM)


def answers(sandbox: Sandbox) -> int:
    """How many times calsync answered a click: a post to a response URL or an update of a message."""
    return len([c for c in sandbox.world.slack_calls() if c.method in ("response_url", "chat.update")])


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_any_click_payload_gets_an_answer_or_a_4xx_and_changes_nothing(
    robust: Robust, data: st.DataObject
) -> None:
    slack, sandbox = robust.slack, robust.slack.sandbox
    before = protected_rows(sandbox.sessions)
    channel = slack.dm_channel(ANA)
    message = sandbox.world.slack_post_message(
        channel=channel,
        user="U0CALSYNC",
        text="an answer",
        blocks=None,
        attachments=None,
        now=sandbox.clock(),
    )
    sent: list[str] = []
    expected = answers(sandbox)

    if data.draw(st.booleans(), label="answering"):
        response_url = sandbox.world.slack_response_url(
            slack.slack_base, channel=channel, user_id=ANA, message_ts=message.ts
        )
        payload = json.dumps(data.draw(answering_click(response_url, message.ts, channel), label="payload"))
        sent.append(payload)
        response = _post_form(slack, {"payload": payload})
        assert response.status_code in (200, 400), payload
        if response.status_code == 200:
            # Whatever else is in it, the listener answers once (or says that something went wrong).
            expected += 1
            wait_for(lambda: answers(sandbox) >= expected, what="the answer to the click")
    else:
        raw = data.draw(SILENT_PAYLOAD, label="payload")
        sent.append(raw)
        form = data.draw(
            st.sampled_from(["payload", "no-payload-field", "not-form-encoded"]), label="how it is sent"
        )
        if form == "payload":
            response = _post_form(slack, {"payload": raw})
        elif form == "no-payload-field":
            response = _post_form(slack, {"paylode": raw, "text": raw})
        else:
            response = _post_form(slack, raw.encode())
        assert response.status_code < 500, raw
    assert answers(sandbox) == expected  # nothing answered twice, nothing answered to a silent payload
    everything = said(sandbox.world.slack_messages())
    assert_plain(everything, "\n".join(sent))
    assert protected_rows(sandbox.sessions) == before


# -- envelopes that are not Slack's shape ---------------------------------------------------------------

ODD_ENVELOPES = [
    pytest.param(b"not json at all", JSON, id="event-not-json"),
    pytest.param(b"[1, 2, 3]", JSON, id="event-json-array"),
    pytest.param(b"{}", JSON, id="event-empty-object"),
    pytest.param(json.dumps({"type": "event_callback"}).encode(), JSON, id="event-without-event"),
    pytest.param(
        json.dumps({"type": "event_callback", "event": "hi"}).encode(), JSON, id="event-not-an-object"
    ),
    pytest.param(
        json.dumps({"type": "event_callback", "event": {"type": "💥"}, "event_id": "Ev1"}).encode(),
        JSON,
        id="unknown-event-type",
    ),
    pytest.param(json.dumps({"type": "url_verification"}).encode(), JSON, id="challenge-without-challenge"),
    pytest.param(
        json.dumps({"type": "event_callback", "event": {"type": "message", "channel_type": "im"}}).encode(),
        JSON,
        id="dm-without-user-or-channel",
    ),
    pytest.param(b"", FORM, id="empty-form"),
    pytest.param(b"payload=%7B%22type%22%3A", FORM, id="truncated-payload"),
    pytest.param(b"\xff\xfe\x00garbage", FORM, id="not-utf8"),
    pytest.param(b"command=%2Fcalsync", FORM, id="command-without-user"),
    pytest.param(b"<xml/>", "text/xml", id="xml"),
    # Shapes Bolt reads as Slack's and fails on (a 500, or a reset connection, before the guard).
    pytest.param(json.dumps({"type": "event_callback", "event": 5}).encode(), JSON, id="event-a-number"),
    pytest.param(
        json.dumps(
            {"type": "event_callback", "event": {"type": "message", "user": 5, "channel": "D1"}}
        ).encode(),
        JSON,
        id="event-user-a-number",
    ),
    pytest.param(json.dumps({"team": "x", "enterprise": 3}).encode(), JSON, id="enterprise-a-number"),
    pytest.param(
        urlencode(
            {"payload": json.dumps({"type": "block_actions", "user": {"id": ANA}, "actions": []})}
        ).encode(),
        FORM,
        id="no-actions",
    ),
    pytest.param(
        urlencode({"payload": json.dumps({"type": "block_actions", "user": "x", "actions": ["x"]})}).encode(),
        FORM,
        id="action-not-an-object",
    ),
    pytest.param(urlencode({"payload": "[1]"}).encode(), FORM, id="payload-a-list"),
]


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize(("body", "content_type"), ODD_ENVELOPES)
def test_odd_envelopes_get_a_4xx_or_nothing_happens(
    robust_one_rep: Robust, body: bytes, content_type: str, signed: bool
) -> None:
    robust = robust_one_rep
    slack, sandbox = robust.slack, robust.slack.sandbox
    before = protected_rows(sandbox.sessions)
    signature = sign_bytes(body, slack.secret) if signed else {}
    response = slack.http.post(
        f"{slack.url}/slack/events", content=body, headers={**signature, "Content-Type": content_type}
    )
    assert response.status_code < 500
    if not signed:
        assert response.status_code in (400, 401)
        return
    assert "Traceback" not in response.text
    # A DM afterwards is answered, so anything the odd request started has had its turn.
    slack.dm(ANA, "how do I reset my password")
    channel = slack.dm_channel(ANA)
    wait_for(lambda: [m for m in sandbox.world.slack_messages(channel) if CHECKING not in m.text])
    assert [m.text for m in sandbox.world.slack_messages() if m.channel != channel] == []
    assert protected_rows(sandbox.sessions) == before


# -- signatures ---------------------------------------------------------------------------------------
# tests/bot/test_slack_app.py covers a forged signature, a missing one and one older than five minutes
# on an event. These are the rest: the other request kinds, a timestamp from the future, a body changed
# after signing, another app's secret, and an exact replay.


def sign_bytes(body: bytes, secret: str) -> dict[str, str]:
    """Slack's v0 signature over any bytes (slack_sdk's helper wants text)."""
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def _command(slack: SlackHarness, text: str = "diagnose") -> bytes:
    url = slack.sandbox.world.slack_response_url(slack.slack_base, channel="C0SIG", user_id=ANA)
    return command_body(user=ANA, channel="C0SIG", text=text, response_url=url, trigger_id="trigSIG")


def _click(slack: SlackHarness) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": ANA},
        "actions": [{"action_id": ACTION_HELPED, "value": json.dumps({"diagnosis": "1"})}],
        "response_url": slack.sandbox.world.slack_response_url(
            slack.slack_base, channel="C0SIG", user_id=ANA
        ),
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _forged(body: bytes, secret: str) -> dict[str, str]:
    return sign(body, "not-" + secret)


def _future(body: bytes, secret: str) -> dict[str, str]:
    return sign(body, secret, int(time.time()) + 6 * 60)


SIGNATURE_ROWS = [
    pytest.param(_command, FORM, _forged, id="command-other-secret"),
    pytest.param(_click, FORM, _forged, id="click-other-secret"),
    pytest.param(_command, FORM, _future, id="command-timestamp-from-the-future"),
    pytest.param(_click, FORM, _future, id="click-timestamp-from-the-future"),
]


@pytest.mark.parametrize(("make", "content_type", "headers"), SIGNATURE_ROWS)
def test_requests_not_signed_by_slack_do_nothing(
    robust_one_rep: Robust,
    make: Callable[[SlackHarness], bytes],
    content_type: str,
    headers: Callable[[bytes, str], dict[str, str]],
) -> None:
    slack = robust_one_rep.slack
    body = make(slack)
    response = slack.http.post(
        f"{slack.url}/slack/events",
        content=body,
        headers={**headers(body, slack.secret), "Content-Type": content_type},
    )
    assert response.status_code == 401
    _nothing_happened_after(slack)


def test_a_body_changed_after_signing_does_nothing(robust_one_rep: Robust) -> None:
    slack = robust_one_rep.slack
    body = _command(slack, "help")
    signed = signed_headers(body, slack.secret, FORM)
    response = slack.http.post(
        f"{slack.url}/slack/events", content=body.replace(b"help", b"diagnose"), headers=signed
    )
    assert response.status_code == 401
    _nothing_happened_after(slack)


def test_an_exact_replay_of_a_signed_event_gets_one_answer(robust_one_rep: Robust) -> None:
    slack, world = robust_one_rep.slack, robust_one_rep.slack.sandbox.world
    channel = slack.dm_channel(ANA)
    event = {
        "type": "message",
        "channel_type": "im",
        "user": ANA,
        "channel": channel,
        "ts": "1764001000.000100",
    }
    body = event_body({**event, "text": "how do I reset my password"}, "EvREPLAYED01")
    headers = signed_headers(body, slack.secret, JSON)
    # The same bytes and the same headers, three times (no retry headers: a replay, not a retry).
    statuses = [
        slack.http.post(f"{slack.url}/slack/events", content=body, headers=headers).status_code for _ in "abc"
    ]
    assert statuses == [200, 200, 200]
    slack.dm(ANA, "every appt shows up twice")  # answered after the replays were handled
    wait_for(lambda: len([m for m in world.slack_messages(channel) if CHECKING not in m.text]) >= 2)
    assert len(world.slack_messages(channel)) == 2


def _nothing_happened_after(slack: SlackHarness) -> None:
    """No answer to the refused request: a signed command afterwards is answered, and it is alone."""
    world = slack.sandbox.world
    response, _ = slack.command(ANA, "help", channel="C0SIGOK")
    assert response.status_code == 200
    wait_for(lambda: world.slack_calls("response_url"), what="the answer to the signed command")
    assert [
        (c.method, c.params.get("response_type")) for c in world.slack_calls() if c.method != "users.info"
    ] == [("response_url", "ephemeral")]
    with slack.sandbox.sessions() as session:
        assert session.scalars(select(AuditEntry)).all() == []


# -- scenario files -----------------------------------------------------------------------------------

LINE = re.compile(r": line \d+: ")


def world_and_backend(sandbox: Sandbox) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: the product's and the sandbox world's."""
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    with sandbox.sessions() as session:
        for metadata in (Base.metadata, SandboxBase.metadata):
            for table in metadata.sorted_tables:
                rows = session.execute(select(table).order_by(*table.primary_key.columns)).all()
                snapshot[table.name] = [tuple(row) for row in rows]
    return snapshot


def load_or_refuse(sandbox: Sandbox, text: str) -> ScenarioError | None:
    """Load `text`: None when it loaded; the loader's error when it refused, having written nothing."""
    path = sandbox.tmp_dir / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8")
    before = world_and_backend(sandbox)
    try:
        load_scenario(
            path, sessions=sandbox.sessions, world=sandbox.world, cipher=sandbox.cipher, clock=sandbox.clock
        )
    except ScenarioError as error:
        if currently_in_test_context():
            event("refused")
        assert world_and_backend(sandbox) == before, "a refused scenario wrote something"
        message = str(error)
        assert message.startswith(str(path)), message
        assert "Traceback" not in message
        if "the file is empty" not in message:
            # One problem per line, each naming the line of the file it is about (a problem may run on
            # over a line break that was in the file's own text, e.g. in a key).
            problems = [line for line in message.splitlines() if line.startswith(str(path))]
            assert problems and all(LINE.match(problem, len(str(path))) for problem in problems), message
        return error
    if currently_in_test_context():
        event("loaded")
    return None


KEYS = [
    "description", "accounts", "users", "faults", "slack", "provider", "email", "name", "grant", "status",
    "calendars", "id", "primary", "access_role", "events", "title", "start", "end", "appointment",
    "connections", "account", "selected_calendar", "active", "appointments", "links", "connection",
    "sync_runs", "direction", "started", "kind", "endpoint", "params", "remaining", "channels", "usergroups",
    "members", "role", "slack_user_id", "booked", "state", "aadsts", "duration_minutes",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: durations, counts and codes far beyond what a column or a date holds
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["google", "microsoft", "slack", "*", "now", "-4m", "+1d2h", "tomorrow 09:30", "yesterday",
                     "today 25:61", "2026-13-45", "rate_limit", "ana@northwind.example", "U0X", "C0X", "S0X",
                     "owner", "reader"]),
    st.builds(lambda sign, n, unit: f"{sign}{n}{unit}", st.sampled_from("+-"), st.integers(0, 10**12),
              st.sampled_from("dhms")),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]))
    .map(datetime.isoformat),
    ANY_TEXT,
)  # fmt: skip
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | ANY_TEXT, inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(FUZZ, max_examples=40)
@given(document=st.dictionaries(st.sampled_from(KEYS), DOCUMENTS, max_size=5) | DOCUMENTS)
def test_generated_scenarios_load_or_are_refused_with_a_line(sandbox: Sandbox, document: Any) -> None:
    load_or_refuse(sandbox, yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


@settings(FUZZ, max_examples=20)
@given(
    text=st.one_of(
        ANY_TEXT, st.sampled_from(["", "---", "- a\n- b", "a: [", "a: b\n  c: d", "\t- x", "&a *a"])
    )
)
def test_arbitrary_text_as_a_scenario_is_refused_cleanly(sandbox: Sandbox, text: str) -> None:
    load_or_refuse(sandbox, text)


def _appointment(field: str) -> str:
    return f"users:\n  - email: u@x.example\n    appointments: [{{id: a1, title: t, start: now, {field}}}]\n"


# Found by the generators above: each made the loader raise OverflowError instead of refusing the file.
OUT_OF_RANGE = [
    pytest.param(_appointment("duration_minutes: 99999999999999999999"), id="duration-beyond-a-c-int"),
    pytest.param(_appointment("duration_minutes: 9999999999999"), id="end-beyond-year-9999"),
    pytest.param(_appointment("booked: '+99999999999d'"), id="relative-beyond-timedelta"),
    pytest.param(_appointment("updated: '+9999999d'"), id="relative-beyond-year-9999"),
    pytest.param(_appointment("end: '9999-12-31T23:59:59-05:00'"), id="iso-beyond-year-9999-in-utc"),
    pytest.param(_appointment("end: '0001-01-01T00:00:00+05:00'"), id="iso-before-year-1-in-utc"),
    pytest.param(
        "faults: [{provider: google, kind: latency, remaining: 99999999999999999999999}]\n", id="remaining"
    ),
    pytest.param(
        "accounts: [{provider: microsoft, email: a@x.example, grant: {status: revoked, aadsts: 99999999999999999999}}]\n",
        id="aadsts",
    ),
]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_out_of_range_values_are_refused_with_their_line(sandbox: Sandbox, text: str) -> None:
    refused = load_or_refuse(sandbox, text)
    assert refused is not None


DEMO_LINES = DEMO.read_text(encoding="utf-8").splitlines()


@st.composite
def mutated_demo(draw: st.DrawFn) -> str:
    """The demo scenario with a few lines broken the way people break YAML by hand."""
    lines = list(DEMO_LINES)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        how = draw(
            st.sampled_from(
                ["delete", "duplicate", "dedent", "indent", "value", "truncate", "swap", "insert"]
            )
        )
        line = lines[index]
        if how == "delete":
            del lines[index]
        elif how == "duplicate":
            lines.insert(index, line)
        elif how == "dedent":
            lines[index] = line.lstrip()
        elif how == "indent":
            lines[index] = "  " + line
        elif how == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[index] = (
                f"{key}: {draw(st.one_of(SCALARS.map(json.dumps), ANY_TEXT.map(lambda s: s.replace(chr(10), ' '))))}"
            )
        elif how == "truncate":
            lines = [*lines[:index], line[: draw(st.integers(min_value=0, max_value=len(line)))]]
        elif how == "swap":
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            lines.insert(index, draw(ANY_TEXT.map(lambda s: s.replace(chr(10), " "))))
        if not lines:
            break
    return "\n".join(lines) + "\n"


@settings(FUZZ, max_examples=25)
@given(text=mutated_demo())
def test_a_hand_broken_demo_loads_or_is_refused_with_a_line(sandbox: Sandbox, text: str) -> None:
    load_or_refuse(sandbox, text)


def test_the_demo_itself_loads(sandbox: Sandbox) -> None:
    assert load_or_refuse(sandbox, DEMO.read_text(encoding="utf-8")) is None


# -- reconnect links used by someone else ---------------------------------------------------------------
# tests/web/test_reconnect.py covers tampered, expired, reused and a Google link finished with another
# rep's Google account. The rest of "for someone else": Microsoft, and a link for a provider the rep
# does not have yet (a switch), finished with another rep's account, which must connect nothing for
# either of them.

DEV, BEN, CARLA_EMAIL = "dev@northwind.example", "ben@northwind.example", "carla@northwind.example"


def connection_rows(sandbox: Sandbox, *emails: str) -> list[dict[str, Any]]:
    with sandbox.sessions() as session:
        rows = session.scalars(
            select(CalendarConnection)
            .join(User, User.id == CalendarConnection.user_id)
            .where(User.email.in_(emails))
            .order_by(CalendarConnection.id)
        ).all()
        return [{c.name: getattr(row, c.name) for c in CalendarConnection.__table__.columns} for row in rows]


@pytest.mark.parametrize(
    ("rep", "provider", "signed_in_as", "rep_name"),
    [
        pytest.param(DEV, "microsoft", BEN, "Dev", id="outlook-reconnect-as-another-rep"),
        pytest.param(CARLA_EMAIL, "microsoft", BEN, "Carla", id="new-provider-as-another-rep"),
    ],
)
def test_a_reconnect_link_cannot_connect_someone_elses_account(
    robust: Robust, rep: str, provider: str, signed_in_as: str, rep_name: str
) -> None:
    web, sandbox = robust.web, robust.web.sandbox
    before = connection_rows(sandbox, rep, signed_in_as)

    page = web.consent(web.link(rep, provider), account=signed_in_as)

    assert page.status_code == 403
    text = page.text.replace("&#39;", "'")
    assert f"This link is for {rep_name}'s calendar" in text and f"you signed in as {signed_in_as}" in text
    assert connection_rows(sandbox, rep, signed_in_as) == before  # neither rep's connection changed
    with sandbox.sessions() as session:
        failed = session.scalars(select(AuditEntry).where(AuditEntry.action == "reconnect_failed")).all()
    assert [entry.result for entry in failed] == ["wrong_account"]


def test_a_callback_cannot_finish_in_another_reps_sign_in(robust: Robust) -> None:
    """Two reps each open their own link; Dev's answer from the consent page, sent back with Carla's
    sign-in (her `state`), connects nothing for either of them."""
    web, sandbox = robust.web, robust.web.sandbox
    before = connection_rows(sandbox, CARLA_EMAIL, DEV)
    carla = web.http.get(web.link(CARLA_EMAIL, "microsoft"))
    dev = web.http.get(web.link(DEV, "microsoft"))
    assert carla.status_code == dev.status_code == 302
    carla_state = parse_qs(urlsplit(carla.headers["location"]).query)["state"][0]
    # Dev finishes his own consent; the answer is then sent back with Carla's state instead of his.
    consent_url = dev.headers["location"]
    forms = _Forms()
    forms.feed(web.http.get(consent_url).text)
    form = forms.forms[0]
    back = web.http.post(
        urljoin(consent_url, form["action"]), data={**form["fields"], "account": DEV, "decision": "allow"}
    )
    assert back.status_code == 302
    callback = parse_qs(urlsplit(back.headers["location"]).query)
    swapped = web.http.get(
        f"{web.url}/oauth/microsoft/callback", params={"code": callback["code"][0], "state": carla_state}
    )
    # Dev's code is bound to Dev's PKCE verifier; Carla's sign-in holds hers, so Microsoft refuses it.
    assert swapped.status_code == 502
    assert "nothing was connected" in swapped.text and "AADSTS501481" in swapped.text
    assert connection_rows(sandbox, CARLA_EMAIL, DEV) == before
