"""The pages: the agent's full report (`GET /reports/{token}`) and, in sandbox mode only, the
playground (`GET /playground`, `/playground/ask`), where anyone can ask as a demo rep and see the
reply the bot would post, rendered from the same Block Kit.

The report link is a signed, short-lived link (kind "report", subject {agent, rep}) that the bot
only ever sends ephemerally to the agent who ran `/calsync diagnose @rep`. On top of that the first
browser that opens it claims it: the claim is recorded in the database (a `report_views` row
keyed by a digest of the link's nonce: one insert wins, across processes) and the browser gets an
HttpOnly, SameSite=Strict cookie (Secure over https) holding a signed claim of that nonce (a
signed link of kind "report-claim", so it cannot be forged or moved to another report). The same URL in
any other browser is refused. Every opening re-runs the diagnosis live and is audited with the
agent as the actor; a refused opening is audited too.

Everything renders server-side without JavaScript (forms and links only). What the pages store and
read goes through `calsync.store.reports`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from pydantic import BaseModel, Field

from calsync.diagnostics.findings import Finding
from calsync.diagnostics.troubleshooter import Troubleshooter, UnknownUser
from calsync.knowledge.matcher import MAX_QUESTION_CHARS
from calsync.links import LinkSigner
from calsync.render import blocks
from calsync.render.agent import about_rep, first_name
from calsync.render.html import button_html, render_blocks
from calsync.store.reports import ReportStore
from calsync.web.claims import OneBrowserLinks
from calsync.web.templating import make_templates

log = logging.getLogger(__name__)

REPORT_KIND = "report"
CLAIM_KIND = "report-claim"  # the cookie of the browser that opened a report link first
COOKIE_PREFIX = "calsync_report_"
MAX_EVIDENCE_VALUE = 2000
_SECRET_KEY = re.compile(r"token|secret|password", re.IGNORECASE)
_NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}


class PlaygroundAsk(BaseModel):
    """The playground's question, from the query string (GET) or the form (POST)."""

    rep: str = Field("", max_length=320)
    q: str = Field("", max_length=MAX_QUESTION_CHARS * 2)
    article: str = Field("", max_length=64)
    details: str = Field("", max_length=1)


@dataclass(frozen=True)
class PagesConfig:
    sandbox: bool  # the playground exists only in sandbox mode
    public_url: str = "http://127.0.0.1:8000"
    examples: Sequence[tuple[str, str]] = ()  # (rep email, question) shown as links on the playground
    problems: Mapping[str, str] = field(default_factory=dict)  # rep email -> the demo's one-liner
    sandbox_ca: str = (
        ""  # the sandbox CA file (the Microsoft emulator's https), said beside Reconnect Outlook
    )


# -- helpers ----------------------------------------------------------------------------------------


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def evidence_items(finding: Finding) -> list[tuple[str, str]]:
    """`(key, value)` to show, never a key that looks like a token, secret or password."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    items = []
    for key, value in finding.evidence.items():
        if _SECRET_KEY.search(str(key)):
            continue
        safe = clean(value)
        shown = safe if isinstance(safe, str) else json.dumps(safe, ensure_ascii=False, default=str)
        if len(shown) > MAX_EVIDENCE_VALUE:
            shown = shown[: MAX_EVIDENCE_VALUE - 1] + "…"
        items.append((str(key), shown))
    return items


def _button_value(button: Mapping[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(str(button.get("value") or "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- the router -------------------------------------------------------------------------------------


def create_pages_router(
    *,
    troubleshooter: Troubleshooter,
    store: ReportStore,
    clock: Callable[[], datetime],
    links: LinkSigner,
    config: PagesConfig,
) -> APIRouter:
    templates = make_templates()
    templates.env.filters["when"] = when
    templates.env.globals["evidence_items"] = evidence_items
    templates.env.filters["about_rep"] = about_rep  # the report speaks of the rep, to an agent
    router = APIRouter(include_in_schema=False)
    home = "/playground" if config.sandbox else "/"

    def page(
        request: Request, name: str, context: dict[str, Any], status: int = 200, *, private: bool = False
    ) -> Response:
        return templates.TemplateResponse(
            request,
            name,
            {"home_url": home, **context},
            status_code=status,
            headers=_NO_STORE if private else None,
        )

    def problem(request: Request, status: int, title: str, message: str, hint: str = "") -> Response:
        context = {"title": title, "message": message, "hint": hint, "status": status}
        return page(request, "page_problem.html", context, status, private=True)

    # -- the agent's report ----------------------------------------------------------------------

    one_browser = OneBrowserLinks(
        links=links,
        claim_view=store.claim_view,
        clock=clock,
        public_url=config.public_url,
        kind=REPORT_KIND,
        claim_kind=CLAIM_KIND,
        cookie_prefix=COOKIE_PREFIX,
        cookie_path="/reports/",
    )

    @router.get("/reports/{token}", response_class=HTMLResponse)
    async def report(request: Request, token: str) -> Response:
        link = one_browser.read(token)
        if link == "expired":
            return problem(
                request,
                410,
                "This report link has expired",
                "Report links work for 15 minutes after the diagnosis they come from.",
                "Run /calsync diagnose @rep in Slack again for a fresh link.",
            )
        if link == "invalid":
            return problem(
                request,
                403,
                "This report link isn't valid",
                "The link is damaged or was not made by calsync, so it opens nothing.",
                "Use the “Open full report” button of a /calsync diagnose reply in Slack.",
            )
        assert not isinstance(link, str)
        agent, rep = link.subject.get("agent"), link.subject.get("rep")
        if not isinstance(agent, str) or not isinstance(rep, str) or not agent or not rep:
            return problem(request, 403, "This report link isn't valid", "The link names no agent or rep.")
        opened = await one_browser.open(request, link)
        if opened is None:
            await asyncio.to_thread(
                store.audit, agent, rep, "report_open", "refused: opened in another browser", {}
            )
            return problem(
                request,
                403,
                "This report is already open in another browser",
                "A report link opens in the first browser that uses it, and only there: reports show "
                "a rep's details to the agent who asked for them, and to nobody else.",
                "If this is you on another device, run /calsync diagnose @rep in Slack again for a "
                "fresh link.",
            )
        first_open = opened.first_open
        await asyncio.to_thread(store.audit, agent, rep, "report_open", "opened", {"first_open": first_open})
        try:
            answer = await troubleshooter.diagnose(rep, actor=agent)
        except UnknownUser:
            return problem(
                request, 404, "No such rep", "This rep is no longer a SalesPartner user; nothing was checked."
            )
        state = await asyncio.to_thread(store.rep_state, rep)
        response = page(
            request,
            "report.html",
            {
                "answer": answer,
                "rep_name": first_name(answer.user_name, answer.user),
                "agent": agent,
                "state": state,
                "expires": link.expires_at,
                "connections": {c.id: c for c in state.connections} if state else {},
            },
            private=True,
        )
        if first_open:
            one_browser.set_claim(request, response, link)
        return response

    if not config.sandbox:
        return router

    # -- the playground (sandbox only) -----------------------------------------------------------

    def playground_buttons(rep: str) -> Callable[[Mapping[str, Any]], Markup | None]:
        def render(button: Mapping[str, Any]) -> Markup | None:
            base = blocks.base_action_id(str(button.get("action_id", "")))
            if base in (blocks.ACTION_CHECK_AGAIN, blocks.ACTION_DID_YOU_MEAN, blocks.ACTION_DETAILS):
                value = _button_value(button)
                question = value.get("question") if isinstance(value.get("question"), str) else ""
                article = value.get("article") if isinstance(value.get("article"), str) else ""
                return Markup(
                    '<form method="post" action="/playground/ask" class="inline">'
                    '<input type="hidden" name="rep" value="{}">'
                    '<input type="hidden" name="q" value="{}">'
                    '<input type="hidden" name="article" value="{}">'
                    '<input type="hidden" name="details" value="{}">'
                    '<button type="submit" class="button">{}</button></form>'
                ).format(
                    rep,
                    question,
                    article,
                    "1" if base == blocks.ACTION_DETAILS else "",
                    button_html(button).striptags(),
                )
            if base in (blocks.ACTION_HELPED, blocks.ACTION_NOT_HELPED):
                return button_html(button, note="In Slack, this records whether the answer helped.")
            if base == blocks.ACTION_RECONNECT and button.get("value") == "microsoft" and config.sandbox_ca:
                return button_html(button) + Markup(
                    '<span class="note ca-note" id="outlook-ca">The sandbox\'s Outlook sign-in is https with '
                    "calsync's own test certificate, so the browser warns: trust the sandbox CA "
                    "<code>{}</code> (import it as an authority in the browser's certificate settings) or "
                    "go past the warning — it is the local emulator on 127.0.0.1.</span>"
                ).format(config.sandbox_ca)
            if base == blocks.ACTION_TALK_TO_SUPPORT:
                return button_html(
                    button, note="In Slack, this posts the question and this answer to the support channel."
                )
            return None

        return render

    async def playground_page(
        request: Request, rep: str = "", question: str = "", article: str = "", details: bool = False
    ) -> Response:
        people = await asyncio.to_thread(store.reps)
        context: dict[str, Any] = {
            "reps": [(email, name, config.problems.get(email, "")) for email, name in people],
            "examples": config.examples,
            "rep": rep,
            "question": question,
            "answer": None,
            "reply": None,
            "details": None,
            "error": "",
        }
        status = 200
        asked = bool(rep or question or article)
        if asked:
            if not rep or not (question.strip() or article):
                context["error"] = "Pick a rep and type a question."
                status = 400
            else:
                try:
                    answer = await troubleshooter.answer(
                        rep, question.strip() or None, actor="playground", article=article or None
                    )
                except UnknownUser:
                    context["error"] = f"There is no rep {rep} in the sandbox."
                    status = 404
                except KeyError:
                    context["error"] = "That article doesn't exist."
                    status = 400
                else:
                    message = blocks.answer_message(answer, knowledge=troubleshooter.knowledge)
                    context["answer"] = answer
                    context["reply"] = render_blocks(message.blocks, button=playground_buttons(rep))
                    if details:
                        more = blocks.details_message(answer)
                        context["details"] = render_blocks(more.blocks, button=playground_buttons(rep))
        return page(request, "playground.html", context, status)

    @router.get("/playground", response_class=HTMLResponse)
    async def playground(request: Request) -> Response:
        return await playground_page(request)

    async def ask(request: Request, asked: PlaygroundAsk) -> Response:
        return await playground_page(
            request,
            asked.rep.strip(),
            asked.q[:MAX_QUESTION_CHARS],
            asked.article.strip(),
            asked.details == "1",
        )

    @router.get("/playground/ask", response_class=HTMLResponse)
    async def ask_get(request: Request, asked: Annotated[PlaygroundAsk, Query()]) -> Response:
        return await ask(request, asked)

    @router.post("/playground/ask", response_class=HTMLResponse)
    async def ask_post(request: Request, asked: Annotated[PlaygroundAsk, Form()]) -> Response:
        return await ask(request, asked)

    return router


__all__ = ["PagesConfig", "create_pages_router", "evidence_items", "when"]
