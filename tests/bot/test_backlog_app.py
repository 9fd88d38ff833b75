"""The question backlog end to end: the real app (composition root, Bolt, uvicorn, its answer worker)
with 2 questions per workspace and 3 overall waiting in the answer queue; signed DMs from several
workspaces; the answers held in the Slack emulator (a `hold` fault on `chat.update`, so no answer can
finish until the test lets go). Over-limit questions get the plain "ask again in a minute" reply and
are never diagnosed; the others are answered; `/metrics` shows the queue. (Commands and clicks have
the per-process backlog of `bot/work.py`, tested in test_backlog.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from calsync.app import build_bolt_app, build_engine_and_bot, build_troubleshooter, build_web_app
from calsync.render.replies import TOO_BUSY_TO_ANSWER
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
    """Every question the queue has decided on: waiting, answered or shed."""
    return sum(
        total(figures, name)
        for name in (
            "calsync_questions_waiting",
            "calsync_questions_answered_last_minute",
            "calsync_questions_shed_total",
        )
    )


@pytest.fixture(scope="module")
def backlog_server(sandbox_session: Sandbox) -> Iterator[SlackHarness]:
    settings = bot_settings(
        sandbox_session,
        CALSYNC_BACKLOG_PER_WORKSPACE=str(PER_WORKSPACE),
        CALSYNC_BACKLOG_MAX=str(OVERALL),
    )
    services = sandbox_session.services(settings)
    troubleshooter = build_troubleshooter(services)
    _, bot = build_engine_and_bot(services, troubleshooter)
    bolt_app = build_bolt_app(services, bot)
    assert bolt_app is not None
    with BackgroundServer(
        build_web_app(services, bolt_app, troubleshooter, bot=bot), lifespan=True
    ) as server:
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


def told_busy(slack: SlackHarness, channel: str) -> bool:
    """The shed reply, in the DM."""
    return any(TOO_BUSY_TO_ANSWER in m.text for m in slack.sandbox.world.slack_messages(channel))


def audited(sandbox: Sandbox, slack_user_id: str) -> list[str]:
    with sandbox.sessions() as session:
        return list(session.scalars(select(AuditEntry.action).where(AuditEntry.actor == slack_user_id)))


@pytest.mark.parametrize(
    ("arrivals", "shed"),
    [
        ("carla:T1 ana:T2", {}),
        ("carla:T1 ana:T1 leo:T1 sam:T1", {"leo": "workspace", "sam": "workspace"}),
        ("carla:T1 ana:T1 leo:T2 ben:T3", {"ben": "overall"}),
        ("carla:T1 ana:T1 leo:T1 ben:T1 maya:T2", {"leo": "workspace", "ben": "workspace"}),
    ],
    ids=["within-limits", "workspace-full", "overall-full", "a-flooded-workspace-leaves-room-for-another"],
)
def test_over_limit_work_is_shed_plainly_and_the_rest_answered(
    app: BacklogApp, sandbox: Sandbox, arrivals: str, shed: dict[str, str]
) -> None:
    """`rep:workspace`, sent in this order, each once the queue has decided on the one before; no
    answer can finish until every arrival is in."""
    slack = app.slack
    pieces = [tuple(item.split(":")) for item in arrivals.split()]
    admitted = [(rep, team) for rep, team in pieces if rep not in shed]
    before = app.metrics()
    hold = sandbox.world.add_fault("slack", "hold", endpoint="chat.update")  # type: ignore[arg-type]
    channels: dict[str, str] = {}
    for rep, team in pieces:
        seen = accounted(app.metrics())
        _, channels[rep] = slack.dm(REPS[rep], "why isn't my appointment showing?", team_id=team)
        wait_for(partial(decided_beyond, app, seen), what=f"the queue to take {rep}'s question")
    for rep in shed:
        wait_for(partial(told_busy, slack, channels[rep]), what=f"{rep}'s busy reply")

    sandbox.clock.now += timedelta(seconds=30)  # every question was queued at the frozen moment before
    during = app.metrics()
    depth: dict[str, float] = {}
    for _, team in admitted:
        depth[team] = depth.get(team, 0) + 1
    assert {
        labels[0][1]: n for (name, labels), n in during.items() if name == "calsync_questions_waiting"
    } == depth
    assert during[("calsync_questions_oldest_wait_seconds", ())] == 30.0
    shed_key = ("calsync_questions_shed_total", ())
    assert during[shed_key] - before.get(shed_key, 0) == len(shed)

    sandbox.world.remove_fault(hold)
    for rep, _ in admitted:
        wait_for(partial(answered, slack, channels[rep]), what=f"{rep}'s answer")
    after = wait_for(
        lambda: (total(m := app.metrics(), "calsync_questions_waiting") == 0 and m) or None,
        what="every admitted question answered",
    )
    assert after[("calsync_questions_answered_last_minute", ())] >= len(admitted)

    for rep, _ in admitted:
        assert audited(sandbox, REPS[rep]) != []  # diagnosed
    for rep in shed:  # shed questions never ran: no diagnosis, no "Checking…", one plain reply
        assert audited(sandbox, REPS[rep]) == []
        messages = slack.sandbox.world.slack_messages(channels[rep])
        assert [TOO_BUSY_TO_ANSWER in m.text for m in messages] == [True]
