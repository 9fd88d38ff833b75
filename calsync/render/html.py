"""Slack Block Kit as HTML: the bot's reply shown in a browser (the playground), exactly the blocks
Slack would get, without JavaScript.

Nothing in the blocks is trusted. Text is taken apart into Slack's markup (`<url|text>` links,
`<!date^…|fallback>`, mentions) and plain text; plain text is HTML-escaped, then `*bold*`,
`_italic_`, `~strike~` and `` `code` `` are turned into tags; only `http`, `https` and `mailto`
links become links. Unknown block and element types are skipped.

Buttons are the one place a page wants its own behaviour (a "Check again" button re-asks in the
playground), so `render_blocks` takes a `button` callback: it gets the button object and returns
the HTML for it, or None for the default (a url button becomes a link; any other button is shown
disabled, since only Slack can act on it).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup, escape

__all__ = ["ButtonRenderer", "button_html", "mrkdwn_to_html", "plain_to_html", "render_blocks", "safe_url"]

ButtonRenderer = Callable[[Mapping[str, Any]], Markup | None]

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_CODE = re.compile(r"`([^`\n]+)`")
_ANGLE = re.compile(r"<([^<>\n]*)>")
# Slack's emphasis: the marker hugs the text (no space inside) and does not sit inside a word.
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])")
_BUTTON_STYLES = {"primary": "primary", "danger": "danger"}


def _unescape_slack(text: str) -> str:
    """Slack escapes exactly `&`, `<`, `>` in mrkdwn; undo that (HTML escaping happens after)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(text: str) -> str:
    """Slack-escaped text as escaped HTML."""
    return html.escape(_unescape_slack(text), quote=True)


def safe_url(url: str) -> str | None:
    """`url` when it is an absolute http(s) or mailto URL without whitespace, else None."""
    url = url.strip()
    if not url or any(char.isspace() for char in url) or _CONTROL.search(url):
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in SAFE_SCHEMES else None


def _link(url: str, label: str) -> str:
    return f'<a href="{html.escape(url, quote=True)}" rel="noopener noreferrer">{label}</a>'


def _angle(inner: str) -> str:
    """One piece of Slack markup (`<…>` without the brackets) as HTML."""
    target, _, label = inner.partition("|")
    if target.startswith("!date^"):
        return _text(label) if label else ""
    if target.startswith("!"):  # <!here>, <!channel>, <!subteam^ID|@team>
        return _text(label) if label else "@" + _text(target[1:].split("^", 1)[0])
    if target.startswith("@"):
        return "@" + _text(label or target[1:])
    if target.startswith("#"):
        return "#" + _text(label or target[1:])
    url = safe_url(_unescape_slack(target))
    if url:
        return _link(url, _text(label) if label else _text(target))
    # Not a link we follow (`javascript:`, or a bare `<tag>` left unescaped): its words, as text.
    return _text(label) if label else _text(f"<{inner}>")


def mrkdwn_to_html(text: str) -> Markup:
    """Slack mrkdwn as safe HTML: links, `*bold*`, `_italic_`, `~strike~`, `` `code` ``, line breaks."""
    pieces: list[str] = []

    def keep(fragment: str) -> str:
        pieces.append(fragment)
        return f"\x00{len(pieces) - 1}\x00"

    source = _CONTROL.sub("", text.replace("\r\n", "\n")).replace("\x00", "")
    source = _CODE.sub(lambda m: keep(f"<code>{_text(m.group(1))}</code>"), source)
    source = _ANGLE.sub(lambda m: keep(_angle(m.group(1))), source)
    # What is left is text: a stray `<` or `>` (Slack would have wanted it escaped) is escaped too.
    body = _text(source)
    body = _BOLD.sub(r"<strong>\1</strong>", body)
    body = _ITALIC.sub(r"<em>\1</em>", body)
    body = _STRIKE.sub(r"<s>\1</s>", body)
    body = body.replace("\n", "<br>\n")
    body = _PLACEHOLDER.sub(lambda m: pieces[int(m.group(1))], body)
    return Markup(body)  # every piece above was escaped


def inline_code(text: str | None) -> Markup:
    """A page's plain sentence as safe HTML: `` `code` `` becomes <code>, everything else escaped."""
    if isinstance(text, Markup):
        return text
    cleaned = _CONTROL.sub("", "" if text is None else str(text))
    parts = _CODE.split(cleaned)  # even: text; odd: what stood between backticks
    # Escaped as Jinja escapes the rest of the page (markupsafe), so pages read the same either way.
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if index % 2 else escape(part)
        for index, part in enumerate(parts)
    )


def plain_to_html(text: str) -> Markup:
    """plain_text: escaped, line breaks kept (emoji are plain characters and stay as they are)."""
    cleaned = _CONTROL.sub("", text.replace("\r\n", "\n"))
    return Markup(html.escape(cleaned, quote=True).replace("\n", "<br>\n"))


def _text_object(obj: Any) -> Markup:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("text"), str):
        return Markup("")
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_html(obj["text"])
    return plain_to_html(obj["text"])


def _button_label(button: Mapping[str, Any]) -> Markup:
    return _text_object(button.get("text"))


def button_html(button: Mapping[str, Any], *, note: str = "") -> Markup:
    """The default for a button: a link for a url button, else a disabled button (`note` says what it
    would do in Slack, as its tooltip)."""
    classes = " ".join(["button", _BUTTON_STYLES.get(str(button.get("style")), "")]).strip()
    label = _button_label(button)
    url = safe_url(button["url"]) if isinstance(button.get("url"), str) else None
    if url:
        return Markup('<a class="{}" href="{}" rel="noopener noreferrer">{}</a>').format(classes, url, label)
    title = note or "This button works in Slack."
    return Markup('<button type="button" class="{}" disabled title="{}">{}</button>').format(
        classes, title, label
    )


def _button(element: Any, renderer: ButtonRenderer | None) -> Markup:
    if not isinstance(element, Mapping) or element.get("type") != "button":
        return Markup("")
    custom = renderer(element) if renderer is not None else None
    return custom if custom is not None else button_html(element)


def _section(block: Mapping[str, Any], renderer: ButtonRenderer | None) -> Markup:
    parts = [Markup('<div class="bk-section">')]
    if "text" in block:
        parts.append(Markup('<div class="bk-text">{}</div>').format(_text_object(block["text"])))
    fields = block.get("fields")
    if isinstance(fields, list) and fields:
        cells = Markup("").join(
            Markup('<div class="bk-field">{}</div>').format(_text_object(field)) for field in fields
        )
        parts.append(Markup('<div class="bk-fields">{}</div>').format(cells))
    accessory = block.get("accessory")
    if isinstance(accessory, Mapping):
        rendered = _button(accessory, renderer)
        if rendered:
            parts.append(Markup('<div class="bk-accessory">{}</div>').format(rendered))
    parts.append(Markup("</div>"))
    return Markup("").join(parts)


def _context(block: Mapping[str, Any]) -> Markup:
    elements = block.get("elements")
    if not isinstance(elements, list):
        return Markup("")
    shown = []
    for element in elements:
        if isinstance(element, Mapping) and element.get("type") in ("mrkdwn", "plain_text"):
            shown.append(Markup("<span>{}</span>").format(_text_object(element)))
        elif isinstance(element, Mapping) and element.get("type") == "image":
            alt = element.get("alt_text")
            if isinstance(alt, str) and alt:
                shown.append(Markup("<span>[{}]</span>").format(alt))
    if not shown:
        return Markup("")
    return Markup('<div class="bk-context">{}</div>').format(Markup(" ").join(shown))


def _actions(block: Mapping[str, Any], renderer: ButtonRenderer | None) -> Markup:
    elements = block.get("elements")
    if not isinstance(elements, list):
        return Markup("")
    buttons = [rendered for element in elements if (rendered := _button(element, renderer))]
    if not buttons:
        return Markup("")
    return Markup('<div class="bk-actions">{}</div>').format(Markup("\n").join(buttons))


def _block(block: Any, renderer: ButtonRenderer | None) -> Markup:
    if not isinstance(block, Mapping):
        return Markup("")
    kind = block.get("type")
    if kind == "section":
        return _section(block, renderer)
    if kind == "header":
        return Markup('<h2 class="bk-header">{}</h2>').format(_text_object(block.get("text")))
    if kind == "divider":
        return Markup('<hr class="bk-divider">')
    if kind == "context":
        return _context(block)
    if kind == "actions":
        return _actions(block, renderer)
    return Markup("")  # a block type this renderer does not know: left out


def render_blocks(blocks: Iterable[Any], *, button: ButtonRenderer | None = None) -> Markup:
    """The blocks of one message as HTML, in a `div.bk-message`."""
    inner = Markup("\n").join(rendered for block in blocks if (rendered := _block(block, button)))
    return Markup('<div class="bk-message">\n{}\n</div>').format(inner)
