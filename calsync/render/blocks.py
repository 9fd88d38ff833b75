"""An `Answer` as Slack Block Kit, and the App Home view.

Pure functions: no Slack client, no I/O beyond loading the bundled articles once (for the titles of
the "what I can help with" list when no knowledge base is passed). Everything returned is
JSON-ready (`dict`/`list`/`str`/`bool`).

The same choices as the terminal renderer (`render/text.py`): the headline first (the cause and
what it affects), its fix with the steps of its one help-center section, any other cause once, then
the buttons — the fix's first, then Details (every finding, `details_message`), Check again and
feedback. Agents get the causes and every finding with its code and evidence.

Block Kit limits are respected by construction and checked by `validate_blocks` (which the bot's
tests reuse): at most 50 blocks per message and 100 per home view, section text ≤ 3000 characters,
header ≤ 150, button text ≤ 75, button value ≤ 2000, unique `action_id`s ≤ 255, and every piece of
text that comes from data escaped (`escape_mrkdwn`). When an answer is too big, findings and
articles are packed and then cut with a "…" note; the headline and the actions are never dropped.

Action ids are a contract with the bot's listeners. A message with two buttons of one kind (two
reconnect buttons, two "did you mean" candidates) cannot reuse an `action_id`, so the second and
later get a suffix (`reconnect`, `reconnect_1`; `did_you_mean_0`, `did_you_mean_1`): listen with
`ACTION_PATTERNS[ACTION_RECONNECT]` (a compiled regex Bolt accepts) or `base_action_id()`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from calsync.diagnostics.answer import Answer, MarkedStep, ShownArticle
from calsync.diagnostics.causes import Cause
from calsync.diagnostics.findings import Finding, Severity
from calsync.knowledge.loader import KnowledgeBase, load_articles
from calsync.render import labels
from calsync.render.text import help_topics
from calsync.syncbackend.holds import Decided, Hold

__all__ = [
    "ACTION_CHECK_AGAIN",
    "ACTION_DETAILS",
    "ACTION_DID_YOU_MEAN",
    "ACTION_HELPED",
    "ACTION_HOLD_CANCEL",
    "ACTION_HOLD_KEEP",
    "ACTION_NOT_HELPED",
    "ACTION_OPEN_REPORT",
    "ACTION_PATTERNS",
    "ACTION_RECONNECT",
    "ACTION_SEND_RECONNECT_LINK",
    "ACTION_SYNC_NOW",
    "ACTION_TALK_TO_SUPPORT",
    "MAX_BUTTON_TEXT",
    "MAX_BUTTON_VALUE",
    "MAX_FALLBACK_TEXT",
    "MAX_HEADER_TEXT",
    "MAX_HOME_BLOCKS",
    "MAX_MESSAGE_BLOCKS",
    "MAX_TEXT",
    "SEVERITY_EMOJI",
    "Message",
    "answer_message",
    "base_action_id",
    "checking_message",
    "details_message",
    "error_message",
    "escape_mrkdwn",
    "help_message",
    "hold_decided_message",
    "hold_message",
    "home_view",
    "markup_message",
    "notice_message",
    "reconnect_message",
    "validate_blocks",
    "validate_message",
]

# -- the contract with the bot's listeners ----------------------------------------------------------

ACTION_RECONNECT = "reconnect"  # url button per reconnect action (style primary); value = provider
ACTION_CHECK_AGAIN = "check_again"  # value = json {"article": id | null, "question": str | null}
ACTION_HELPED = "feedback_helped"  # value = json {"diagnosis": id, "article": id | null}
ACTION_NOT_HELPED = "feedback_not_helped"  # same value
ACTION_TALK_TO_SUPPORT = "talk_to_support"  # value = json {"diagnosis": id}
ACTION_DID_YOU_MEAN = "did_you_mean"  # did_you_mean_0, _1…; value = json {"article": id, "question": str}
ACTION_SEND_RECONNECT_LINK = "send_reconnect_link"  # agent only; value = json {"rep": email, "provider": p}
ACTION_OPEN_REPORT = "open_report"  # agent only; url button to the report page
ACTION_SYNC_NOW = "sync_now"  # value = json {"article": id | null, "question": str | null}
ACTION_DETAILS = "details"  # value = json {"article": id | null, "question": str | null}
ACTION_HOLD_CANCEL = "hold_cancel"  # agent only, support channel; value = json {"hold": id}
ACTION_HOLD_KEEP = "hold_keep"  # same value

_BASE_ACTIONS = (
    ACTION_RECONNECT,
    ACTION_CHECK_AGAIN,
    ACTION_HELPED,
    ACTION_NOT_HELPED,
    ACTION_TALK_TO_SUPPORT,
    ACTION_DID_YOU_MEAN,
    ACTION_SEND_RECONNECT_LINK,
    ACTION_OPEN_REPORT,
    ACTION_SYNC_NOW,
    ACTION_DETAILS,
    ACTION_HOLD_CANCEL,
    ACTION_HOLD_KEEP,
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
_SECRET_KEY = re.compile(r"token|secret", re.IGNORECASE)
_SLACK_DATE = re.compile(r"<!date\^\d+\^[^|<>]*\|[^<>]*>")
# Markup a caller may write on purpose (`markup_message`, `preface`): user and channel mentions and
# links. Never `<!channel>`/`<!here>`/`<!everyone>`.
_SLACK_MARKUP = re.compile(
    r"<@[UW][A-Z0-9]+>|<#C[A-Z0-9]+(?:\|[^<>]*)?>|<(?:https?|mailto):[^<>|\s]+(?:\|[^<>]*)?>"
)
_ENTITY = re.compile(r"&(?:amp|lt|gt);")

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


def _slack_len(text: str) -> int:
    """Length as Slack is likely to count it (UTF-16 code units): never less than `len`."""
    return len(text.encode("utf-16-le")) // 2


def _truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` (UTF-16 units) with an ellipsis, never inside an `&…;` entity."""
    if _slack_len(text) <= limit:
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


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _truncate(text, limit) or " ", "emoji": True}


def _mrkdwn(text: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _truncate(text, limit) or " "}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": _plain(text, MAX_HEADER_TEXT)}


def _context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text) for text in texts[:MAX_CONTEXT_ELEMENTS]]}


def _divider() -> dict[str, Any]:
    return {"type": "divider"}


def _json_value(payload: dict[str, Any], shrink: str | None = None) -> str:
    """`payload` as JSON within the button value limit; `shrink` names a text field cut to fit."""
    if shrink is not None and isinstance(payload.get(shrink), str):
        payload = {**payload, shrink: _truncate(payload[shrink], QUOTED_QUESTION_CHARS)}
    value = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    while shrink is not None and _slack_len(value) > MAX_BUTTON_VALUE and payload.get(shrink):
        text = payload[shrink]
        shorter = _truncate(text, len(text) * 3 // 4) if len(text) > 4 else ""
        payload = {**payload, shrink: shorter}
        value = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return value


def _button(
    text: str,
    action_id: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text, MAX_BUTTON_TEXT),
        "action_id": action_id[:MAX_ACTION_ID],
    }
    if value is not None:
        button["value"] = value[:MAX_BUTTON_VALUE]
    if url is not None:
        button["url"] = url
    if style is not None:
        button["style"] = style
    return button


class _ActionIds:
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


def _actions(elements: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "actions", "elements": list(elements[start : start + MAX_ACTIONS_ELEMENTS])}
        for start in range(0, len(elements), MAX_ACTIONS_ELEMENTS)
    ]


def _pack(lines: Iterable[str], *, separator: str = "\n", limit: int = MAX_TEXT) -> list[str]:
    """Join `lines` into as few texts of at most `limit` as possible (a line too long is cut)."""
    texts: list[str] = []
    current = ""
    for line in lines:
        line = _truncate(line, limit)
        if current and _slack_len(current) + _slack_len(separator) + _slack_len(line) > limit:
            texts.append(current)
            current = line
        else:
            current = f"{current}{separator}{line}" if current else line
    if current:
        texts.append(current)
    return texts


def _slack_date(moment: datetime, template: str, fallback_prefix: str) -> str:
    """A time Slack shows in the reader's own time zone (with a UTC fallback for old clients)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    fallback = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(aware.timestamp())}^{template}|{escape_mrkdwn(fallback_prefix + fallback)}>"


@functools.cache
def _default_knowledge() -> KnowledgeBase:
    return load_articles()


def _worst(findings: Sequence[Finding]) -> Severity | None:
    return max((finding.severity for finding in findings), key=lambda severity: severity.rank, default=None)


# -- the pieces of an answer ------------------------------------------------------------------------


def _finding_line(finding: Finding) -> str:
    line = f"{SEVERITY_EMOJI[finding.severity]} {escape_mrkdwn(finding.summary)}"
    if finding.hint and finding.severity is not Severity.OK:
        line += f"\n      → _{escape_mrkdwn(finding.hint)}_"
    return line


def _evidence_value(value: Any) -> Any:
    """A JSON-safe copy with secret-looking keys removed at every depth."""
    if isinstance(value, Mapping):
        return {
            str(key): _evidence_value(item) for key, item in value.items() if not _SECRET_KEY.search(str(key))
        }
    if isinstance(value, (list, tuple)):
        return [_evidence_value(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _evidence_lines(finding: Finding) -> list[str]:
    """`key: value` lines (escaped, each value cut short), never a key that mentions a token or secret."""
    lines = []
    items = [(str(key), value) for key, value in finding.evidence.items() if not _SECRET_KEY.search(str(key))]
    for key, value in items[:MAX_EVIDENCE_LINES]:
        safe = _evidence_value(value)
        shown = safe if isinstance(safe, str) else json.dumps(safe, ensure_ascii=False, default=str)
        shown = " ".join(shown.split())  # one line per key
        lines.append(
            f"{escape_mrkdwn(_truncate(key, 60))}: {escape_mrkdwn(_truncate(shown, MAX_EVIDENCE_VALUE))}"
        )
    if len(items) > MAX_EVIDENCE_LINES:
        lines.append(f"{ELLIPSIS} {len(items) - MAX_EVIDENCE_LINES} more")
    return lines


def _agent_finding_blocks(finding: Finding, *, first: bool = False) -> list[dict[str, Any]]:
    code = f"`{escape_mrkdwn(finding.code)}`"
    evidence = "\n".join([code, *_evidence_lines(finding)])
    line = _finding_line(finding)
    return [_section(f"*What I found*\n{line}" if first else line), _context(evidence)]


def _agent_finding_compact(finding: Finding) -> str:
    detail = " · ".join([f"`{escape_mrkdwn(finding.code)}`", *_evidence_lines(finding)])
    return f"{_finding_line(finding)}\n      {_truncate(detail, 1200)}"


def _step_text(marked: MarkedStep) -> str:
    """One help-center step: its title (with what the checks found, when they confirmed it), its
    words and its list. Never a ❌: the help center's steps are not wrong."""
    step = marked.step
    title = f"*{escape_mrkdwn(step.title)}*"
    if marked.mark == "checked":
        title += f" — ✓ _{escape_mrkdwn(marked.label.lower())}_"
    parts = [title]
    if step.text:
        parts.append(escape_mrkdwn(step.text))
    for number, item in enumerate(step.items, start=1):
        bullet = f"{number}." if step.ordered else "•"
        parts.append(f"      {bullet} {escape_mrkdwn(item)}")
    return "\n".join(parts)


def _steps_blocks(shown: ShownArticle) -> list[dict[str, Any]]:
    """The shown steps of one article, then one quiet line naming the help-center article."""
    blocks = [_section(text) for text in _pack((_step_text(m) for m in shown.steps), separator="\n\n")]
    blocks.append(_context(f"From the help center: _{escape_mrkdwn(shown.article.title)}_"))
    return blocks


def _cause_blocks(answer: Answer, cause: Cause, *, first: bool) -> list[dict[str, Any]]:
    """A cause: (when not the headline) its summary, then its fix and that fix's steps."""
    blocks: list[dict[str, Any]] = []
    words = escape_mrkdwn(cause.fix.words)
    fix = f"*Fix:* {words}" if cause.fix.by_rep else words
    if first:
        if words:
            blocks.append(_section(fix))
    else:
        emoji = SEVERITY_EMOJI[cause.severity]
        blocks.append(
            _section(f"{emoji} *Also:* {escape_mrkdwn(cause.summary)}" + (f"\n{fix}" if words else ""))
        )
    for shown in answer.articles:
        if shown.cause == cause.code:
            blocks.extend(_steps_blocks(shown))
    return blocks


def _fit(
    head: list[dict[str, Any]],
    groups: Sequence[list[dict[str, Any]]],
    tail: list[dict[str, Any]],
    *,
    limit: int,
    more_note: str,
) -> list[dict[str, Any]]:
    """head + the body groups + tail within `limit` blocks. When they do not all fit, the first group
    (the findings) keeps at least half the room and is cut at a block boundary, then the other groups
    (articles) follow whole while they fit; one context line says that something was left out."""
    room = limit - len(head) - len(tail)
    if sum(len(group) for group in groups) <= room:
        return [*head, *(block for group in groups for block in group), *tail]
    room -= 1  # for the note
    first, rest = (groups[0], groups[1:]) if groups else ([], [])
    rest_total = sum(len(group) for group in rest)
    body = list(first[: max(room // 2, room - rest_total, 0)])
    for group in rest:
        if len(body) + len(group) <= room:
            body.extend(group)
    body.append(_context(f"{ELLIPSIS} {more_note}"))
    return [*head, *body, *tail]


def _candidates(answer: Answer, knowledge: KnowledgeBase) -> list[tuple[str, str]]:
    """(article id, title) of the articles the question might be about, best first."""
    ids: list[str] = []
    if not answer.off_topic:
        if answer.article:
            ids.append(answer.article)
        ids.extend(shown.article.id for shown in answer.articles if shown.matched)
    ids.extend(article for article, _ in answer.alternatives)
    titles = {shown.article.id: shown.article.title for shown in answer.articles}
    result: list[tuple[str, str]] = []
    for article_id in dict.fromkeys(ids):
        title = titles.get(article_id)
        if title is None:
            try:
                title = knowledge.get(article_id).title
            except KeyError:
                title = article_id
        result.append((article_id, title))
    return result[:MAX_DID_YOU_MEAN]


def _did_you_mean(
    answer: Answer, knowledge: KnowledgeBase, ids: _ActionIds, prompt: str
) -> list[dict[str, Any]]:
    candidates = _candidates(answer, knowledge)
    if not candidates:
        return []
    titles = " or ".join(f"“{escape_mrkdwn(title)}”" for _, title in candidates)
    buttons = [
        _button(
            title,
            ids(ACTION_DID_YOU_MEAN, numbered=True),
            value=_json_value(
                {"article": article_id, "question": answer.question or "", "diagnosis": answer.diagnosis_id},
                "question",
            ),
        )
        for article_id, title in candidates
    ]
    return [_section(prompt.format(titles=titles)), *_actions(buttons)]


def _question_value(answer: Answer | None) -> str:
    """What a button that asks again carries: the article, the question, and the diagnosis it came
    from (whose subject is the answer's owner: a click by anyone else never acts on it)."""
    if answer is None:
        return _json_value({"article": None, "question": None})
    payload = {"article": answer.article, "question": answer.question, "diagnosis": answer.diagnosis_id}
    return _json_value(payload, shrink="question")


def _check_again_button(ids: _ActionIds, answer: Answer | None) -> dict[str, Any]:
    return _button("🔄 Check again", ids(ACTION_CHECK_AGAIN), value=_question_value(answer))


def _reconnect_buttons(answer: Answer, ids: _ActionIds, *, private: bool = True) -> list[dict[str, Any]]:
    """Reconnect per provider. In private (a DM, an ephemeral reply, App Home) the button is the
    signed link itself; in a channel it carries no link — a click gives the owner theirs, privately."""
    buttons = []
    for action in answer.actions:
        if action.kind != "reconnect" or not action.url:
            continue
        if private:
            value, url = action.provider or "", action.url
        else:
            value, url = _json_value({"diagnosis": answer.diagnosis_id, "provider": action.provider}), None
        buttons.append(_button(action.label, ids(ACTION_RECONNECT), value=value, url=url, style="primary"))
    return buttons


def _rep_buttons(
    answer: Answer, ids: _ActionIds, *, details: bool = True, private: bool = True
) -> list[dict[str, Any]]:
    """The fix first (Reconnect or Sync now), then Details, Check again, feedback; Talk to support
    only when the rep has no fix of their own to make."""
    buttons = _reconnect_buttons(answer, ids, private=private)
    if answer.kind == "declined":  # the fix of a broken calendar, if any; else where to go
        if not answer.has_rep_fix:
            buttons.append(
                _button(
                    "Talk to support",
                    ids(ACTION_TALK_TO_SUPPORT),
                    value=_json_value({"diagnosis": answer.diagnosis_id}),
                )
            )
        return buttons
    question_value = _question_value(answer)
    if any(action.kind == "sync_now" for action in answer.actions):
        buttons.append(_button("⚡ Sync now", ids(ACTION_SYNC_NOW), value=question_value, style="primary"))
    if details and answer.findings:
        buttons.append(_button("Details", ids(ACTION_DETAILS), value=question_value))
    buttons.append(_check_again_button(ids, answer))
    if answer.diagnosis_id is not None:
        feedback = _json_value({"diagnosis": answer.diagnosis_id, "article": answer.article})
        buttons.append(_button("👍 Helped", ids(ACTION_HELPED), value=feedback))
        buttons.append(_button("👎 Didn't help", ids(ACTION_NOT_HELPED), value=feedback))
    if not answer.has_rep_fix:
        for action in answer.actions:
            if action.kind == "contact_support":
                value = _json_value({"diagnosis": answer.diagnosis_id})
                buttons.append(_button(action.label, ids(ACTION_TALK_TO_SUPPORT), value=value))
                break
    return buttons


def _agent_buttons(answer: Answer, ids: _ActionIds, report_url: str | None) -> list[dict[str, Any]]:
    providers = [a.provider for a in answer.actions if a.kind == "reconnect" and a.provider]
    providers = list(dict.fromkeys(providers))
    buttons = []
    for provider in providers:
        label = "Send reconnect link to rep"
        if len(providers) > 1:
            label = f"Send {labels.product(provider)} reconnect link to rep"
        value = _json_value({"rep": answer.user, "provider": provider})
        buttons.append(_button(label, ids(ACTION_SEND_RECONNECT_LINK), value=value, style="primary"))
    if report_url:
        buttons.append(_button("Open full report", ids(ACTION_OPEN_REPORT), url=report_url))
    return buttons


def _who(answer: Answer) -> str:
    return f"{answer.user_name} · {answer.user}" if answer.user_name else answer.user


# -- messages ---------------------------------------------------------------------------------------


def checking_message() -> Message:
    """The placeholder posted at once and updated in place with the answer."""
    text = "Checking your calendar connection…"
    return Message(text=text, blocks=[_context(f"⏳ {text}")])


def error_message(text: str) -> Message:
    """A clear one-liner: bad input, an unknown user, a refusal. `text` is shown literally."""
    one_line = " ".join(text.split()) or "Something went wrong."
    return Message(
        text=_truncate(escape_mrkdwn(one_line), MAX_FALLBACK_TEXT),
        blocks=[_section(f"⚠️ {escape_mrkdwn(one_line)}")],
    )


def notice_message(text: str, *, emoji: str = "") -> Message:
    """A short note (thanks, a confirmation) shown literally: `text` is escaped, its lines kept."""
    body = escape_mrkdwn(text.strip() or " ")
    first = f"{emoji} {body}" if emoji else body
    return Message(
        text=_truncate(escape_mrkdwn(" ".join(text.split())), MAX_FALLBACK_TEXT) or " ",
        blocks=[_section(chunk) for chunk in _pack(first.split("\n"))][:MAX_MESSAGE_BLOCKS],
    )


def markup_message(mrkdwn: str, *, fallback: str) -> Message:
    """A message in mrkdwn the caller wrote on purpose, e.g. with a `<@U123>` mention or a
    `<https://…|link>`: the caller escapes any data in it (`escape_mrkdwn`). `fallback` is the
    notification text, shown literally."""
    return Message(
        text=_truncate(escape_mrkdwn(" ".join(fallback.split())), MAX_FALLBACK_TEXT) or " ",
        blocks=[_section(chunk) for chunk in _pack(mrkdwn.split("\n"))][:MAX_MESSAGE_BLOCKS],
    )


def reconnect_message(links: Mapping[str, str | None]) -> Message:
    """What `/calsync reconnect` answers: one Reconnect url button per provider (`provider -> url`;
    a provider without a url is left out)."""
    ids = _ActionIds()
    buttons = [
        _button(
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
    return Message(text=text, blocks=[_section(f"🔗 {text}"), *_actions(buttons)])


HELD_LISTED = 5


def _held_lines(hold: Hold) -> list[str]:
    lines = [
        f"• {escape_mrkdwn(item.title or 'Untitled')} — {_slack_date(item.start, '{date_short_pretty} {time}', '')}"
        for item in hold.appointments[:HELD_LISTED]
    ]
    if len(hold.appointments) > HELD_LISTED:
        lines.append(f"• …and {len(hold.appointments) - HELD_LISTED} more")
    return lines


def hold_message(hold: Hold) -> Message:
    """What the support channel is asked when a sync held back many cancellations at once."""
    count = len(hold.appointments)
    who = escape_mrkdwn(hold.user_name or hold.user_email)
    where = f"{labels.product(hold.provider)} ({escape_mrkdwn(hold.account_email)})"
    text = (
        f"Held {count} cancellation{'s' if count != 1 else ''} for {hold.user_name or hold.user_email}: "
        "their events disappeared from the calendar at once. Nothing was cancelled."
    )
    intro = (
        f"⚠️ *{count} of {who}'s {hold.upcoming} upcoming appointments disappeared from their {where} at "
        f"once* (one {escape_mrkdwn(hold.source or 'sync')}). Deleting an event cancels its "
        "appointment, but this many at once may be a wiped or swapped calendar, so *nothing was "
        "cancelled*: they stay booked until you decide."
    )
    value = _json_value({"hold": hold.id})
    confirm_cancel = {
        "title": _plain("Cancel them?", 100),
        "text": _plain(f"{count} appointments will be cancelled in SalesPartner.", 300),
        "confirm": _plain("Cancel them", 30),
        "deny": _plain("Back", 30),
        "style": "danger",
    }
    cancel = _button("Cancel them", ACTION_HOLD_CANCEL, value=value, style="danger")
    cancel["confirm"] = confirm_cancel
    keep = _button("Keep them booked", ACTION_HOLD_KEEP, value=value, style="primary")
    return Message(
        text=_truncate(escape_mrkdwn(text), MAX_FALLBACK_TEXT),
        blocks=[
            _section(intro),
            *[_section(chunk) for chunk in _pack(_held_lines(hold))],
            _context(
                "*Cancel them*: cancelled as if the rep had deleted each one. *Keep them booked*: they go "
                f"back on the calendar in the next sync. (Hold {hold.id}; also `calsync holds`.)"
            ),
            *_actions([cancel, keep]),
        ],
    )


def hold_decided_message(decided: Decided, actor: str) -> Message:
    """The hold's message once decided (`actor` is Slack markup, e.g. `<@U123>`, or a plain name)."""
    hold = decided.hold
    who = escape_mrkdwn(hold.user_name or hold.user_email)
    if decided.already:
        done = "cancelled" if hold.status == "cancelled" else "kept booked"
        by = escape_mrkdwn(hold.decided_by or "someone")
        line = f"Already decided: {by} {done} these appointments of {who}'s. Nothing changed now."
    elif decided.decision == "cancel":
        line = f"✅ {actor} cancelled {decided.changed} of {who}'s appointments (deleted in the calendar)."
    else:
        line = (
            f"✅ {actor} kept {decided.changed} of {who}'s appointments booked; they go back on the "
            "calendar in the next sync."
        )
    fallback = line.replace("✅ ", "")
    return Message(
        text=_truncate(fallback, MAX_FALLBACK_TEXT),
        blocks=[_section(line), *[_section(c) for c in _pack(_held_lines(hold))]],
    )


def help_message(is_agent: bool, *, knowledge: KnowledgeBase | None = None) -> Message:
    """What `/calsync help` says."""
    kb = knowledge or _default_knowledge()
    commands = [
        "• `/calsync diagnose` — check your own calendar connection now",
        "• `/calsync reconnect` — get a link to reconnect your calendar",
    ]
    if is_agent:
        commands.append(
            "• `/calsync diagnose @user` — the whole picture of a rep's sync state (only you see it)"
        )
    commands.append("• `/calsync help` — this message")
    topics = ", ".join(escape_mrkdwn(article.title) for article in kb.articles)
    blocks = [
        _section(
            "*Ask me about calendar sync* in a DM, or @mention me in a help channel — for example "
            "_why isn't my appointment showing?_ I check your connection live and show the steps that fix it."
        ),
        _section("*Commands*\n" + "\n".join(commands)),
        _context(f"I can help with: {topics}.", escape_mrkdwn(OTHER_HELP_LINE)),
    ]
    text = (
        "Ask me about calendar sync in a DM or by @mentioning me; /calsync diagnose checks your connection."
    )
    return Message(text=text, blocks=blocks)


def _headline(answer: Answer) -> str:
    causes = answer.shown_causes
    emoji = (
        SEVERITY_EMOJI[causes[0].severity]
        if causes and answer.kind == "answer"
        else ("ℹ️" if answer.kind == "declined" else "✅")
    )
    return f"{emoji} *{escape_mrkdwn(answer.headline)}*"


def _body(answer: Answer, kb: KnowledgeBase, ids: _ActionIds) -> list[list[dict[str, Any]]]:
    """The rep's answer below the headline, in groups `_fit` may cut: each cause with its fix and
    steps, the matched article when it adds something, "did you mean" when nothing was found."""
    if answer.kind == "declined":
        groups = [[_section(text) for text in _pack(escape_mrkdwn(help_topics(kb)).split("\n"))]]
        if answer.shown_causes:
            cause = answer.shown_causes[0]
            line = f"{SEVERITY_EMOJI[cause.severity]} *By the way:* {escape_mrkdwn(cause.summary)}"
            groups.append([_section(f"{line}\n*Fix:* {escape_mrkdwn(cause.fix.words)}")])
        return groups
    groups = [
        _cause_blocks(answer, cause, first=index == 0) for index, cause in enumerate(answer.shown_causes)
    ]
    for shown in answer.articles:
        if shown.cause is None:
            groups.append([_header(shown.article.title), *_steps_blocks(shown)[:-1]])
    if answer.offers_choices:
        groups.append(_did_you_mean(answer, kb, ids, "Did you mean {titles}?"))
    return [group for group in groups if group]


def answer_message(
    answer: Answer,
    *,
    private: bool = True,
    for_agent: bool = False,
    report_url: str | None = None,
    knowledge: KnowledgeBase | None = None,
    preface: str | None = None,
) -> Message:
    """The answer as a Slack message: for the rep who asked — the headline, the fix with its steps,
    and the buttons, on one phone screen — or (`for_agent`) for a support agent, with the causes
    and every finding's code and evidence, and the agent's actions.

    `private`: only the rep sees it (a DM, an ephemeral reply); in a channel (False) the Reconnect
    button carries no link, so nobody else can open it first.

    `preface`: one mrkdwn line put first (e.g. "Support request from <@U123>"), written on purpose by
    the caller, who escapes any data in it; the block budget accounts for it."""
    kb = knowledge or _default_knowledge()
    ids = _ActionIds()
    head: list[dict[str, Any]] = [_section(preface)] if preface else []
    if answer.kind == "smalltalk":
        return Message(
            text=_truncate(escape_mrkdwn(answer.headline), MAX_FALLBACK_TEXT),
            blocks=[*head, _section(escape_mrkdwn(answer.headline))],
        )
    if for_agent:
        head.append(_header(f"🔎 {_who(answer)}"))
        notes = []
        if answer.question is not None:
            notes.append(
                f"Q: _{escape_mrkdwn(_truncate(' '.join(answer.question.split()), QUOTED_QUESTION_CHARS))}_"
            )
        notes.append(_slack_date(answer.checked_at, "Checked {date_short_pretty} {time}", "Checked "))
        if answer.diagnosis_id is not None:
            notes.append(f"diagnosis {escape_mrkdwn(answer.diagnosis_id)}")
        head.append(_context(" · ".join(notes)))
    head.append(_section(_headline(answer)))

    if for_agent:
        causes = [
            _truncate(
                f"{SEVERITY_EMOJI[c.severity]} `{escape_mrkdwn(c.code)}` {escape_mrkdwn(c.fix.words)} "
                f"_({escape_mrkdwn(', '.join(c.findings))})_",
                MAX_CAUSE_LINE,
            )
            for c in answer.causes
        ]
        tail = _actions(_agent_buttons(answer, ids, report_url))
        more = "more in the full report." if report_url else "more than fits in one message."
        if causes:  # short lines: they stay whole, the findings below are what gets cut
            head.extend(_section(text) for text in _pack(["*Causes*", *causes])[:MAX_CAUSE_BLOCKS])
        wide = [_agent_finding_blocks(f, first=i == 0) for i, f in enumerate(answer.findings)]
        if sum(len(group) for group in wide) <= MAX_MESSAGE_BLOCKS - len(head) - len(tail):
            blocks = _fit(head, wide, tail, limit=MAX_MESSAGE_BLOCKS, more_note=more)
        else:
            lines = [_agent_finding_compact(f) for f in answer.findings]
            packed = [_section(text) for text in _pack(["*What I found*", *lines])]
            blocks = _fit(head, [packed], tail, limit=MAX_MESSAGE_BLOCKS, more_note=more)
        who = f"{answer.user_name} ({answer.user})" if answer.user_name else answer.user
        return Message(
            text=_truncate(escape_mrkdwn(f"{who}: {answer.headline}"), MAX_FALLBACK_TEXT), blocks=blocks
        )

    tail = [
        _context(_slack_date(answer.checked_at, "Checked {time}", "Checked ")),
        *_actions(_rep_buttons(answer, ids, private=private)),
    ]
    more = "there is more than fits here — tap Details, or talk to support."
    blocks = _fit(head, _body(answer, kb, ids), tail, limit=MAX_MESSAGE_BLOCKS, more_note=more)
    return Message(text=_truncate(escape_mrkdwn(answer.headline), MAX_FALLBACK_TEXT), blocks=blocks)


def details_message(answer: Answer) -> Message:
    """What *Details* shows the rep: every finding of the diagnosis with its hint (no evidence), and
    *Talk to support* always (the answer itself offers it only where the rep has no fix)."""
    ids = _ActionIds()
    lines = ["*What I checked*", *(_finding_line(finding) for finding in answer.findings)]
    head = [_section(_headline(answer))]
    support = _button(
        "Talk to support", ids(ACTION_TALK_TO_SUPPORT), value=_json_value({"diagnosis": answer.diagnosis_id})
    )
    tail = [
        _context(_slack_date(answer.checked_at, "Checked {time}", "Checked ")),
        *_actions([_check_again_button(ids, answer), support]),
    ]
    body = [[_section(text) for text in _pack(lines)]]
    blocks = _fit(head, body, tail, limit=MAX_MESSAGE_BLOCKS, more_note="more in a diagnosis by support.")
    return Message(text=_truncate(escape_mrkdwn(answer.headline), MAX_FALLBACK_TEXT), blocks=blocks)


# -- App Home ---------------------------------------------------------------------------------------

_HOME_ROWS = (("connection", "Connection"), ("calendar", "Calendar"), ("sync", "Last sync"))
_ASK_LINE = (
    "💬 Ask me anything about calendar sync: write to me in the *Messages* tab, or @mention me in a "
    "help channel. `/calsync help` lists the commands."
)


def _home_row(label: str, findings: Sequence[Finding]) -> str:
    worst = _worst(findings)
    if worst is None:
        return f"❔ *{label}*: not checked"
    shown = [f for f in findings if f.severity is worst]
    summaries = " ".join(escape_mrkdwn(f.summary) for f in shown[:3])
    line = f"{SEVERITY_EMOJI[worst]} *{label}*: {summaries}"
    hint = next((f.hint for f in shown if f.hint and worst is not Severity.OK), "")
    if hint:
        line += f"\n      → _{escape_mrkdwn(hint)}_"
    return _truncate(line, 1000)


def home_view(answer: Answer | None, *, name: str = "", not_a_user: bool = False) -> dict[str, Any]:
    """The App Home tab: the rep's calendar status at a glance, with Reconnect and Check again."""
    greeting = f"Hi {name.strip()} 👋" if name.strip() else "Hi 👋"
    blocks: list[dict[str, Any]] = [_header("📅 Your calendar sync")]
    if not_a_user:
        blocks.append(
            _section(
                f"{escape_mrkdwn(greeting)}\nThis Slack account isn't linked to a SalesPartner user, so I "
                "can't check a calendar for it. Please ask SalesPartner support to link your Slack "
                "account to your SalesPartner user."
            )
        )
        return {"type": "home", "blocks": blocks}
    if answer is None:
        blocks.append(
            _section(f"{escape_mrkdwn(greeting)}\nOpen this tab again to check your calendar connection.")
        )
        blocks.append(_context(_ASK_LINE))
        return {"type": "home", "blocks": blocks}

    ids = _ActionIds()
    worst = _worst(answer.findings)
    emoji = SEVERITY_EMOJI[worst] if worst is not None else "❔"
    blocks.append(_section(f"{escape_mrkdwn(greeting)}\n{emoji} *{escape_mrkdwn(answer.headline)}*"))
    rows = [
        _home_row(label, [f for f in answer.findings if f.check == check or f.code.startswith(f"{check}.")])
        for check, label in _HOME_ROWS
    ]
    blocks.extend(_section(text) for text in _pack(rows, separator="\n\n"))
    row_checks = {check for check, _ in _HOME_ROWS}
    others = [
        f
        for f in answer.findings
        if f.check not in row_checks and f.severity in (Severity.ERROR, Severity.WARNING, Severity.UNKNOWN)
    ]
    if others:
        lines = ["*Also worth a look*", *(_finding_line(f) for f in others[:10])]
        blocks.extend(_section(text) for text in _pack(lines)[:5])
    blocks.append(_context(_slack_date(answer.checked_at, "Checked {date_short_pretty} {time}", "Checked ")))
    buttons = _reconnect_buttons(answer, ids)
    buttons.append(_check_again_button(ids, None))
    blocks.extend(_actions(buttons))
    blocks.append(_divider())
    blocks.append(_context(_ASK_LINE))
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}


# -- validation -------------------------------------------------------------------------------------


def _text_problems(
    where: str, text: Any, *, limit: int, plain_only: bool = False, allow_markup: bool = False
) -> list[str]:
    if not isinstance(text, Mapping):
        return [f"{where}: text must be a text object"]
    problems = []
    kind = text.get("type")
    if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
        problems.append(f"{where}: text type {kind!r} not allowed")
    body = text.get("text")
    if not isinstance(body, str) or not body.strip():
        return [*problems, f"{where}: text is empty"]
    if _slack_len(body) > limit:
        problems.append(f"{where}: text is {_slack_len(body)} characters (max {limit})")
    if kind == "mrkdwn":
        bare = _SLACK_DATE.sub("", body)
        if allow_markup:
            bare = _SLACK_MARKUP.sub("", bare)
        if "<" in bare or ">" in bare:
            problems.append(f"{where}: unescaped '<' or '>' in mrkdwn: {body[:80]!r}")
        if "&" in _ENTITY.sub("", bare):
            problems.append(f"{where}: unescaped '&' in mrkdwn: {body[:80]!r}")
    return problems


def validate_blocks(
    blocks: Sequence[Mapping[str, Any]],
    *,
    max_blocks: int = MAX_MESSAGE_BLOCKS,
    allow_markup: bool = False,
) -> list[str]:
    """The Block Kit rules these blocks break (empty when none): counts, lengths, unique and short
    action and block ids, button values and urls, and unescaped `<`, `>`, `&` in mrkdwn (only the
    `<!date^…>` markup this module emits is allowed; `allow_markup` also allows user and channel
    mentions and links, for messages with markup written on purpose). For a home view pass `max_blocks=MAX_HOME_BLOCKS`."""
    problems: list[str] = []
    if not isinstance(blocks, Sequence) or isinstance(blocks, str):
        return ["blocks must be a list"]
    if len(blocks) > max_blocks:
        problems.append(f"{len(blocks)} blocks (max {max_blocks})")
    action_ids: set[str] = set()
    block_ids: set[str] = set()
    try:
        json.dumps(list(blocks))
    except (TypeError, ValueError) as exc:
        problems.append(f"blocks are not JSON-serializable: {exc}")
    for index, block in enumerate(blocks):
        where = f"block {index}"
        if not isinstance(block, Mapping):
            problems.append(f"{where}: not an object")
            continue
        kind = block.get("type")
        where = f"block {index} ({kind})"
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID:
                problems.append(f"{where}: block_id must be text of at most {MAX_BLOCK_ID} characters")
            elif block_id in block_ids:
                problems.append(f"{where}: duplicate block_id {block_id!r}")
            else:
                block_ids.add(block_id)
        if kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: needs text or fields")
            if "text" in block:
                problems += _text_problems(where, block["text"], limit=MAX_TEXT, allow_markup=allow_markup)
            for number, field_text in enumerate(block.get("fields") or ()):
                problems += _text_problems(
                    f"{where} field {number}", field_text, limit=MAX_FIELD_TEXT, allow_markup=allow_markup
                )
            if len(block.get("fields") or ()) > 10:
                problems.append(f"{where}: more than 10 fields")
            accessory = block.get("accessory")
            if isinstance(accessory, Mapping) and accessory.get("type") == "button":
                problems += _button_problems(f"{where} accessory", accessory, action_ids)
        elif kind == "header":
            problems += _text_problems(where, block.get("text"), limit=MAX_HEADER_TEXT, plain_only=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, Sequence) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"{where}: needs 1 to {MAX_CONTEXT_ELEMENTS} elements")
                continue
            for number, element in enumerate(elements):
                problems += _text_problems(
                    f"{where} element {number}", element, limit=MAX_TEXT, allow_markup=allow_markup
                )
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, Sequence) or not 1 <= len(elements) <= MAX_ACTIONS_ELEMENTS:
                problems.append(f"{where}: needs 1 to {MAX_ACTIONS_ELEMENTS} elements")
                continue
            for number, element in enumerate(elements):
                problems += _button_problems(f"{where} element {number}", element, action_ids)
        elif kind == "divider":
            pass
        else:
            problems.append(f"{where}: unknown block type")
    return problems


def _button_problems(where: str, button: Any, action_ids: set[str]) -> list[str]:
    if not isinstance(button, Mapping) or button.get("type") != "button":
        return [f"{where}: not a button"]
    problems = _text_problems(where, button.get("text"), limit=MAX_BUTTON_TEXT, plain_only=True)
    action_id = button.get("action_id")
    if not isinstance(action_id, str) or not action_id:
        problems.append(f"{where}: missing action_id")
    elif len(action_id) > MAX_ACTION_ID:
        problems.append(f"{where}: action_id longer than {MAX_ACTION_ID}")
    elif action_id in action_ids:
        problems.append(f"{where}: duplicate action_id {action_id!r}")
    else:
        action_ids.add(action_id)
    value = button.get("value")
    if value is not None and (not isinstance(value, str) or _slack_len(value) > MAX_BUTTON_VALUE):
        problems.append(f"{where}: value must be text of at most {MAX_BUTTON_VALUE} characters")
    url = button.get("url")
    if url is not None and (not isinstance(url, str) or not url or len(url) > MAX_BUTTON_URL):
        problems.append(f"{where}: url must be text of at most {MAX_BUTTON_URL} characters")
    if button.get("style") not in (None, "primary", "danger"):
        problems.append(f"{where}: style must be primary or danger")
    return problems


def validate_message(message: Message, *, allow_markup: bool = False) -> list[str]:
    """`validate_blocks` plus the fallback (notification) text: present, escaped, ≤ 3000 characters."""
    problems = validate_blocks(message.blocks, allow_markup=allow_markup)
    problems += _text_problems(
        "fallback text", {"type": "mrkdwn", "text": message.text}, limit=MAX_FALLBACK_TEXT
    )
    return problems
