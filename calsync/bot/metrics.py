"""The backlog's figures as Prometheus metrics, read from the `Backlog` at each scrape (nothing is
updated on the path of a request). Registered by the composition root on the app's own registry,
served at `GET /metrics` (README, *Metrics*)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from calsync.bot.backlog import Figures
from calsync.store.questions import QueueFigures


class BacklogCollector(Collector):
    def __init__(self, figures: Callable[[], Figures]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        now = self.figures()
        depth = GaugeMetricFamily(
            "calsync_backlog_depth",
            "Pieces of work held for a workspace, waiting and running (workspaces holding none are left out).",
            labels=["workspace"],
        )
        for workspace, held in sorted(now.depth_by_workspace.items()):
            depth.add_metric([workspace], held)
        yield depth
        yield GaugeMetricFamily(
            "calsync_backlog_waiting", "Pieces of work waiting for their turn.", now.waiting
        )
        yield GaugeMetricFamily("calsync_backlog_running", "Pieces of work running.", now.running)
        yield GaugeMetricFamily(
            "calsync_backlog_oldest_wait_seconds",
            "Seconds the oldest waiting piece of work has waited since it was admitted (0: none waits).",
            now.oldest_wait_seconds,
        )
        limits = GaugeMetricFamily(
            "calsync_backlog_limit",
            "Pieces of work held at most, per workspace and overall.",
            labels=["scope"],
        )
        limits.add_metric(["workspace"], now.per_workspace_limit)
        limits.add_metric(["overall"], now.overall_limit)
        yield limits
        completed = CounterMetricFamily(
            "calsync_work_completed", "Pieces of work run to the end, by kind.", labels=["kind"]
        )
        failed = CounterMetricFamily(
            "calsync_work_failed", "Pieces of work that ended with an error, by kind.", labels=["kind"]
        )
        for kind, count in now.completed.items():
            completed.add_metric([kind], count)
        for kind, count in now.failed.items():
            failed.add_metric([kind], count)
        yield completed
        yield failed
        shed = CounterMetricFamily(
            "calsync_work_shed",
            "Pieces of work refused at once (never run; the person was told), by kind and the limit reached.",
            labels=["kind", "limit"],
        )
        for (kind, limit), count in now.shed.items():
            shed.add_metric([kind, limit], count)
        yield shed


class QuestionQueueCollector(Collector):
    """The answer queue, read from the database at each scrape (so every process shows the same
    queue), and the questions this process shed."""

    def __init__(self, figures: Callable[[], QueueFigures], shed: Callable[[], int]) -> None:
        self.figures = figures
        self.shed = shed

    def collect(self) -> Iterator[Metric]:
        now = self.figures()
        waiting = GaugeMetricFamily(
            "calsync_questions_waiting",
            "Questions acked and not yet answered, by workspace (every process; workspaces with none left out).",
            labels=["workspace"],
        )
        for workspace, count in sorted(now.waiting_by_workspace.items()):
            waiting.add_metric([workspace or "unknown"], count)
        yield waiting
        yield GaugeMetricFamily(
            "calsync_questions_oldest_wait_seconds",
            "Seconds the oldest unanswered question has waited since its ack (0: none waits).",
            now.oldest_wait_seconds,
        )
        yield GaugeMetricFamily(
            "calsync_questions_answered_last_minute",
            "Questions answered in the last 60 s by every answer worker (answers/s = this / 60).",
            now.answered_last_minute,
        )
        yield GaugeMetricFamily(
            "calsync_questions_given_up",
            "Unanswered questions whose answering failed too often to try again (see the workers' logs).",
            now.given_up,
        )
        yield CounterMetricFamily(
            "calsync_questions_shed",
            "Questions this process did not queue because the backlog was full (the rep was told).",
            self.shed(),
        )
