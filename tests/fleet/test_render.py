"""The fleet's words: `/calsync status` blocks (open incidents only when given), the SVG chart, the CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from calsync.diagnostics.fleet import STATES, Filters, Fleet, StatsRow
from calsync.render.blocks import validate_blocks
from calsync.render.fleet import chart_svg, stats_csv, status_message
from calsync.syncbackend.incidents import IncidentView

NOW = datetime(2026, 12, 4, 9, 12, tzinfo=UTC)


def fleet(**changes: object) -> Fleet:
    values: dict[str, object] = {
        "now": NOW,
        "filters": Filters(),
        "counts": dict(zip(STATES, (3, 7, 1, 2, 40), strict=True)),
        "causes": (("consent_removed", 6), ("revoked", 1), ("provider_unavailable", 2)),
        "orgs": (("tallgrass.example", 7), ("northwind.example", 3)),
        "all_orgs": ("northwind.example", "tallgrass.example"),
        "reps": (),
        "matching": 53,
        "last_sweep": NOW - timedelta(minutes=4),
        "chart": (),
    }
    values.update(changes)
    return Fleet(**values)  # type: ignore[arg-type]


def text(message: object) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)  # type: ignore[attr-defined]


def test_status_counts_causes_orgs_and_the_link() -> None:
    message = status_message(fleet(), "http://127.0.0.1:8000/fleet/abc")
    assert validate_blocks(message.blocks) == []
    body = text(message)
    assert "53 reps, 10 with a broken connection" in body
    assert "consent removed by an admin (6)" in body and "tallgrass.example (7)" in body
    assert "Open incidents" not in body
    assert message.text == "Calendar sync: 10 of 53 reps have a broken connection."
    assert "http://127.0.0.1:8000/fleet/abc" in body


def test_open_incidents_are_listed_when_given_and_escaped() -> None:
    incident = IncidentView(
        id=1,
        kind="org_consent_removed",
        provider="microsoft",
        scope="<tallgrass.example> & co",
        cause_code="consent_removed",
        started_at=NOW - timedelta(minutes=48),
        last_seen_at=NOW,
        affected=7,
        ended_at=None,
    )
    message = status_message(fleet(incidents=(incident,)), None)
    assert validate_blocks(message.blocks) == []
    body = text(message)
    assert "*Open incidents*" in body
    assert "&lt;tallgrass.example&gt; &amp; co: the Microsoft admin removed consent" in body
    assert f"7 people affected since {(NOW - timedelta(minutes=48)).strftime('%H:%M')} UTC" in body
    assert "open_fleet" not in body  # no link without a url


def test_the_chart_is_svg_with_a_bar_per_bucket_and_no_markup_from_data() -> None:
    series = tuple((NOW - timedelta(hours=6 * (27 - i)), i % 5) for i in range(28))
    svg = str(chart_svg(series))
    assert svg.startswith("<svg") and svg.count('<rect class="bar"') == 28
    assert "<script" not in svg and "style=" not in svg
    assert 'aria-label="Connections with a failed sync run, per 6 hours over the last week (peak 4' in svg
    assert str(chart_svg(())) == ""
    # All zero: bars of height 0, no division by zero.
    assert 'height="0.0"' in str(chart_svg(((NOW, 0),)))


@pytest.mark.parametrize(
    ("cause", "shown"),
    [("connection.revoked", "connection.revoked"), ("=HYPERLINK(1)", "'=HYPERLINK(1)"), (None, "")],
)
def test_the_csv_cells(cause: str | None, shown: str) -> None:
    rows = list(csv.reader(io.StringIO(stats_csv([StatsRow(cause, "not-connected", 4, 2, 1, 3, 2, 2)]))))
    assert rows[1] == [shown, "not-connected", "4", "2", "1", "3", "2", "2"]
