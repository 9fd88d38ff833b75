"""The App Home tab: the rep's calendar status at a glance, with Reconnect and Check again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from calsync.diagnostics.answer import Answer
from calsync.diagnostics.findings import Finding, Severity
from calsync.render import answers, kit
from calsync.render.kit import (
    MAX_HOME_BLOCKS,
    SEVERITY_EMOJI,
    escape_mrkdwn,
)

# -- App Home ---------------------------------------------------------------------------------------

_HOME_ROWS = (("connection", "Connection"), ("calendar", "Calendar"), ("sync", "Last sync"))
_ASK_LINE = (
    "💬 Ask me anything about calendar sync: write to me in the *Messages* tab, or @mention me in a "
    "help channel. `/calsync help` lists the commands."
)


def _home_row(label: str, findings: Sequence[Finding]) -> str:
    worst = kit.worst(findings)
    if worst is None:
        return f"❔ *{label}*: not checked"
    shown = [f for f in findings if f.severity is worst]
    summaries = " ".join(escape_mrkdwn(f.summary) for f in shown[:3])
    line = f"{SEVERITY_EMOJI[worst]} *{label}*: {summaries}"
    hint = next((f.hint for f in shown if f.hint and worst is not Severity.OK), "")
    if hint:
        line += f"\n      → _{escape_mrkdwn(hint)}_"
    return kit.truncate(line, 1000)


def home_view(answer: Answer | None, *, name: str = "", not_a_user: bool = False) -> dict[str, Any]:
    """The App Home tab: the rep's calendar status at a glance, with Reconnect and Check again."""
    greeting = f"Hi {name.strip()} 👋" if name.strip() else "Hi 👋"
    blocks: list[dict[str, Any]] = [kit.header("📅 Your calendar sync")]
    if not_a_user:
        blocks.append(
            kit.section(
                f"{escape_mrkdwn(greeting)}\nThis Slack account isn't linked to a SalesPartner user, so I "
                "can't check a calendar for it. Please ask SalesPartner support to link your Slack "
                "account to your SalesPartner user."
            )
        )
        return {"type": "home", "blocks": blocks}
    if answer is None:
        blocks.append(
            kit.section(f"{escape_mrkdwn(greeting)}\nOpen this tab again to check your calendar connection.")
        )
        blocks.append(kit.context(_ASK_LINE))
        return {"type": "home", "blocks": blocks}

    ids = kit.ActionIds()
    worst = kit.worst(answer.findings)
    emoji = SEVERITY_EMOJI[worst] if worst is not None else "❔"
    blocks.append(kit.section(f"{escape_mrkdwn(greeting)}\n{emoji} *{escape_mrkdwn(answer.headline)}*"))
    rows = [
        _home_row(label, [f for f in answer.findings if f.check == check or f.code.startswith(f"{check}.")])
        for check, label in _HOME_ROWS
    ]
    blocks.extend(kit.section(text) for text in kit.pack(rows, separator="\n\n"))
    row_checks = {check for check, _ in _HOME_ROWS}
    others = [
        f
        for f in answer.findings
        if f.check not in row_checks and f.severity in (Severity.ERROR, Severity.WARNING, Severity.UNKNOWN)
    ]
    if others:
        lines = ["*Also worth a look*", *(answers.finding_line(f) for f in others[:10])]
        blocks.extend(kit.section(text) for text in kit.pack(lines)[:5])
    blocks.append(
        kit.context(kit.slack_date(answer.checked_at, "Checked {date_short_pretty} {time}", "Checked "))
    )
    buttons = answers.reconnect_buttons(answer, ids)
    buttons.append(answers.check_again_button(ids, None))
    blocks.extend(kit.actions(buttons))
    blocks.append(kit.divider())
    blocks.append(kit.context(_ASK_LINE))
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}
