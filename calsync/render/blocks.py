"""An `Answer` as Slack Block Kit, and the App Home view: the one import for every surface. The
parts live in `kit` (primitives, the action contract, one-line messages), `answers`, `home`,
`notices` and `validate`.

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

from calsync.render.answers import (
    answer_message,
    details_message,
    help_message,
)
from calsync.render.home import (
    home_view,
)
from calsync.render.kit import (
    ACTION_CHECK_AGAIN,
    ACTION_DETAILS,
    ACTION_DID_YOU_MEAN,
    ACTION_HELPED,
    ACTION_HOLD_CANCEL,
    ACTION_HOLD_KEEP,
    ACTION_NOT_HELPED,
    ACTION_OPEN_REPORT,
    ACTION_PATTERNS,
    ACTION_RECONNECT,
    ACTION_SEND_RECONNECT_LINK,
    ACTION_SYNC_NOW,
    ACTION_TALK_TO_SUPPORT,
    MAX_BUTTON_TEXT,
    MAX_BUTTON_VALUE,
    MAX_FALLBACK_TEXT,
    MAX_HEADER_TEXT,
    MAX_HOME_BLOCKS,
    MAX_MESSAGE_BLOCKS,
    MAX_TEXT,
    SEVERITY_EMOJI,
    Message,
    base_action_id,
    checking_message,
    error_message,
    escape_mrkdwn,
    markup_message,
    notice_message,
    reconnect_message,
)
from calsync.render.notices import (
    hold_decided_message,
    hold_message,
)
from calsync.render.validate import (
    validate_blocks,
    validate_message,
)

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
