"""Links an agent opens in one browser only: the report page's mechanism, shared by every agent page
(the report, the fleet view).

The link is a signed, expiring link of its own kind, handed only to the agent (ephemerally, in
Slack). The first browser that opens it claims it — a `report_views` row keyed by a digest of the
link's nonce, one insert wins across processes (`calsync.store.reports.ReportStore.claim_view`) —
and gets an HttpOnly, SameSite=Strict cookie (Secure over https) holding a signed claim of that nonce
(a link of the claim kind, so it can be neither forged nor moved to another link). Any other browser
presenting the same URL is refused."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from fastapi import Request, Response

from calsync.links import LinkExpired, LinkInvalid, LinkSigner, SignedLink
from calsync.store.reports import nonce_digest

Refusal = Literal["expired", "invalid", "elsewhere"]


@dataclass(frozen=True)
class Opened:
    link: SignedLink
    first_open: bool  # this browser just claimed it: `set_claim` on the response


@dataclass(frozen=True)
class OneBrowserLinks:
    links: LinkSigner
    claim_view: Callable[[str], bool]  # nonce -> True for the first browser (blocking: a thread)
    clock: Callable[[], datetime]
    public_url: str
    kind: str  # e.g. "report"
    claim_kind: str  # e.g. "report-claim"
    cookie_prefix: str  # e.g. "calsync_report_"
    cookie_path: str  # e.g. "/reports/"

    def cookie_name(self, link: SignedLink) -> str:
        return f"{self.cookie_prefix}{nonce_digest(link.nonce)[:20]}"

    def holds_claim(self, presented: str, nonce: str) -> bool:
        """The browser shows the claim cookie this link's first opening set (itself a signed link)."""
        if not presented:
            return False
        try:
            held = self.links.read(presented, self.claim_kind)
        except (LinkExpired, LinkInvalid):
            return False
        return hmac.compare_digest(str(held.subject.get("nonce", "")).encode(), nonce.encode())

    def read(self, token: str) -> SignedLink | Refusal:
        try:
            return self.links.read(token, self.kind)
        except LinkExpired:
            return "expired"
        except LinkInvalid:
            return "invalid"

    async def open(self, request: Request, link: SignedLink) -> Opened | None:
        """This browser's opening of `link`: None when another browser claimed it first."""
        if self.holds_claim(request.cookies.get(self.cookie_name(link), ""), link.nonce):
            return Opened(link, first_open=False)
        if not await asyncio.to_thread(self.claim_view, link.nonce):
            return None
        return Opened(link, first_open=True)

    def set_claim(self, request: Request, response: Response, link: SignedLink) -> None:
        """The first browser's cookie: the claim, for as long as the link lives."""
        ttl = max(link.expires_at - self.clock(), timedelta(seconds=1))
        secure = request.url.scheme == "https" or self.public_url.startswith("https")
        response.set_cookie(
            self.cookie_name(link),
            self.links.make(self.claim_kind, {"nonce": link.nonce}, ttl),
            max_age=int(ttl.total_seconds()) + 1,
            path=self.cookie_path,
            httponly=True,
            samesite="strict",
            secure=secure,
        )


__all__ = ["OneBrowserLinks", "Opened", "Refusal"]
