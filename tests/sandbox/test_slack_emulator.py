"""The Slack Web API emulator, through the real `slack_sdk` clients over loopback HTTP.

One emulator per module over a World on a SQLite file, emptied before each test; the scenario tests
use the shared `sandbox` fixture (the emulator as `SandboxRuntime` starts it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from calsync.db import make_engine
from calsync.sandbox.scenario import ScenarioError, read_scenario
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.slack_emulator import build_slack_app
from calsync.sandbox.world import World
from calsync.settings import Settings
from tests.conftest import FrozenClock

TOKEN = "xoxb-sandbox-test-0123456789abcdef"
DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@dataclass
class Slack:
    world: World
    url: str
    clock: FrozenClock

    def client(self, token: str | None = TOKEN) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=f"{self.url}/api/", timeout=5)


@pytest.fixture(scope="module")
def slack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slack]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('slack') / 'world.db'}")
    world = World(engine)
    world.create_tables()
    clock = FrozenClock(NOW)
    with BackgroundServer(build_slack_app(world, bot_token=TOKEN, clock=clock)) as server:
        yield Slack(world, server.url, clock)
    engine.dispose()


@pytest.fixture
def slack(slack_server: Slack) -> Slack:
    """The module's emulator with an empty world holding Ana (a rep), Sam (an agent) and a channel."""
    slack_server.world.reset()
    slack_server.clock.now = NOW
    world = slack_server.world
    world.slack_add_user("U0ANA", "Ana@Northwind.example", "Ana Alvarez", tz="Europe/Madrid")
    world.slack_add_user("U0SAM", "sam@northwind.example", "Sam Support")
    world.slack_add_user("U0GONE", "gone@northwind.example", "Gone Person", deleted=True)
    world.slack_add_user("U0OTHERBOT", "", "Standup Bot", is_bot=True)
    world.slack_add_usergroup("S0SUPPORT", "support-agents", ["U0SAM"])
    world.slack_add_channel("C0HELP", "calendar-help")
    return slack_server


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# -- happy paths --------------------------------------------------------------------------------------


async def test_auth_test_names_the_bot(slack: Slack) -> None:
    answer = await slack.client().auth_test()
    assert answer["user_id"] == "U0CALSYNC"
    assert answer["bot_id"] == "B0CALSYNC"
    assert answer["team_id"] == "T0SANDBOX"
    assert answer["url"] == f"{slack.url}/"


async def test_users_info_and_lookup_by_email(slack: Slack) -> None:
    client = slack.client()
    user = (await client.users_info(user="U0ANA"))["user"]
    assert user["profile"]["email"] == "ana@northwind.example"
    assert (user["real_name"], user["is_bot"], user["deleted"], user["tz"]) == (
        "Ana Alvarez",
        False,
        False,
        "Europe/Madrid",
    )
    assert user["tz_offset"] == 3600
    found = (await client.users_lookupByEmail(email="ANA@northwind.example"))["user"]
    assert found["id"] == "U0ANA"
    bot = (await client.users_info(user="U0CALSYNC"))["user"]
    assert bot["is_bot"] is True


async def test_conversations_open_gives_a_stable_dm_per_user(slack: Slack) -> None:
    client = slack.client()
    first = await client.conversations_open(users="U0ANA")
    again = await client.conversations_open(users=["U0ANA"])
    other = await client.conversations_open(users="U0SAM")
    assert first["channel"]["id"] == again["channel"]["id"] == slack.world.slack_dm_channel("U0ANA")
    assert first["channel"]["id"].startswith("D")
    assert (first["already_open"], again["already_open"]) == (False, True)
    assert other["channel"]["id"] != first["channel"]["id"]
    assert slack.world.slack_dm_channel("U0GONE") is None


async def test_post_then_update_shows_the_current_message(slack: Slack) -> None:
    client = slack.client()
    dm = (await client.conversations_open(users="U0ANA"))["channel"]["id"]
    posted = await client.chat_postMessage(
        channel=dm, text="Checking your calendar connection…", blocks=[section("Checking…")]
    )
    assert posted["channel"] == dm
    assert posted["message"]["user"] == "U0CALSYNC"
    updated = await client.chat_update(channel=dm, ts=posted["ts"], text="Google revoked access.")
    assert updated["ts"] == posted["ts"]
    [message] = slack.world.slack_messages(dm)
    assert message.text == "Google revoked access."
    assert message.blocks == [section("Checking…")]  # chat.update keeps blocks it was not given
    assert message.version == 2
    await client.chat_update(channel=dm, ts=posted["ts"], text="Reconnect", blocks=[section("Reconnect")])
    [message] = slack.world.slack_messages(dm)
    assert (message.blocks, message.version, message.ephemeral_for) == ([section("Reconnect")], 3, None)


async def test_timestamps_are_unique_and_increasing_under_a_frozen_clock(slack: Slack) -> None:
    client = slack.client()
    stamps = [(await client.chat_postMessage(channel="C0HELP", text=f"n{n}"))["ts"] for n in range(3)]
    assert stamps[0] == f"{int(NOW.timestamp())}.000000"
    assert [float(ts) for ts in stamps] == sorted({float(ts) for ts in stamps})


async def test_thread_replies_and_broadcast(slack: Slack) -> None:
    client = slack.client()
    user_message_ts = "1764000000.000100"  # the rep's question, which the bot did not post
    reply = await client.chat_postMessage(channel="C0HELP", thread_ts=user_message_ts, text="Looking…")
    await client.chat_postMessage(
        channel="C0HELP", thread_ts=user_message_ts, text="Fixed", reply_broadcast=True
    )
    await client.chat_postMessage(channel="C0HELP", text="unrelated")
    thread = slack.world.slack_messages("C0HELP", thread_ts=user_message_ts)
    assert [(m.text, m.thread_ts, m.reply_broadcast) for m in thread] == [
        ("Looking…", user_message_ts, False),
        ("Fixed", user_message_ts, True),
    ]
    assert reply["message"]["thread_ts"] == user_message_ts
    assert len(slack.world.slack_messages("C0HELP")) == 3


async def test_history_and_replies_read_back_what_was_posted(slack: Slack) -> None:
    client = slack.client()
    question_ts = "1764000000.000200"  # a rep's message, which the sandbox does not hold
    first = await client.chat_postMessage(channel="C0HELP", text="first")
    in_thread = await client.chat_postMessage(channel="C0HELP", thread_ts=question_ts, text="Checking…")
    await client.chat_postMessage(
        channel="C0HELP", thread_ts=question_ts, text="also sent", reply_broadcast=True
    )
    last = await client.chat_postMessage(channel="C0HELP", text="last")
    await client.chat_postEphemeral(channel="C0HELP", user="U0ANA", text="only for Ana")

    history = await client.conversations_history(channel="C0HELP", limit=2)
    assert [m["text"] for m in history["messages"]] == ["last", "also sent"]  # newest first, no ephemeral
    assert history["has_more"] is True
    assert history["messages"][0]["ts"] == last["ts"]
    everything = await client.conversations_history(channel="C0HELP")
    assert [m["text"] for m in everything["messages"]] == ["last", "also sent", "first"]
    assert everything["messages"][-1]["ts"] == first["ts"]

    replies = await client.conversations_replies(channel="C0HELP", ts=question_ts)
    assert replies["messages"][0]["ts"] == in_thread["ts"]
    assert [m["text"] for m in replies["messages"]] == ["Checking…", "also sent"]
    with pytest.raises(SlackApiError) as refused:
        await client.conversations_replies(channel="C0HELP", ts="1764000000.999999")
    assert refused.value.response["error"] == "thread_not_found"


async def test_posting_to_a_user_id_lands_in_their_dm(slack: Slack) -> None:
    posted = await slack.client().chat_postMessage(channel="U0SAM", text="Here is your link")
    assert posted["channel"] == slack.world.slack_dm_channel("U0SAM")
    assert [m.text for m in slack.world.slack_messages(posted["channel"])] == ["Here is your link"]


async def test_ephemeral_message_is_only_for_one_user(slack: Slack) -> None:
    answer = await slack.client().chat_postEphemeral(
        channel="C0HELP", user="U0SAM", text="Ana's report", blocks=[section("*Ana*: revoked")]
    )
    [message] = slack.world.slack_messages("C0HELP")
    assert message.ts == answer["message_ts"]
    assert message.ephemeral_for == "U0SAM"
    with pytest.raises(SlackApiError) as raised:  # an ephemeral message cannot be updated
        await slack.client().chat_update(channel="C0HELP", ts=answer["message_ts"], text="x")
    assert raised.value.response["error"] == "message_not_found"


async def test_views_publish_then_home(slack: Slack) -> None:
    client = slack.client()
    view = {"type": "home", "blocks": [section("Google Calendar: connected")]}
    published = await client.views_publish(user_id="U0ANA", view=view)
    assert published["view"]["id"].startswith("V")
    assert slack.world.slack_home("U0ANA") == view
    assert slack.world.slack_home("U0SAM") is None
    newer = {"type": "home", "blocks": [section("Google Calendar: revoked")]}
    again = await client.views_publish(user_id="U0ANA", view=newer, hash=published["view"]["hash"])
    assert again["view"]["id"] == published["view"]["id"]
    assert slack.world.slack_home("U0ANA") == newer
    with pytest.raises(SlackApiError) as raised:
        await client.views_publish(user_id="U0ANA", view=view, hash=published["view"]["hash"])
    assert raised.value.response["error"] == "hash_conflict"


async def test_usergroup_members_and_permalink(slack: Slack) -> None:
    client = slack.client()
    assert (await client.usergroups_users_list(usergroup="S0SUPPORT"))["users"] == ["U0SAM"]
    posted = await client.chat_postMessage(channel="C0HELP", text="hi")
    link = await client.chat_getPermalink(channel="C0HELP", message_ts=posted["ts"])
    assert link["permalink"] == f"{slack.url}/archives/C0HELP/p{posted['ts'].replace('.', '')}"


async def test_form_bodies_with_json_string_blocks(slack: Slack) -> None:
    blocks = [section("from a form body")]
    answer = await slack.client().api_call(
        "chat.postMessage", data={"channel": "C0HELP", "text": "t", "blocks": json.dumps(blocks)}
    )
    assert answer["message"]["blocks"] == blocks
    assert slack.world.slack_messages("C0HELP")[0].blocks == blocks
    assert slack.world.slack_calls("chat.postMessage")[0].params["blocks"] == blocks


# -- errors -------------------------------------------------------------------------------------------

LONG_TEXT = "x" * 40_001
ERRORS: list[tuple[str, str, dict[str, Any], str]] = [
    ("users-info-unknown", "users_info", {"user": "U0NOBODY"}, "user_not_found"),
    ("lookup-unknown", "users_lookupByEmail", {"email": "nobody@x.example"}, "users_not_found"),
    ("lookup-deleted", "users_lookupByEmail", {"email": "gone@northwind.example"}, "users_not_found"),
    ("open-unknown", "conversations_open", {"users": "U0NOBODY"}, "user_not_found"),
    ("open-deleted", "conversations_open", {"users": "U0GONE"}, "user_disabled"),
    ("open-bot", "conversations_open", {"users": "U0OTHERBOT"}, "cannot_dm_bot"),
    ("post-unknown-channel", "chat_postMessage", {"channel": "C0NOPE", "text": "x"}, "channel_not_found"),
    ("post-unopened-dm", "chat_postMessage", {"channel": "D0NOPE", "text": "x"}, "channel_not_found"),
    ("post-no-text", "chat_postMessage", {"channel": "C0HELP"}, "no_text"),
    ("post-too-long", "chat_postMessage", {"channel": "C0HELP", "text": LONG_TEXT}, "msg_too_long"),
    (
        "blocks-not-list",
        "chat_postMessage",
        {"channel": "C0HELP", "text": "x", "blocks": "{}"},
        "invalid_blocks",
    ),
    (
        "block-without-type",
        "chat_postMessage",
        {"channel": "C0HELP", "text": "x", "blocks": [{"text": "hi"}]},
        "invalid_blocks",
    ),
    (
        "block-unknown-type",
        "chat_postMessage",
        {"channel": "C0HELP", "text": "x", "blocks": [{"type": "banner"}]},
        "invalid_blocks",
    ),
    (
        "header-too-long",
        "chat_postMessage",
        {
            "channel": "C0HELP",
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        },
        "invalid_blocks",
    ),
    (
        "too-many-blocks",
        "chat_postMessage",
        {"channel": "C0HELP", "text": "x", "blocks": [{"type": "divider"}] * 51},
        "too_many_blocks",
    ),
    (
        "bad-thread-ts",
        "chat_postMessage",
        {"channel": "C0HELP", "text": "x", "thread_ts": "soon"},
        "invalid_thread_ts",
    ),
    (
        "update-unknown-ts",
        "chat_update",
        {"channel": "C0HELP", "ts": "1.000001", "text": "x"},
        "message_not_found",
    ),
    (
        "ephemeral-unknown-user",
        "chat_postEphemeral",
        {"channel": "C0HELP", "user": "U0NOBODY", "text": "x"},
        "user_not_found",
    ),
    (
        "ephemeral-unknown-channel",
        "chat_postEphemeral",
        {"channel": "C0NOPE", "user": "U0ANA", "text": "x"},
        "channel_not_found",
    ),
    (
        "publish-unknown-user",
        "views_publish",
        {"user_id": "U0NOBODY", "view": {"type": "home", "blocks": []}},
        "user_not_found",
    ),
    (
        "publish-modal",
        "views_publish",
        {"user_id": "U0ANA", "view": {"type": "modal", "blocks": []}},
        "invalid_arguments",
    ),
    ("usergroup-unknown", "usergroups_users_list", {"usergroup": "S0NOPE"}, "no_such_subteam"),
    (
        "permalink-unknown",
        "chat_getPermalink",
        {"channel": "C0HELP", "message_ts": "1.000001"},
        "message_not_found",
    ),
]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize(
    ("method", "kwargs", "error"), [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS]
)
async def test_errors_answer_like_slack(
    slack: Slack, method: str, kwargs: dict[str, Any], error: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        await getattr(slack.client(), method)(**kwargs)
    assert raised.value.response.status_code == 200
    assert raised.value.response["ok"] is False
    assert raised.value.response["error"] == error
    [call] = slack.world.slack_calls()
    assert (call.ok, call.error) == (False, error)
    assert slack.world.slack_messages() == []  # nothing changed


@pytest.mark.parametrize(
    ("token", "error"), [("xoxb-wrong", "invalid_auth"), (None, "not_authed")], ids=["wrong", "missing"]
)
async def test_a_bad_token_is_refused(slack: Slack, token: str | None, error: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        await slack.client(token).chat_postMessage(channel="C0HELP", text="x")
    assert raised.value.response["error"] == error
    assert slack.world.slack_messages() == []
    assert "xoxb-wrong" not in json.dumps([call.params for call in slack.world.slack_calls()])


async def test_unknown_method(slack: Slack) -> None:
    with pytest.raises(SlackApiError) as raised:
        await slack.client().api_call("chat.scheduleMessage", json={"channel": "C0HELP"})
    assert raised.value.response.status_code == 404
    assert raised.value.response["error"] == "unknown_method"


# -- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "limited"),
    [("*", True), ("chat.postMessage", True), ("users.info", False)],
    ids=["every-method", "this-method", "another-method"],
)
async def test_rate_limit_fault(slack: Slack, endpoint: str, limited: bool) -> None:
    slack.world.add_fault("slack", "rate_limit", endpoint=endpoint, params={"retry_after": 7}, remaining=1)  # type: ignore[arg-type]
    client = slack.client()
    if limited:
        with pytest.raises(SlackApiError) as raised:
            await client.chat_postMessage(channel="C0HELP", text="x")
        assert raised.value.response.status_code == 429
        assert raised.value.response.headers["Retry-After"] == "7"
        assert raised.value.response["error"] == "ratelimited"
        assert slack.world.slack_calls()[-1].error == "ratelimited"
    await client.chat_postMessage(channel="C0HELP", text="x")  # the fault is used up (or elsewhere)
    assert len(slack.world.slack_messages("C0HELP")) == 1


async def test_fault_for_one_person_by_email(slack: Slack) -> None:
    slack.world.add_fault("slack", "unavailable", account_email="ana@northwind.example")
    client = slack.client()
    with pytest.raises(SlackApiError) as raised:
        await client.users_info(user="U0ANA")
    assert raised.value.response.status_code == 503
    assert (await client.users_info(user="U0SAM"))["user"]["id"] == "U0SAM"


async def test_a_hold_answers_nothing_until_the_fault_is_removed(slack: Slack) -> None:
    """A latch for tests: the held call is carried out as usual once the fault is gone."""
    hold = slack.world.add_fault("slack", "hold", endpoint="chat.postMessage")  # type: ignore[arg-type]
    client = slack.client()
    held = asyncio.create_task(client.chat_postMessage(channel="C0HELP", text="held"))
    for _ in range(3):  # other methods are answered meanwhile; the held one still waits
        assert (await client.users_info(user="U0SAM"))["user"]["id"] == "U0SAM"
    assert not held.done() and slack.world.slack_messages("C0HELP") == []
    slack.world.remove_fault(hold)
    assert (await held)["ok"] is True
    assert [m.text for m in slack.world.slack_messages("C0HELP")] == ["held"]


# -- the call log -------------------------------------------------------------------------------------


async def test_call_log_keeps_params_in_order_and_never_the_token(slack: Slack) -> None:
    client = slack.client()
    await client.auth_test()
    await client.chat_postMessage(channel="C0HELP", text="hello")
    async with httpx.AsyncClient() as raw:  # a token in the query string and in a form body
        await raw.post(f"{slack.url}/api/auth.test?token={TOKEN}")
        await raw.post(f"{slack.url}/api/users.info", data={"token": TOKEN, "user": "U0ANA"})
    calls = slack.world.slack_calls()
    assert [(c.method, c.ok) for c in calls] == [
        ("auth.test", True),
        ("chat.postMessage", True),
        ("auth.test", True),
        ("users.info", True),
    ]
    assert calls[1].params == {"channel": "C0HELP", "text": "hello"}
    assert calls[1].at == NOW
    assert [c.method for c in slack.world.slack_calls("auth.test")] == ["auth.test"] * 2
    logged = json.dumps([c.params for c in calls]) + json.dumps(
        [(r.path, r.query, r.body) for r in slack.world.requests("slack")]
    )
    assert TOKEN not in logged
    assert "token=%5Bredacted%5D" in logged


# -- response URLs ------------------------------------------------------------------------------------


async def test_response_url_posts_ephemeral_and_in_channel(slack: Slack) -> None:
    url = slack.world.slack_response_url(slack.url, channel="C0HELP", user_id="U0ANA")
    webhook = AsyncWebhookClient(url)
    first = await webhook.send(text="Only you can see this")
    second = await webhook.send(text="For everyone", response_type="in_channel", blocks=[section("hi")])
    assert (first.status_code, second.status_code) == (200, 200)
    messages = slack.world.slack_messages("C0HELP")
    assert [(m.text, m.ephemeral_for) for m in messages] == [
        ("Only you can see this", "U0ANA"),
        ("For everyone", None),
    ]
    assert [c.method for c in slack.world.slack_calls()] == ["response_url", "response_url"]
    assert all(r.path == "/response/[redacted]" for r in slack.world.requests("slack"))


async def test_response_url_replaces_and_deletes_the_original(slack: Slack) -> None:
    posted = await slack.client().chat_postMessage(channel="C0HELP", text="Checking…", blocks=[section("…")])
    url = slack.world.slack_response_url(
        slack.url, channel="C0HELP", user_id="U0ANA", message_ts=posted["ts"]
    )
    webhook = AsyncWebhookClient(url)
    await webhook.send(text="Reconnected", replace_original=True)
    [message] = slack.world.slack_messages("C0HELP")
    assert (message.ts, message.text, message.blocks, message.version) == (posted["ts"], "Reconnected", [], 2)
    await webhook.send(delete_original=True)
    assert slack.world.slack_messages("C0HELP") == []


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("unknown", 404, "not_found"),
        ("expired", 404, "expired_url"),
        ("used-up", 404, "used_url"),
        ("no-text", 400, "no_text"),
    ],
    ids=["unknown", "expired", "used-up", "no-text"],
)
async def test_response_url_errors(slack: Slack, case: str, status: int, error: str) -> None:
    url = slack.world.slack_response_url(slack.url, channel="C0HELP", user_id="U0ANA", issued_at=NOW)
    body: dict[str, Any] = {"text": "hi"}
    if case == "unknown":
        url = f"{slack.url}/response/not-a-token"
    elif case == "expired":
        slack.clock.advance(minutes=31)
    elif case == "used-up":
        for _ in range(5):
            assert (await AsyncWebhookClient(url).send_dict(body)).status_code == 200
    else:
        body = {"response_type": "in_channel"}
    answer = await AsyncWebhookClient(url).send_dict(body)
    assert answer.status_code == status
    assert json.loads(answer.body)["error"] == error


# -- scenarios and the runtime ------------------------------------------------------------------------


async def test_demo_scenario_users_are_slack_users(sandbox: Any) -> None:
    sandbox.load_file(DEMO)
    endpoints = sandbox.endpoints
    client = AsyncWebClient(
        token=endpoints.slack_bot_token, base_url=f"{endpoints.slack_url}/api/", timeout=5
    )
    ana = (await client.users_lookupByEmail(email="ana@northwind.example"))["user"]
    assert (ana["id"], ana["real_name"]) == ("U0DEMOANA", "Ana Alvarez")
    ghost = (await client.users_info(user="U0DEMOGHOST"))["user"]
    assert ghost["real_name"] == "Gus Ghost"
    assert (await client.usergroups_users_list(usergroup="S0SUPPORT"))["users"] == ["U0DEMOSAM"]
    posted = await client.chat_postMessage(channel="C0HELP", text="hello")
    assert sandbox.world.slack_messages("C0HELP")[0].ts == posted["ts"]
    sandbox.load_file(DEMO)  # loading again replaces the workspace
    assert sandbox.world.slack_messages() == []
    assert sandbox.world.slack_user("U0DEMOGHOST") is not None


def test_endpoints_point_settings_at_the_slack_emulator(sandbox: Any) -> None:
    endpoints = sandbox.endpoints
    assert endpoints.slack_bot_token.startswith("xoxb-sandbox-")
    plain = Settings(_env_file=None).model_copy(update={"slack_bot_token": None})  # type: ignore[call-arg]
    settings = endpoints.apply(plain)
    assert settings.slack_api_url == f"{endpoints.slack_url}/api/"
    assert settings.slack_bot_token.get_secret_value() == endpoints.slack_bot_token
    assert settings.slack_signing_secret.get_secret_value() == endpoints.slack_signing_secret
    real = plain.model_copy(update={"slack_bot_token": SecretStr("xoxb-real")})  # a real workspace
    kept = endpoints.apply(real)
    assert (kept.slack_api_url, kept.slack_bot_token) == (real.slack_api_url, real.slack_bot_token)
    assert kept.google_api_url == endpoints.google_url
    environment = endpoints.environment()
    assert environment["SLACK_API_URL"] == f"{endpoints.slack_url}/api/"
    assert environment["SLACK_BOT_TOKEN"] == endpoints.slack_bot_token
    assert environment["SLACK_SIGNING_SECRET"] == endpoints.slack_signing_secret


BAD_SLACK_SECTIONS = [
    (
        "unknown-member",
        "slack:\n  usergroups:\n    - {id: S0X, handle: x, members: [U0NOBODY]}\n",
        "line 3: slack.usergroups.0.members.0: U0NOBODY is neither",
    ),
    (
        "duplicate-id",
        "users:\n  - {email: a@x.example, slack_user_id: U0A}\nslack:\n  users:\n    - {id: U0A}\n",
        "line 5: slack.users.0.id: U0A is used twice",
    ),
    ("bad-user-id", "slack:\n  users:\n    - {id: nope}\n", "line 3: slack.users.0.id"),
    ("unknown-field", "slack:\n  people: []\n", "line 2: slack.people"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [case[1:] for case in BAD_SLACK_SECTIONS],
    ids=[case[0] for case in BAD_SLACK_SECTIONS],
)
def test_bad_slack_sections_are_refused_with_their_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        read_scenario(path)
