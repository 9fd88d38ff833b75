"""An `Answer` as Slack Block Kit: the rep's answer (headline, fix and steps, buttons), the agent's
view (causes, every finding with code and evidence, agent actions), Details, and `/calsync help`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from calsync.diagnostics.answer import Answer, MarkedStep, ShownArticle
from calsync.diagnostics.causes import Cause
from calsync.diagnostics.findings import Finding, Severity
from calsync.knowledge.loader import KnowledgeBase
from calsync.render import kit, labels
from calsync.render.fixes import agent_fix_buttons, rep_fix_buttons
from calsync.render.kit import (
    ACTION_CHECK_AGAIN,
    ACTION_DETAILS,
    ACTION_DID_YOU_MEAN,
    ACTION_HELPED,
    ACTION_NOT_HELPED,
    ACTION_OPEN_REPORT,
    ACTION_RECONNECT,
    ACTION_SEND_RECONNECT_LINK,
    ACTION_SYNC_NOW,
    ACTION_TALK_TO_SUPPORT,
    ELLIPSIS,
    MAX_CAUSE_BLOCKS,
    MAX_CAUSE_LINE,
    MAX_DID_YOU_MEAN,
    MAX_EVIDENCE_LINES,
    MAX_EVIDENCE_VALUE,
    MAX_FALLBACK_TEXT,
    MAX_MESSAGE_BLOCKS,
    OTHER_HELP_LINE,
    QUOTED_QUESTION_CHARS,
    SEVERITY_EMOJI,
    Message,
    escape_mrkdwn,
)
from calsync.render.text import help_topics

# -- the pieces of an answer ------------------------------------------------------------------------


def finding_line(finding: Finding, hint: str | None = None) -> str:
    """One finding with its hint (`hint`: another one instead, "" for none)."""
    line = f"{SEVERITY_EMOJI[finding.severity]} {escape_mrkdwn(finding.summary)}"
    hint = finding.hint if hint is None else hint
    if hint and finding.severity is not Severity.OK:
        line += f"\n      → _{escape_mrkdwn(hint)}_"
    return line


def _evidence_value(value: Any) -> Any:
    """A JSON-safe copy with secret-looking keys removed at every depth."""
    if isinstance(value, Mapping):
        return {
            str(key): _evidence_value(item)
            for key, item in value.items()
            if not kit.SECRET_KEY.search(str(key))
        }
    if isinstance(value, (list, tuple)):
        return [_evidence_value(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _evidence_lines(finding: Finding) -> list[str]:
    """`key: value` lines (escaped, each value cut short), never a key that mentions a token or secret."""
    lines = []
    items = [
        (str(key), value) for key, value in finding.evidence.items() if not kit.SECRET_KEY.search(str(key))
    ]
    for key, value in items[:MAX_EVIDENCE_LINES]:
        safe = _evidence_value(value)
        shown = safe if isinstance(safe, str) else json.dumps(safe, ensure_ascii=False, default=str)
        shown = " ".join(shown.split())  # one line per key
        lines.append(
            f"{escape_mrkdwn(kit.truncate(key, 60))}: {escape_mrkdwn(kit.truncate(shown, MAX_EVIDENCE_VALUE))}"
        )
    if len(items) > MAX_EVIDENCE_LINES:
        lines.append(f"{ELLIPSIS} {len(items) - MAX_EVIDENCE_LINES} more")
    return lines


def _agent_finding_blocks(finding: Finding, *, first: bool = False) -> list[dict[str, Any]]:
    code = f"`{escape_mrkdwn(finding.code)}`"
    evidence = "\n".join([code, *_evidence_lines(finding)])
    line = finding_line(finding)
    return [kit.section(f"*What I found*\n{line}" if first else line), kit.context(evidence)]


def _agent_finding_compact(finding: Finding) -> str:
    detail = " · ".join([f"`{escape_mrkdwn(finding.code)}`", *_evidence_lines(finding)])
    return f"{finding_line(finding)}\n      {kit.truncate(detail, 1200)}"


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
    blocks = [kit.section(text) for text in kit.pack((_step_text(m) for m in shown.steps), separator="\n\n")]
    blocks.append(kit.context(f"From the help center: _{escape_mrkdwn(shown.article.title)}_"))
    return blocks


def _cause_blocks(answer: Answer, cause: Cause, *, first: bool) -> list[dict[str, Any]]:
    """A cause: (when not the headline) its summary, then its fix and that fix's steps."""
    blocks: list[dict[str, Any]] = []
    words = escape_mrkdwn(cause.fix.words)
    fix = f"*Fix:* {words}" if cause.fix.by_rep else words
    if first:
        if words:
            blocks.append(kit.section(fix))
    else:
        emoji = SEVERITY_EMOJI[cause.severity]
        blocks.append(
            kit.section(f"{emoji} *Also:* {escape_mrkdwn(cause.summary)}" + (f"\n{fix}" if words else ""))
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
    body.append(kit.context(f"{ELLIPSIS} {more_note}"))
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
    answer: Answer, knowledge: KnowledgeBase, ids: kit.ActionIds, prompt: str
) -> list[dict[str, Any]]:
    candidates = _candidates(answer, knowledge)
    if not candidates:
        return []
    titles = " or ".join(f"“{escape_mrkdwn(title)}”" for _, title in candidates)
    buttons = [
        kit.button(
            title,
            ids(ACTION_DID_YOU_MEAN, numbered=True),
            value=kit.json_value(
                {"article": article_id, "question": answer.question or "", "diagnosis": answer.diagnosis_id},
                "question",
            ),
        )
        for article_id, title in candidates
    ]
    return [kit.section(prompt.format(titles=titles)), *kit.actions(buttons)]


def _question_value(answer: Answer | None) -> str:
    """What a button that asks again carries: the article, the question, and the diagnosis it came
    from (whose subject is the answer's owner: a click by anyone else never acts on it)."""
    if answer is None:
        return kit.json_value({"article": None, "question": None})
    payload = {"article": answer.article, "question": answer.question, "diagnosis": answer.diagnosis_id}
    return kit.json_value(payload, shrink="question")


def check_again_button(ids: kit.ActionIds, answer: Answer | None) -> dict[str, Any]:
    return kit.button("🔄 Check again", ids(ACTION_CHECK_AGAIN), value=_question_value(answer))


def reconnect_buttons(answer: Answer, ids: kit.ActionIds, *, private: bool = True) -> list[dict[str, Any]]:
    """Reconnect per provider. In private (a DM, an ephemeral reply, App Home) the button is the
    signed link itself; in a channel it carries no link — a click gives the owner theirs, privately."""
    buttons = []
    for action in answer.actions:
        if action.kind != "reconnect" or not action.url:
            continue
        if private:
            value, url = action.provider or "", action.url
        else:
            value, url = kit.json_value({"diagnosis": answer.diagnosis_id, "provider": action.provider}), None
        buttons.append(kit.button(action.label, ids(ACTION_RECONNECT), value=value, url=url, style="primary"))
    return buttons


def _rep_buttons(
    answer: Answer, ids: kit.ActionIds, *, details: bool = True, private: bool = True
) -> list[dict[str, Any]]:
    """The fix first (Reconnect or Sync now), then Details, Check again, feedback; Talk to support
    only when the rep has no fix of their own to make."""
    buttons = [*reconnect_buttons(answer, ids, private=private), *rep_fix_buttons(answer, ids)]
    if answer.kind == "declined":  # the fix of a broken calendar, if any; else where to go
        if not answer.has_rep_fix:
            buttons.append(
                kit.button(
                    "Talk to support",
                    ids(ACTION_TALK_TO_SUPPORT),
                    value=kit.json_value({"diagnosis": answer.diagnosis_id}),
                )
            )
        return buttons
    question_value = _question_value(answer)
    if any(action.kind == "sync_now" for action in answer.actions):
        buttons.append(kit.button("⚡ Sync now", ids(ACTION_SYNC_NOW), value=question_value, style="primary"))
    if details and answer.findings:
        buttons.append(kit.button("Details", ids(ACTION_DETAILS), value=question_value))
    buttons.append(check_again_button(ids, answer))
    if answer.diagnosis_id is not None:
        feedback = kit.json_value({"diagnosis": answer.diagnosis_id, "article": answer.article})
        buttons.append(kit.button("👍 Helped", ids(ACTION_HELPED), value=feedback))
        buttons.append(kit.button("👎 Didn't help", ids(ACTION_NOT_HELPED), value=feedback))
    if not answer.has_rep_fix:
        for action in answer.actions:
            if action.kind == "contact_support":
                value = kit.json_value({"diagnosis": answer.diagnosis_id})
                buttons.append(kit.button(action.label, ids(ACTION_TALK_TO_SUPPORT), value=value))
                break
    return buttons


def _agent_buttons(answer: Answer, ids: kit.ActionIds, report_url: str | None) -> list[dict[str, Any]]:
    providers = [a.provider for a in answer.actions if a.kind == "reconnect" and a.provider]
    providers = list(dict.fromkeys(providers))
    buttons = []
    for provider in providers:
        label = "Send reconnect link to rep"
        if len(providers) > 1:
            label = f"Send {labels.product(provider)} reconnect link to rep"
        value = kit.json_value({"rep": answer.user, "provider": provider})
        buttons.append(kit.button(label, ids(ACTION_SEND_RECONNECT_LINK), value=value, style="primary"))
    buttons.extend(agent_fix_buttons(answer, ids))
    if report_url:
        buttons.append(kit.button("Open full report", ids(ACTION_OPEN_REPORT), url=report_url))
    return buttons


def _who(answer: Answer) -> str:
    return f"{answer.user_name} · {answer.user}" if answer.user_name else answer.user


def help_message(is_agent: bool, *, knowledge: KnowledgeBase | None = None) -> Message:
    """What `/calsync help` says."""
    kb = knowledge or kit.default_knowledge()
    commands = [
        "• `/calsync diagnose` — check your own calendar connection now",
        "• `/calsync reconnect` — get a link to reconnect your calendar",
    ]
    if is_agent:
        commands.append(
            "• `/calsync diagnose @user` — the whole picture of a rep's sync state (only you see it)"
        )
        commands.append("• `/calsync status` — every rep's calendar sync at a glance, with the fleet view")
    commands.append("• `/calsync help` — this message")
    topics = ", ".join(escape_mrkdwn(article.title) for article in kb.articles)
    blocks = [
        kit.section(
            "*Ask me about calendar sync* in a DM, or @mention me in a help channel — for example "
            "_why isn't my appointment showing?_ I check your connection live and show the steps that fix it."
        ),
        kit.section("*Commands*\n" + "\n".join(commands)),
        kit.context(f"I can help with: {topics}.", escape_mrkdwn(OTHER_HELP_LINE)),
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


def _body(answer: Answer, kb: KnowledgeBase, ids: kit.ActionIds) -> list[list[dict[str, Any]]]:
    """The rep's answer below the headline, in groups `_fit` may cut: each cause with its fix and
    steps, the matched article when it adds something, "did you mean" when nothing was found."""
    if answer.kind == "declined":
        groups = [[kit.section(text) for text in kit.pack(escape_mrkdwn(help_topics(kb)).split("\n"))]]
        if answer.shown_causes:
            cause = answer.shown_causes[0]
            line = f"{SEVERITY_EMOJI[cause.severity]} *By the way:* {escape_mrkdwn(cause.summary)}"
            groups.append([kit.section(f"{line}\n*Fix:* {escape_mrkdwn(cause.fix.words)}")])
        return groups
    groups = [
        _cause_blocks(answer, cause, first=index == 0) for index, cause in enumerate(answer.shown_causes)
    ]
    for shown in answer.articles:
        if shown.cause is None:
            groups.append([kit.header(shown.article.title), *_steps_blocks(shown)[:-1]])
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
    kb = knowledge or kit.default_knowledge()
    ids = kit.ActionIds()
    head: list[dict[str, Any]] = [kit.section(preface)] if preface else []
    if answer.kind == "smalltalk":
        return Message(
            text=kit.truncate(escape_mrkdwn(answer.headline), MAX_FALLBACK_TEXT),
            blocks=[*head, kit.section(escape_mrkdwn(answer.headline))],
        )
    if for_agent:
        head.append(kit.header(f"🔎 {_who(answer)}"))
        notes = []
        if answer.question is not None:
            notes.append(
                f"Q: _{escape_mrkdwn(kit.truncate(' '.join(answer.question.split()), QUOTED_QUESTION_CHARS))}_"
            )
        notes.append(kit.slack_date(answer.checked_at, "Checked {date_short_pretty} {time}", "Checked "))
        if answer.diagnosis_id is not None:
            notes.append(f"diagnosis {escape_mrkdwn(answer.diagnosis_id)}")
        head.append(kit.context(" · ".join(notes)))
    head.append(kit.section(_headline(answer)))

    if for_agent:
        causes = [
            kit.truncate(
                f"{SEVERITY_EMOJI[c.severity]} `{escape_mrkdwn(c.code)}` {escape_mrkdwn(c.fix.words)} "
                f"_({escape_mrkdwn(', '.join(c.findings))})_",
                MAX_CAUSE_LINE,
            )
            for c in answer.causes
        ]
        tail = kit.actions(_agent_buttons(answer, ids, report_url))
        more = "more in the full report." if report_url else "more than fits in one message."
        if causes:  # short lines: they stay whole, the findings below are what gets cut
            head.extend(kit.section(text) for text in kit.pack(["*Causes*", *causes])[:MAX_CAUSE_BLOCKS])
        wide = [_agent_finding_blocks(f, first=i == 0) for i, f in enumerate(answer.findings)]
        if sum(len(group) for group in wide) <= MAX_MESSAGE_BLOCKS - len(head) - len(tail):
            blocks = _fit(head, wide, tail, limit=MAX_MESSAGE_BLOCKS, more_note=more)
        else:
            lines = [_agent_finding_compact(f) for f in answer.findings]
            packed = [kit.section(text) for text in kit.pack(["*What I found*", *lines])]
            blocks = _fit(head, [packed], tail, limit=MAX_MESSAGE_BLOCKS, more_note=more)
        who = f"{answer.user_name} ({answer.user})" if answer.user_name else answer.user
        return Message(
            text=kit.truncate(escape_mrkdwn(f"{who}: {answer.headline}"), MAX_FALLBACK_TEXT), blocks=blocks
        )

    tail = [
        kit.context(kit.slack_date(answer.checked_at, "Checked {time}", "Checked ")),
        *kit.actions(_rep_buttons(answer, ids, private=private)),
    ]
    more = "there is more than fits here — tap Details, or talk to support."
    blocks = _fit(head, _body(answer, kb, ids), tail, limit=MAX_MESSAGE_BLOCKS, more_note=more)
    return Message(text=kit.truncate(escape_mrkdwn(answer.headline), MAX_FALLBACK_TEXT), blocks=blocks)


def details_message(answer: Answer) -> Message:
    """What *Details* shows the rep: every finding of the diagnosis with its hint (no evidence), and
    *Talk to support* always (the answer itself offers it only where the rep has no fix)."""
    ids = kit.ActionIds()
    lines = ["*What I checked*", *(finding_line(f, answer.hint_for(f)) for f in answer.findings)]
    head = [kit.section(_headline(answer))]
    support = kit.button(
        "Talk to support",
        ids(ACTION_TALK_TO_SUPPORT),
        value=kit.json_value({"diagnosis": answer.diagnosis_id}),
    )
    tail = [
        kit.context(kit.slack_date(answer.checked_at, "Checked {time}", "Checked ")),
        *kit.actions([check_again_button(ids, answer), support]),
    ]
    body = [[kit.section(text) for text in kit.pack(lines)]]
    blocks = _fit(head, body, tail, limit=MAX_MESSAGE_BLOCKS, more_note="more in a diagnosis by support.")
    return Message(text=kit.truncate(escape_mrkdwn(answer.headline), MAX_FALLBACK_TEXT), blocks=blocks)
