"""Block Kit primitives for every Slack message calsync sends: the action-id contract with the
bot's listeners, Block Kit limits, text escaping and truncation, the small builders (section,
button, actions…) and the one-line messages (checking, error, notice, markup, reconnect links).
Pure functions, JSON-ready output (see `render/blocks.py` for the rules they keep)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from calsync.diagnostics.findings import Finding, Severity
from calsync.knowledge.loader import KnowledgeBase, load_articles
from calsync.render import labels

# -- the contract with the bot's listeners ----------------------------------------------------------

ACTION_RECONNECT = "reconnect"  # url button per reconnect action (style primary); value = provider
ACTION_CHECK_AGAIN = "check_again"  # value = json {"article": id | null, "question": str | null}
ACTION_HELPED = "feedback_helped"  # value = json {"diagnosis": id, "article": id | null}
ACTION_NOT_HELPED = "feedback_not_helped"  # same value
ACTION_TALK_TO_SUPPORT = "talk_to_support"  # value = json {"diagnosis": id}
ACTION_DID_YOU_MEAN = "did_you_mean"  # did_you_mean_0, _1…; value = json {"article": id, "question": str}
ACTION_SEND_RECONNECT_LINK = "send_reconnect_link"  # agent only; value = json {"rep": email, "provider": p}
ACTION_OPEN_REPORT = "open_report"  # agent only; url button to the report page
ACTION_OPEN_FLEET = "open_fleet"  # agent only; url button to the fleet page (`/calsync status`)
ACTION_SYNC_NOW = "sync_now"  # value = json {"article": id | null, "question": str | null}
ACTION_DETAILS = "details"  # value = json {"article": id | null, "question": str | null}
ACTION_HOLD_CANCEL = "hold_cancel"  # agent only, support channel; value = json {"hold": id}
ACTION_HOLD_KEEP = "hold_keep"  # same value
# Fixes beyond Reconnect (README, *Fixes beyond Reconnect*); the rep's carry the answer's diagnosis.
ACTION_CHOOSE_CALENDAR = "fix_choose_calendar"  # value = json {"diagnosis", "connection"}: the menu
ACTION_CALENDAR_PICKED = "fix_calendar_picked"  # static_select; option value = json {..., "calendar": key}
ACTION_CALENDAR_UNDO = "fix_calendar_undo"  # value = json {"diagnosis", "connection", "calendar": key}
ACTION_TURN_OFF = "fix_turn_off"  # value = json {"diagnosis", "connection": id | null}
ACTION_TURN_ON = "fix_turn_on"  # value = json {"diagnosis", "connection"}
ACTION_CLEANUP_DRY_RUN = "fix_duplicates_dry_run"  # agent only; value = json {"rep": email}
ACTION_CLEANUP_APPLY = "fix_duplicates_apply"  # agent only; same value

_BASE_ACTIONS = (
    ACTION_RECONNECT,
    ACTION_CHECK_AGAIN,
    ACTION_HELPED,
    ACTION_NOT_HELPED,
    ACTION_TALK_TO_SUPPORT,
    ACTION_DID_YOU_MEAN,
    ACTION_SEND_RECONNECT_LINK,
    ACTION_OPEN_REPORT,
    ACTION_OPEN_FLEET,
    ACTION_SYNC_NOW,
    ACTION_DETAILS,
    ACTION_HOLD_CANCEL,
    ACTION_HOLD_KEEP,
    ACTION_CHOOSE_CALENDAR,
    ACTION_CALENDAR_PICKED,
    ACTION_CALENDAR_UNDO,
    ACTION_TURN_OFF,
    ACTION_TURN_ON,
    ACTION_CLEANUP_DRY_RUN,
    ACTION_CLEANUP_APPLY,
)
# What each kind of button's action_id looks like (a bare id or one with an `_N` suffix).
ACTION_PATTERNS: dict[str, re.Pattern[str]] = {
    base: re.compile(rf"^{re.escape(base)}(?:_\d+)?$") for base in _BASE_ACTIONS
}


def base_action_id(action_id: str) -> str | None:
    """The contract id behind a (possibly suffixed) `action_id`, or None when it is not ours."""
    for base, pattern in ACTION_PATTERNS.items():
        if pattern.match(action_id):
            return base
    return None


# -- Block Kit limits -------------------------------------------------------------------------------

MAX_MESSAGE_BLOCKS = 50
MAX_HOME_BLOCKS = 100
MAX_TEXT = 3000  # section text, context element text
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_URL = 3000
MAX_ACTION_ID = 255
MAX_BLOCK_ID = 255
MAX_FALLBACK_TEXT = 3000
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_OPTIONS = 100  # a static_select's options
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_CONFIRM_TEXT = 300
QUOTED_QUESTION_CHARS = 500  # how much of the rep’s question an answer quotes or a button carries
MAX_DID_YOU_MEAN = 2
MAX_EVIDENCE_VALUE = 300
MAX_EVIDENCE_LINES = 12
MAX_CAUSE_LINE = 300  # an agent's one line per cause
MAX_CAUSE_BLOCKS = 4
ELLIPSIS = "…"

SEVERITY_EMOJI: dict[Severity, str] = {
    Severity.ERROR: "❌",
    Severity.WARNING: "⚠️",
    Severity.UNKNOWN: "❔",
    Severity.INFO: "ℹ️",
    Severity.OK: "✅",
}
SECRET_KEY = re.compile(r"token|secret", re.IGNORECASE)
SLACK_DATE = re.compile(r"<!date\^\d+\^[^|<>]*\|[^<>]*>")
# Markup a caller may write on purpose (`markup_message`, `preface`): user and channel mentions and
# links. Never `<!channel>`/`<!here>`/`<!everyone>`.
SLACK_MARKUP = re.compile(
    r"<@[UW][A-Z0-9]+>|<#C[A-Z0-9]+(?:\|[^<>]*)?>|<(?:https?|mailto):[^<>|\s]+(?:\|[^<>]*)?>"
)
ENTITY = re.compile(r"&(?:amp|lt|gt);")

OTHER_HELP_LINE = (
    "For anything else — your SalesPartner password or login, billing and invoices, the mobile app, "
    "CRM features and reports — please contact SalesPartner support."
)


@dataclass(frozen=True)
class Message:
    """A Slack message: `text` is the notification (fallback) text, `blocks` the Block Kit layout."""

    text: str
    blocks: list[dict[str, Any]]

    def as_payload(self) -> dict[str, Any]:
        """Keyword arguments for `chat.postMessage` / `chat.update` / `respond`."""
        return {"text": self.text, "blocks": self.blocks}


# -- text helpers -----------------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Escape what Slack parses as markup in mrkdwn: `&`, `<`, `>` (so `<@U123>` or `<!channel>` in a
    title stays literal text instead of becoming a mention)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_len(text: str) -> int:
    """Length as Slack is likely to count it (UTF-16 code units): never less than `len`."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` (UTF-16 units) with an ellipsis, never inside an `&…;` entity."""
    if slack_len(text) <= limit:
        return text
    budget = limit - 1  # room for the ellipsis
    used = 0
    cut = 0
    for index, char in enumerate(text):
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > budget:
            break
        used += width
        cut = index + 1
    kept = text[:cut]
    amp = kept.rfind("&")
    if amp != -1 and ";" not in kept[amp:] and len(kept) - amp < 6:
        kept = kept[:amp]  # a half entity (`&am`) would show as garbage
    return kept.rstrip() + ELLIPSIS


def plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit) or " ", "emoji": True}


def mrkdwn(text: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit) or " "}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text)}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(text, MAX_HEADER_TEXT)}


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(text) for text in texts[:MAX_CONTEXT_ELEMENTS]]}


def divider() -> dict[str, Any]:
    return {"type": "divider"}


def json_value(payload: dict[str, Any], shrink: str | None = None) -> str:
    """`payload` as JSON within the button value limit; `shrink` names a text field cut to fit."""
    if shrink is not None and isinstance(payload.get(shrink), str):
        payload = {**payload, shrink: truncate(payload[shrink], QUOTED_QUESTION_CHARS)}
    value = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    while shrink is not None and slack_len(value) > MAX_BUTTON_VALUE and payload.get(shrink):
        text = payload[shrink]
        shorter = truncate(text, len(text) * 3 // 4) if len(text) > 4 else ""
        payload = {**payload, shrink: shorter}
        value = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return value


def button(
    text: str,
    action_id: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
    confirm_dialog: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": plain(text, MAX_BUTTON_TEXT),
        "action_id": action_id[:MAX_ACTION_ID],
    }
    if value is not None:
        button["value"] = value[:MAX_BUTTON_VALUE]
    if url is not None:
        button["url"] = url
    if style is not None:
        button["style"] = style
    if confirm_dialog is not None:
        button["confirm"] = confirm_dialog
    return button


def confirm(title: str, text: str, yes: str, no: str = "Cancel", *, danger: bool = False) -> dict[str, Any]:
    """A Block Kit confirmation dialog: Slack asks before the click is sent."""
    dialog: dict[str, Any] = {
        "title": plain(title, 100),
        "text": plain(text, MAX_CONFIRM_TEXT),
        "confirm": plain(yes, 30),
        "deny": plain(no, 30),
    }
    if danger:
        dialog["style"] = "danger"
    return dialog


def static_select(
    placeholder: str,
    action_id: str,
    options: Sequence[tuple[str, str]],
    *,
    confirm_dialog: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A menu of (text, value) options (at most `MAX_OPTIONS`), optionally confirmed."""
    menu: dict[str, Any] = {
        "type": "static_select",
        "action_id": action_id[:MAX_ACTION_ID],
        "placeholder": plain(placeholder, 150),
        "options": [
            {"text": plain(text, MAX_OPTION_TEXT), "value": value[:MAX_OPTION_VALUE]}
            for text, value in options[:MAX_OPTIONS]
        ],
    }
    if confirm_dialog is not None:
        menu["confirm"] = confirm_dialog
    return menu


class ActionIds:
    """Hands out unique action ids within one message: the bare id first, then `_1`, `_2`…"""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, base: str, *, numbered: bool = False) -> str:
        index = 0
        candidate = f"{base}_{index}" if numbered else base
        while candidate in self._used:
            index += 1
            candidate = f"{base}_{index}"
        self._used.add(candidate)
        return candidate


def actions(elements: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "actions", "elements": list(elements[start : start + MAX_ACTIONS_ELEMENTS])}
        for start in range(0, len(elements), MAX_ACTIONS_ELEMENTS)
    ]


def pack(lines: Iterable[str], *, separator: str = "\n", limit: int = MAX_TEXT) -> list[str]:
    """Join `lines` into as few texts of at most `limit` as possible (a line too long is cut)."""
    texts: list[str] = []
    current = ""
    for line in lines:
        line = truncate(line, limit)
        if current and slack_len(current) + slack_len(separator) + slack_len(line) > limit:
            texts.append(current)
            current = line
        else:
            current = f"{current}{separator}{line}" if current else line
    if current:
        texts.append(current)
    return texts


def slack_date(moment: datetime, template: str, fallback_prefix: str) -> str:
    """A time Slack shows in the reader's own time zone (with a UTC fallback for old clients)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    fallback = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(aware.timestamp())}^{template}|{escape_mrkdwn(fallback_prefix + fallback)}>"


@functools.cache
def default_knowledge() -> KnowledgeBase:
    return load_articles()


def worst(findings: Sequence[Finding]) -> Severity | None:
    return max((finding.severity for finding in findings), key=lambda severity: severity.rank, default=None)


# -- messages ---------------------------------------------------------------------------------------


def checking_message() -> Message:
    """The placeholder posted at once and updated in place with the answer."""
    text = "Checking your calendar connection…"
    return Message(text=text, blocks=[context(f"⏳ {text}")])


def error_message(text: str) -> Message:
    """A clear one-liner: bad input, an unknown user, a refusal. `text` is shown literally."""
    one_line = " ".join(text.split()) or "Something went wrong."
    return Message(
        text=truncate(escape_mrkdwn(one_line), MAX_FALLBACK_TEXT),
        blocks=[section(f"⚠️ {escape_mrkdwn(one_line)}")],
    )


def notice_message(text: str, *, emoji: str = "") -> Message:
    """A short note (thanks, a confirmation) shown literally: `text` is escaped, its lines kept."""
    body = escape_mrkdwn(text.strip() or " ")
    first = f"{emoji} {body}" if emoji else body
    return Message(
        text=truncate(escape_mrkdwn(" ".join(text.split())), MAX_FALLBACK_TEXT) or " ",
        blocks=[section(chunk) for chunk in pack(first.split("\n"))][:MAX_MESSAGE_BLOCKS],
    )


def markup_message(mrkdwn: str, *, fallback: str) -> Message:
    """A message in mrkdwn the caller wrote on purpose, e.g. with a `<@U123>` mention or a
    `<https://…|link>`: the caller escapes any data in it (`escape_mrkdwn`). `fallback` is the
    notification text, shown literally."""
    return Message(
        text=truncate(escape_mrkdwn(" ".join(fallback.split())), MAX_FALLBACK_TEXT) or " ",
        blocks=[section(chunk) for chunk in pack(mrkdwn.split("\n"))][:MAX_MESSAGE_BLOCKS],
    )


def reconnect_message(links: Mapping[str, str | None]) -> Message:
    """What `/calsync reconnect` answers: one Reconnect url button per provider (`provider -> url`;
    a provider without a url is left out)."""
    ids = ActionIds()
    buttons = [
        button(
            f"Reconnect {labels.product(provider)}",
            ids(ACTION_RECONNECT),
            value=provider,
            url=url,
            style="primary",
        )
        for provider, url in links.items()
        if url
    ]
    if not buttons:
        return error_message("I couldn't make a reconnect link just now — please try again in a minute.")
    text = "Here is your reconnect link: it opens in your browser, and it works once, for you only."
    return Message(text=text, blocks=[section(f"🔗 {text}"), *actions(buttons)])
