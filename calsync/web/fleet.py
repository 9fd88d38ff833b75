"""The fleet view for agents: `GET /fleet/{token}` (every rep by state, filters by state, cause and
organisation, each rep linked to their report, the chart of broken connections, open incidents when
calsync knows of any, and the resolution stats) and `GET /fleet/{token}/stats.csv`.

Signed-in agents only, exactly as the report pages are (`web/claims.py`): the link comes from
`/calsync status`, which only agents get; it is of kind `fleet`, expires after 15 minutes and opens in
the first browser only. A link of another kind (a report, a reconnect link), a damaged one or a second
browser is refused, and the refusal audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from calsync.links import LinkSigner, SignedLink
from calsync.render.fleet import (
    STATE_LABELS,
    STATE_MEANINGS,
    cause_words,
    chart_svg,
    incident_lines,
    stats_csv,
)
from calsync.store.fleet import STATES, Filters, FleetStore
from calsync.store.reports import ReportStore
from calsync.web.claims import OneBrowserLinks
from calsync.web.pages import when
from calsync.web.templating import make_templates

FLEET_KIND = "fleet"
FLEET_CLAIM_KIND = "fleet-claim"
FLEET_COOKIE_PREFIX = "calsync_fleet_"
_NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}

ReportUrl = Callable[[str, str], str]  # (agent, rep email) -> a signed report link for that agent


class FleetQuery(BaseModel):
    state: str = Field("", max_length=32)
    cause: str = Field("", max_length=64)
    org: str = Field("", max_length=320)


def create_fleet_router(
    *,
    fleet: FleetStore,
    reports: ReportStore,
    links: LinkSigner,
    clock: Callable[[], datetime],
    public_url: str,
    report_url: ReportUrl,
) -> APIRouter:
    templates = make_templates()
    templates.env.filters["when"] = when
    templates.env.filters["cause_words"] = cause_words
    router = APIRouter(include_in_schema=False)
    one_browser = OneBrowserLinks(
        links=links,
        claim_view=reports.claim_view,
        clock=clock,
        public_url=public_url,
        kind=FLEET_KIND,
        claim_kind=FLEET_CLAIM_KIND,
        cookie_prefix=FLEET_COOKIE_PREFIX,
        cookie_path="/fleet/",
    )

    def problem(request: Request, status: int, title: str, message: str, hint: str = "") -> Response:
        return templates.TemplateResponse(
            request,
            "page_problem.html",
            {"title": title, "message": message, "hint": hint, "status": status, "home_url": "/"},
            status_code=status,
            headers=_NO_STORE,
        )

    async def agent_opening(request: Request, token: str) -> tuple[SignedLink, str, bool] | Response:
        """The link, its agent and whether this is its first opening; or the refusal page."""
        link = one_browser.read(token)
        if link == "expired":
            return problem(
                request,
                410,
                "This fleet link has expired",
                "Fleet links work for 15 minutes after /calsync status made them.",
                "Run /calsync status in Slack again for a fresh link.",
            )
        agent = "" if isinstance(link, str) else link.subject.get("agent")
        if isinstance(link, str) or not isinstance(agent, str) or not agent:
            return problem(
                request,
                403,
                "This fleet link isn't valid",
                "The fleet view is for support agents, through the link /calsync status gives them; this "
                "link is damaged, of another kind, or was not made by calsync, so it opens nothing.",
                "Support agents: run /calsync status in Slack.",
            )
        opened = await one_browser.open(request, link)
        if opened is None:
            await asyncio.to_thread(
                reports.audit, agent, "", "fleet_open", "refused: opened in another browser", {}
            )
            return problem(
                request,
                403,
                "This fleet view is already open in another browser",
                "A fleet link opens in the first browser that uses it, and only there: it shows every "
                "rep's calendar state to the agent who asked, and to nobody else.",
                "If this is you on another device, run /calsync status in Slack again for a fresh link.",
            )
        return link, agent, opened.first_open

    @router.get("/fleet/{token}", response_class=HTMLResponse)
    async def fleet_page(request: Request, token: str, query: Annotated[FleetQuery, Query()]) -> Response:
        opening = await agent_opening(request, token)
        if isinstance(opening, Response):
            return opening
        link, agent, first_open = opening
        filters = Filters(
            state=query.state if query.state in STATES else "",
            cause=query.cause.strip(),
            org=query.org.strip(),
        )
        await asyncio.to_thread(reports.audit, agent, "", "fleet_open", "opened", {"first_open": first_open})
        seen = await asyncio.to_thread(fleet.fleet, filters)
        by_cause = await asyncio.to_thread(fleet.stats, by="cause")
        by_article = await asyncio.to_thread(fleet.stats, by="article")
        context: dict[str, Any] = {
            "home_url": "/",
            "fleet": seen,
            "token": token,
            "states": STATES,
            "labels": STATE_LABELS,
            "meanings": STATE_MEANINGS,
            "chart": chart_svg(seen.chart),
            "incidents": incident_lines(seen),
            "reports": {rep.email: report_url(agent, rep.email) for rep in seen.reps},
            "by_cause": by_cause,
            "by_article": by_article,
            "agent": agent,
            "expires": link.expires_at,
        }
        response = templates.TemplateResponse(request, "fleet.html", context, headers=_NO_STORE)
        if first_open:
            one_browser.set_claim(request, response, link)
        return response

    @router.get("/fleet/{token}/stats.csv")
    async def stats_export(request: Request, token: str) -> Response:
        opening = await agent_opening(request, token)
        if isinstance(opening, Response):
            return opening
        link, agent, first_open = opening
        await asyncio.to_thread(reports.audit, agent, "", "fleet_stats_csv", "exported", {})
        rows = await asyncio.to_thread(fleet.stats, by="cause")
        response = Response(
            stats_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={
                **_NO_STORE,
                "Content-Disposition": 'attachment; filename="calsync-resolution-stats.csv"',
            },
        )
        if first_open:
            one_browser.set_claim(request, response, link)
        return response

    return router


__all__ = ["FLEET_KIND", "create_fleet_router"]
