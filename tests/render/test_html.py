"""Block Kit as HTML: each block type, mrkdwn formatting, buttons, and nothing from the data trusted."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from calsync.diagnostics.answer import compose
from calsync.diagnostics.findings import Finding, Severity
from calsync.knowledge.loader import load_articles
from calsync.render.blocks import answer_message, escape_mrkdwn
from calsync.render.html import (
    button_html,
    inline_code,
    mrkdwn_to_html,
    plain_to_html,
    render_blocks,
    safe_url,
)

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": "a", **extra}


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (_section("hello"), '<div class="bk-section"><div class="bk-text">hello</div></div>'),
        (
            {"type": "header", "text": {"type": "plain_text", "text": "Title"}},
            '<h2 class="bk-header">Title</h2>',
        ),
        ({"type": "divider"}, '<hr class="bk-divider">'),
        (
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "_a_"}, {"type": "plain_text", "text": "b"}],
            },
            '<div class="bk-context"><span><em>a</em></span> <span>b</span></div>',
        ),
        (
            {"type": "actions", "elements": [_button("Go", url="https://example.com/x?a=1&b=2")]},
            '<div class="bk-actions"><a class="button" href="https://example.com/x?a=1&amp;b=2" '
            'rel="noopener noreferrer">Go</a></div>',
        ),
        (
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": "*k*"}, {"type": "plain_text", "text": "v"}],
            },
            '<div class="bk-section"><div class="bk-fields"><div class="bk-field"><strong>k</strong></div>'
            '<div class="bk-field">v</div></div></div>',
        ),
    ],
)
def test_each_block_type(block: dict[str, Any], expected: str) -> None:
    assert str(render_blocks([block])) == f'<div class="bk-message">\n{expected}\n</div>'


@pytest.mark.parametrize(
    ("mrkdwn", "html"),
    [
        ("*bold* and _italic_", "<strong>bold</strong> and <em>italic</em>"),
        ("~gone~ `co_de *x*`", "<s>gone</s> <code>co_de *x*</code>"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("* not bold *", "* not bold *"),
        ("line one\nline two", "line one<br>\nline two"),
        (
            "<https://example.com/a_b_c|the *docs*>",
            '<a href="https://example.com/a_b_c" rel="noopener noreferrer">the *docs*</a>',
        ),
        (
            "<https://example.com>",
            '<a href="https://example.com" rel="noopener noreferrer">https://example.com</a>',
        ),
        (
            "<mailto:help@example.com|mail us>",
            '<a href="mailto:help@example.com" rel="noopener noreferrer">mail us</a>',
        ),
        ("<!date^1764000000^{time}|Checked 15:00 UTC>", "Checked 15:00 UTC"),
        ("hi <@U123> in <#C1|help> <!here>", "hi @U123 in #help @here"),
        ("❌ ✅ ⚠️ :tada:", "❌ ✅ ⚠️ :tada:"),
        ("Tom &amp; Jerry &lt;3 &gt;", "Tom &amp; Jerry &lt;3 &gt;"),
        (
            "*bold <https://e.x|link>*",
            '<strong>bold <a href="https://e.x" rel="noopener noreferrer">link</a></strong>',
        ),
    ],
)
def test_mrkdwn_formatting(mrkdwn: str, html: str) -> None:
    assert str(mrkdwn_to_html(mrkdwn)) == html


@pytest.mark.parametrize(
    "mrkdwn",
    [
        XSS,
        escape_mrkdwn(XSS),
        "<javascript:alert(1)|click me>",
        "<JavaScript:alert(1)>",
        '<https://e.x/"onmouseover="alert(1)|x>',
        "<data:text/html;base64,PHNjcmlwdD4=|x>",
        "`</code><script>alert(1)</script>`",
        "*<b onclick=alert(1)>*",
        "\x00<script>\x00",
    ],
)
def test_nothing_in_mrkdwn_becomes_markup(mrkdwn: str) -> None:
    rendered = str(mrkdwn_to_html(mrkdwn))
    assert "<script" not in rendered.lower()
    assert "<img" not in rendered and "<b " not in rendered
    assert "javascript:" not in rendered.lower().replace("&lt;javascript:", "")
    assert 'href="data:' not in rendered
    assert not re.search(r"<a [^>]*\son\w+=", rendered)


def test_plain_text_and_button_labels_are_escaped() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": XSS}},
        {"type": "actions", "elements": [_button(XSS), _button(XSS, url="javascript:alert(1)")]},
        {"type": "context", "elements": [{"type": "plain_text", "text": XSS}]},
    ]
    rendered = str(render_blocks(blocks))
    assert "<script" not in rendered and "<img" not in rendered
    assert "javascript:" not in rendered
    assert rendered.count("&lt;script&gt;") == 4
    assert str(plain_to_html("a\nb")) == "a<br>\nb"


@given(st.text(max_size=200))
def test_any_text_renders_to_markup_with_only_our_tags(text: str) -> None:
    rendered = str(mrkdwn_to_html(text)) + str(plain_to_html(text))
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z][\w-]*)", rendered))
    assert tags <= {"strong", "em", "s", "code", "a", "br"}


def test_url_buttons_become_links_and_others_disabled_buttons() -> None:
    link = button_html(
        _button("Reconnect", url="http://127.0.0.1:8000/connect/google?t=a&b", style="primary")
    )
    assert str(link) == (
        '<a class="button primary" href="http://127.0.0.1:8000/connect/google?t=a&amp;b" '
        'rel="noopener noreferrer">Reconnect</a>'
    )
    disabled = str(button_html(_button("👍 Helped", value="{}"), note='Records "helped"'))
    assert disabled == (
        '<button type="button" class="button" disabled title="Records &#34;helped&#34;">👍 Helped</button>'
    )
    assert safe_url("ftp://x") is None and safe_url("https://x y") is None and safe_url("/relative") is None


def test_a_custom_button_renderer_decides_and_none_falls_back() -> None:
    def renderer(button: Mapping[str, Any]) -> Markup | None:
        return (
            Markup("<form>{}</form>").format(button["action_id"]) if button.get("value") == "mine" else None
        )

    rendered = str(
        render_blocks([{"type": "actions", "elements": [_button("A", value="mine"), _button("B", url="https://b")]}],
                      button=renderer)
    )  # fmt: skip
    assert "<form>a</form>" in rendered
    assert '<a class="button" href="https://b"' in rendered


def test_unknown_and_malformed_blocks_are_skipped() -> None:
    blocks: list[Any] = [
        {"type": "rich_text", "elements": [{"type": "rich_text_section"}]},
        {"type": "image", "image_url": "https://x/y.png", "alt_text": "y"},
        "not a block",
        None,
        {"type": "section"},
        {"type": "section", "text": {"type": "mrkdwn"}},
        {"type": "context", "elements": "nope"},
        {"type": "actions", "elements": [{"type": "static_select"}, "junk"]},
        {"type": "divider"},
    ]
    rendered = str(render_blocks(blocks))
    assert rendered == (
        '<div class="bk-message">\n<div class="bk-section"></div>\n'
        '<div class="bk-section"><div class="bk-text"></div></div>\n<hr class="bk-divider">\n</div>'
    )


def test_a_whole_answer_renders_with_its_data_escaped() -> None:
    finding = Finding(
        check="connection",
        code="connection.revoked",
        severity=Severity.ERROR,
        summary=f"Access to {XSS} was revoked",
        hint="Reconnect *now*",
        provider="google",
    )
    answer = compose(
        load_articles(),
        user="rep@example.com",
        user_name="",
        question=XSS,
        findings=[finding],
        checked_at=datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
        checks_run=("connection",),
        reconnect_url=lambda provider: "https://app.example/connect/google?t=1",
    )
    answer = dataclasses.replace(answer, diagnosis_id="42")
    rendered = str(render_blocks(answer_message(answer).blocks))
    assert "<script" not in rendered and "<img" not in rendered
    assert "Access to &lt;script&gt;" in rendered
    assert '<a class="button primary" href="https://app.example/connect/google?t=1"' in rendered
    assert "Checked 2026-11-24 15:00 UTC" in rendered


# (a page's sentence, its HTML): backticks become <code>, everything else is escaped
INLINE_CODE = [
    ("type `/calsync reconnect`.", "type <code>/calsync reconnect</code>."),
    ("`a` and `b`", "<code>a</code> and <code>b</code>"),
    ("no code here", "no code here"),
    ("a lone ` stays", "a lone ` stays"),
    ("`<script>alert(1)</script>`", "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"),
    ('<img src=x onerror="alert(1)"> `x`', "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; <code>x</code>"),
    (None, ""),
]


@pytest.mark.parametrize(("text", "expected"), INLINE_CODE)
def test_inline_code_renders_backticks_and_escapes_the_rest(text: str | None, expected: str) -> None:
    assert str(inline_code(text)) == expected


@given(st.text(max_size=200))
def test_inline_code_makes_no_tag_but_code(text: str) -> None:
    rendered = str(inline_code(text))
    assert set(re.findall(r"<\s*/?\s*([a-zA-Z][\w-]*)", rendered)) <= {"code"}
