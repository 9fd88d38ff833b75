"""The backlog end to end: the real app (composition root, Bolt, uvicorn) with one piece of work at a
time, 2 per workspace and 3 overall; signed DMs and commands from several workspaces; the answers
held in the Slack emulator (a `hold` fault on `chat.update`, so the first answer cannot finish until
the test lets go). Over-limit questions get the plain "ask again in a minute" reply and are never
diagnosed; the others are answered; `/metrics` shows the figures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from calsync.app import build_bolt_app, build_engine_and_bot, build_troubleshooter, build_web_app
from calsync.render.replies import TOO_BUSY_TO_ACT, TOO_BUSY_TO_ANSWER
from calsync.sandbox.server import BackgroundServer
from calsync.syncbackend.models import AuditEntry
from tests.bot.conftest import SlackHarness, bot_settings, load_demo, wait_for
from tests.harness import Sandbox

REPS = {
    "carla": "U0DEMOCARLA",
    "ana": "U0DEMOANA",
    "leo": "U0DEMOLEO",
    "ben": "U0DEMOBEN",
    "maya": "U0DEMOMAYA",
    "sam": "U0DEMOSAM",
}
PER_WORKSPACE, OVERALL = 2, 3
Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class BacklogApp:
    slack: SlackHarness

    def metrics(self) -> Figures:
        response = self.slack.http.get(f"{self.slack.url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }


def total(figures: Figures, name: str) -> float:
    return sum(value for (metric, _), value in figures.items() if metric == name)


def accounted(figures: Figures) -> float:
    """Every piece of work the backlog has decided on: held, finished or shed."""
    return sum(
        total(figures, name)
        for name in (
            "calsync_backlog_depth",
            "calsync_work_completed_total",
            "calsync_work_failed_total",
            "calsync_work_shed_total",
        )
    )


@pytest.fixture(scope="module")
def backlog_server(sandbox_session: Sandbox) -> Iterator[SlackHarness]:
    settings = bot_settings(
        sandbox_session,
        CALSYNC_WORK_CONCURRENCY="1",
        CALSYNC_BACKLOG_PER_WORKSPACE=str(PER_WORKSPACE),
        CALSYNC_BACKLOG_MAX=str(OVERALL),
    )
    services = sandbox_session.services(settings)
    troubleshooter = build_troubleshooter(services)
    _, bot = build_engine_and_bot(services, troubleshooter)
    bolt_app = build_bolt_app(services, bot)
    assert bolt_app is not None
    with BackgroundServer(build_web_app(services, bolt_app, troubleshooter, bot=bot)) as server:
        yield SlackHarness(sandbox_session, server.url, sandbox_session.endpoints.slack_signing_secret)


@pytest.fixture
def app(backlog_server: SlackHarness, sandbox: Sandbox) -> Iterator[BacklogApp]:
    load_demo(sandbox)
    yield BacklogApp(backlog_server)
    sandbox.world.clear_faults()  # nothing stays held, whatever happened


def decided_beyond(app: BacklogApp, seen: float) -> bool:
    return accounted(app.metrics()) > seen


def answered(slack: SlackHarness, channel: str) -> bool:
    """The bot's message in `channel` is an answer (the placeholder replaced)."""
    return any("Checking" not in m.text for m in slack.sandbox.world.slack_messages(channel))


def told_busy(slack: SlackHarness, rep: str, kind: str, channel: str) -> bool:
    """The shed reply: in the DM for a question, privately (ephemeral) for a command."""
    if kind == "dm":
        return any(TOO_BUSY_TO_ANSWER in m.text for m in slack.sandbox.world.slack_messages(channel))
    return any(TOO_BUSY_TO_ACT in m.text for m in slack.ephemeral_for(REPS[rep], channel))


def audited(sandbox: Sandbox, slack_user_id: str) -> list[str]:
    with sandbox.sessions() as session:
        return list(session.scalars(select(AuditEntry.action).where(AuditEntry.actor == slack_user_id)))


@pytest.mark.parametrize(
    ("arrivals", "shed"),
    [
        ("carla:dm:T1 ana:dm:T2", {}),
        ("carla:dm:T1 ana:dm:T1 leo:dm:T1 sam:command:T1", {"leo": "workspace", "sam": "workspace"}),
        ("carla:dm:T1 ana:dm:T1 leo:dm:T2 ben:dm:T3", {"ben": "overall"}),
        ("carla:dm:T1 ana:dm:T1 leo:dm:T1 ben:dm:T1 maya:dm:T2", {"leo": "workspace", "ben": "workspace"}),
    ],
    ids=["within-limits", "workspace-full", "overall-full", "a-flooded-workspace-leaves-room-for-another"],
)
def test_over_limit_work_is_shed_plainly_and_the_rest_answered(
    app: BacklogApp, sandbox: Sandbox, arrivals: str, shed: dict[str, str]
) -> None:
    """`rep:kind:workspace`, sent in this order, each once the backlog has decided on the one before;
    the first answer is held until every arrival is in."""
    slack = app.slack
    pieces = [tuple(item.split(":")) for item in arrivals.split()]
    kinds = {rep: kind for rep, kind, _ in pieces}
    admitted = [(rep, team) for rep, _, team in pieces if rep not in shed]
    before = app.metrics()
    hold = sandbox.world.add_fault("slack", "hold", endpoint="chat.update")  # type: ignore[arg-type]
    channels: dict[str, str] = {}
    for rep, kind, team in pieces:
        seen = accounted(app.metrics())
        if kind == "dm":
            _, channels[rep] = slack.dm(REPS[rep], "why isn't my appointment showing?", team_id=team)
        else:
            _, channels[rep] = slack.command(REPS[rep], "diagnose", team_id=team)
        wait_for(partial(decided_beyond, app, seen), what=f"the backlog to take {rep}'s {kind}")
    for rep in shed:
        wait_for(partial(told_busy, slack, rep, kinds[rep], channels[rep]), what=f"{rep}'s busy reply")

    sandbox.clock.now += timedelta(seconds=30)  # every piece was admitted at the frozen moment before
    during = app.metrics()
    depth: dict[str, float] = {}
    for _, team in admitted:
        depth[team] = depth.get(team, 0) + 1
    assert {
        labels[0][1]: n for (name, labels), n in during.items() if name == "calsync_backlog_depth"
    } == depth
    running, waiting = during[("calsync_backlog_running", ())], during[("calsync_backlog_waiting", ())]
    assert (running, waiting) == (1, len(admitted) - 1)  # the first is held, the others wait their turn
    assert during[("calsync_backlog_oldest_wait_seconds", ())] == (30.0 if waiting else 0.0)
    for limit in ("workspace", "overall"):
        for kind, label in (("dm", "question"), ("command", "command")):
            key = ("calsync_work_shed_total", (("kind", label), ("limit", limit)))
            expected = sum(1 for rep, k, _ in pieces if k == kind and shed.get(rep) == limit)
            assert during[key] - before[key] == expected, key

    sandbox.world.remove_fault(hold)
    for rep, _ in admitted:
        wait_for(partial(answered, slack, channels[rep]), what=f"{rep}'s answer")
    completed = ("calsync_work_completed_total", (("kind", "question"),))
    after = wait_for(
        lambda: ((m := app.metrics())[completed] - before[completed] == len(admitted) and m) or None,
        what="every admitted question completed",
    )
    assert total(after, "calsync_backlog_depth") == 0 and after[("calsync_backlog_waiting", ())] == 0

    for rep, _ in admitted:
        assert audited(sandbox, REPS[rep]) != []  # diagnosed
    for rep in shed:  # shed work never ran: no diagnosis, no "Checking…", one plain reply
        assert audited(sandbox, REPS[rep]) == []
        if kinds[rep] == "dm":
            messages = slack.sandbox.world.slack_messages(channels[rep])
            assert [TOO_BUSY_TO_ANSWER in m.text for m in messages] == [True]
