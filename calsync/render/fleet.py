"""The fleet's words, for agents: what each state means, causes in plain words, `/calsync status`
(Block Kit, ephemeral), the chart of broken connections (inline SVG built here, no script, no
library), and the rows of the resolution-stats CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

from calsync.diagnostics.fleet import STATES, Fleet, State, StatsRow
from calsync.render.incidents import incident_line
from calsync.render.kit import (
    ACTION_OPEN_FLEET,
    Message,
    actions,
    button,
    context,
    error_message,
    escape_mrkdwn,
    header,
    section,
    slack_date,
)

STATE_LABELS: dict[State, str] = {
    "no_connection": "No connection",
    "needs_reconnect": "Needs reconnect",
    "duplicates": "Duplicates",
    "failing": "Failing",
    "healthy": "Healthy",
}
STATE_EMOJI: dict[State, str] = {
    "no_connection": ":white_circle:",
    "needs_reconnect": ":red_circle:",
    "duplicates": ":large_orange_circle:",
    "failing": ":large_yellow_circle:",
    "healthy": ":large_green_circle:",
}
STATE_MEANINGS: dict[State, str] = {
    "no_connection": "no active calendar connection: appointments go nowhere",
    "needs_reconnect": "an active connection is disconnected or holds no sign-in: the rep must sign in again",
    "duplicates": "more than one active connection: every appointment lands twice",
    "failing": "connected, but the newest sync run of the last week failed (or the connection is in error)",
    "healthy": "one active connection whose newest run this week did not fail",
}
CAUSE_WORDS: dict[str, str] = {
    "revoked": "access revoked",
    "password_changed": "password changed",
    "expired": "sign-in expired",
    "inactive": "unused for 90 days",
    "consent_removed": "consent removed by an admin",
    "mfa_required": "MFA or Conditional Access",
    "interaction_required": "must sign in again",
    "account_deleted": "account deleted",
    "disconnected": "disconnected",
    "multiple_active": "more than one active connection",
    "invalid_grant": "authorization no longer works",
    "rate_limited": "provider rate limiting",
    "provider_unavailable": "provider down",
    "timeout": "provider not answering",
    "malformed_response": "unreadable provider answer",
    "not_found": "selected calendar gone",
    "permission_denied": "calendar not writable",
    "error": "sync error",
}
STATS_COLUMNS = (
    "cause",
    "article",
    "answered",
    "helped",
    "not_helped",
    "reconnects_started",
    "reconnects_completed",
    "fixed_within_24h",
)


def cause_words(cause: str | None) -> str:
    if not cause:
        return ""
    return CAUSE_WORDS.get(cause, cause.replace("_", " "))


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else slack_date(moment, "{date_short_pretty} {time}", "")


# -- /calsync status ----------------------------------------------------------------------------------


def status_message(fleet: Fleet, fleet_url: str | None) -> Message:
    """The team's calendar sync at a glance, for the agent who asked (ephemeral)."""
    counts = "\n".join(
        f"{STATE_EMOJI[state]} *{STATE_LABELS[state]}*: {fleet.counts[state]}" for state in STATES
    )
    blocks = [
        header("Calendar sync across the team"),
        section(f"{fleet.total} reps, {fleet.broken} with a broken connection\n{counts}"),
    ]
    if fleet.incidents:
        blocks.append(
            section(
                "*Open incidents*\n"
                + "\n".join(f"• {escape_mrkdwn(line)}" for line in incident_lines(fleet)[:5])
            )
        )
    if fleet.causes:
        top = ", ".join(f"{escape_mrkdwn(cause_words(cause))} ({n})" for cause, n in fleet.causes[:3])
        blocks.append(section(f"*Most common causes:* {top}"))
    if fleet.orgs:
        top = ", ".join(f"{escape_mrkdwn(org)} ({n})" for org, n in fleet.orgs[:3])
        blocks.append(section(f"*Organisations with broken connections:* {top}"))
    blocks.append(context(f"Last health sweep: {_when(fleet.last_sweep)}"))
    if fleet_url:
        blocks.extend(actions([button("Open fleet view", ACTION_OPEN_FLEET, url=fleet_url, style="primary")]))
    text = f"Calendar sync: {fleet.broken} of {fleet.total} reps have a broken connection."
    return Message(text=text, blocks=blocks)


def status_refused() -> Message:
    return error_message(
        "Only support agents can see the team's status. Try `/calsync diagnose` for your own."
    )


# -- the chart ----------------------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 640, 180, 28


def incident_lines(fleet: Fleet) -> list[str]:
    """The open incidents as agents read them (`calsync.render.incidents.incident_line`)."""
    return [incident_line(incident) for incident in fleet.incidents]


def chart_svg(series: Sequence[tuple[datetime, int]]) -> Markup:
    """A bar per bucket of connections with a failed run, as inline SVG (numbers and dates only, all
    escaped); a title per bar says its bucket and count, a caption sums it up for screen readers."""
    if not series:
        return Markup("")
    peak = max(max(n for _, n in series), 1)
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD
    step = inner_w / len(series)
    bars = []
    for index, (start, n) in enumerate(series):
        height = inner_h * n / peak
        x = CHART_PAD + index * step
        y = CHART_PAD + inner_h - height
        label = f"{start.astimezone(UTC):%a %d %b %H:%M} UTC: {n} connection{'s' if n != 1 else ''}"
        bars.append(
            Markup(
                '<rect class="bar" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="#c0392b">'
                "<title>{}</title></rect>"
            ).format(x + 1, y, max(step - 2, 1), height, label)
        )
    first, last = series[0][0], series[-1][0]
    axis = Markup(
        '<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" stroke="#555"/>'
        '<text x="{p}" y="{t}" font-size="11" fill="#333">{first}</text>'
        '<text x="{r}" y="{t}" font-size="11" fill="#333" text-anchor="end">{last}</text>'
        '<text x="{p}" y="16" font-size="11" fill="#333">{peak} max</text>'
    ).format(
        p=CHART_PAD,
        r=CHART_WIDTH - CHART_PAD,
        b=CHART_PAD + inner_h,
        t=CHART_HEIGHT - 8,
        first=f"{first.astimezone(UTC):%a %d %b}",
        last=f"{last.astimezone(UTC):%a %d %b %H:%M} UTC",
        peak=peak,
    )
    total = sum(n for _, n in series)
    summary = escape(
        f"Connections with a failed sync run, per 6 hours over the last week (peak {peak}, {total} in all)."
    )
    return Markup(
        '<svg class="chart" role="img" aria-label="{s}" viewBox="0 0 {w} {h}" width="100%" '
        'xmlns="http://www.w3.org/2000/svg">{axis}{bars}</svg>'
    ).format(s=summary, w=CHART_WIDTH, h=CHART_HEIGHT, axis=axis, bars=Markup("").join(bars))


# -- the CSV ------------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    """A cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def stats_csv(rows: Sequence[StatsRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(STATS_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                _cell(row.cause),
                _cell(row.article),
                row.answered,
                row.helped,
                row.not_helped,
                row.reconnects_started,
                row.reconnects_completed,
                row.fixed_within_24h,
            ]
        )
    return out.getvalue()


__all__ = [
    "CAUSE_WORDS",
    "STATE_LABELS",
    "STATE_MEANINGS",
    "STATS_COLUMNS",
    "cause_words",
    "chart_svg",
    "stats_csv",
    "status_message",
    "status_refused",
]
