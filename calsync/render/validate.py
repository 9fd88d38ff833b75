"""The Block Kit rules a message or view breaks (`validate_blocks`, `validate_message`); the
tests reuse them on everything the bot sends."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from calsync.render import kit
from calsync.render.kit import (
    MAX_ACTION_ID,
    MAX_ACTIONS_ELEMENTS,
    MAX_BLOCK_ID,
    MAX_BUTTON_TEXT,
    MAX_BUTTON_URL,
    MAX_BUTTON_VALUE,
    MAX_CONTEXT_ELEMENTS,
    MAX_FALLBACK_TEXT,
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_MESSAGE_BLOCKS,
    MAX_TEXT,
    Message,
)

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
    if kit.slack_len(body) > limit:
        problems.append(f"{where}: text is {kit.slack_len(body)} characters (max {limit})")
    if kind == "mrkdwn":
        bare = kit.SLACK_DATE.sub("", body)
        if allow_markup:
            bare = kit.SLACK_MARKUP.sub("", bare)
        if "<" in bare or ">" in bare:
            problems.append(f"{where}: unescaped '<' or '>' in mrkdwn: {body[:80]!r}")
        if "&" in kit.ENTITY.sub("", bare):
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


def _select_problems(where: str, menu: Mapping[str, Any]) -> list[str]:
    """A static_select's options: 1 to 100, each with short plain text and a value of at most 150."""
    options = menu.get("options")
    if not isinstance(options, Sequence) or not 1 <= len(options) <= kit.MAX_OPTIONS:
        return [f"{where}: needs 1 to {kit.MAX_OPTIONS} options"]
    problems = _text_problems(where, menu.get("placeholder"), limit=150, plain_only=True)
    for number, option in enumerate(options):
        text = option.get("text") if isinstance(option, Mapping) else None
        value = option.get("value") if isinstance(option, Mapping) else None
        problems += _text_problems(
            f"{where} option {number}", text, limit=kit.MAX_OPTION_TEXT, plain_only=True
        )
        if not isinstance(value, str) or not value or len(value) > kit.MAX_OPTION_VALUE:
            problems.append(f"{where} option {number}: value must be text of at most {kit.MAX_OPTION_VALUE}")
    return problems


def _confirm_problems(where: str, dialog: Any) -> list[str]:
    if not isinstance(dialog, Mapping):
        return [f"{where}: confirm must be an object"]
    problems: list[str] = []
    for key, limit in (("title", 100), ("text", kit.MAX_CONFIRM_TEXT), ("confirm", 30), ("deny", 30)):
        problems += _text_problems(f"{where} confirm {key}", dialog.get(key), limit=limit, plain_only=True)
    if dialog.get("style") not in (None, "primary", "danger"):
        problems.append(f"{where}: confirm style must be primary or danger")
    return problems


def _button_problems(where: str, button: Any, action_ids: set[str]) -> list[str]:
    """A button's problems (or a static_select's, the one other element calsync sends)."""
    kind = button.get("type") if isinstance(button, Mapping) else None
    if kind not in ("button", "static_select"):
        return [f"{where}: not a button"]
    assert isinstance(button, Mapping)
    problems = (
        _text_problems(where, button.get("text"), limit=MAX_BUTTON_TEXT, plain_only=True)
        if kind == "button"
        else _select_problems(where, button)
    )
    if "confirm" in button:
        problems += _confirm_problems(where, button["confirm"])
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
    if value is not None and (not isinstance(value, str) or kit.slack_len(value) > MAX_BUTTON_VALUE):
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
