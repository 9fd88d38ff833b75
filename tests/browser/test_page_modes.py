"""Which pages exist where (no browser needed): the playground only in sandbox mode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from calsync.diagnostics.troubleshooter import Troubleshooter
from calsync.links import LinkSigner
from calsync.store.reports import ReportStore
from calsync.web.pages import PagesConfig, create_pages_router

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def client(sandbox: bool) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(
        create_pages_router(
            troubleshooter=cast(Troubleshooter, object()),  # never reached by these requests
            store=ReportStore(cast(sessionmaker[Session], object()), lambda: NOW),
            clock=lambda: NOW,
            links=LinkSigner(b"0123456789abcdef0123", lambda: NOW),
            config=PagesConfig(sandbox=sandbox),
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pages.test")


@pytest.mark.parametrize("path", ["/playground", "/playground/ask?rep=a@b.c&q=hi"])
async def test_no_playground_outside_sandbox_mode(path: str) -> None:
    async with client(sandbox=False) as http:
        assert (await http.get(path)).status_code == 404


async def test_a_bad_report_link_is_refused_in_any_mode() -> None:
    for sandbox in (False, True):
        async with client(sandbox) as http:
            response = await http.get("/reports/garbage")
        assert response.status_code == 403
        assert "This report link isn&#39;t valid" in response.text or "isn't valid" in response.text
        assert response.headers["cache-control"] == "no-store"
