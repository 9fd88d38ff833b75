"""Every response carries nosniff and X-Frame-Options; every HTML page a CSP with frame-ancestors
'none' and a referrer policy (no-referrer where the URL carries a token). The real app, on loopback."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from calsync.sandbox.server import BackgroundServer
from calsync.web.app import create_web_app
from calsync.web.hardening import CONTENT_SECURITY_POLICY
from tests.web.conftest import Pages

DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"
CARLA = "carla@northwind.example"


def _report(pages: Pages) -> str:
    token = pages.signer.make("report", {"agent": "U0DEMOSAM", "rep": CARLA}, timedelta(minutes=15))
    return f"/reports/{token}"


# (method, path, form, the referrer policy an HTML answer must have)
ROWS = [
    pytest.param("GET", lambda p: "/playground", None, "same-origin", id="playground"),
    pytest.param(
        "GET",
        lambda p: f"/playground/ask?rep={CARLA}&q=why+isnt+it+showing",
        None,
        "same-origin",
        id="ask-get",
    ),
    pytest.param(
        "POST", lambda p: "/playground/ask", {"rep": CARLA, "q": "duplicates"}, "same-origin", id="ask-post"
    ),
    pytest.param("GET", _report, None, "no-referrer", id="report"),
    pytest.param("GET", lambda p: "/reports/not-a-token", None, "no-referrer", id="report-refused"),
    pytest.param("GET", lambda p: "/connect/google?t=garbage", None, "no-referrer", id="reconnect-refused"),
    pytest.param(
        "GET",
        lambda p: "/oauth/google/callback?state=unknown&code=x",
        None,
        "no-referrer",
        id="callback-refused",
    ),
    pytest.param("GET", lambda p: "/no-such-page", None, None, id="not-found"),
    pytest.param("GET", lambda p: "/", None, "same-origin", id="front-page"),
    pytest.param("GET", lambda p: "/readme", None, None, id="readme"),
    pytest.param("GET", lambda p: "/healthz", None, None, id="healthz"),
    pytest.param("GET", lambda p: "/static/calsync.css", None, None, id="stylesheet"),
]


@pytest.mark.parametrize(("method", "path", "form", "referrer"), ROWS)
def test_every_response_carries_the_security_headers(
    pages: Pages,
    method: str,
    path: Callable[[Pages], str],
    form: dict[str, str] | None,
    referrer: str | None,
) -> None:
    response = httpx.request(method, pages.url + path(pages), data=form, timeout=30, follow_redirects=False)
    assert response.status_code < 500, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    html = response.headers.get("content-type", "").startswith("text/html")
    assert html == (referrer is not None), response.headers.get("content-type")
    if html:
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == referrer


def test_a_reconnect_redirect_carries_no_referrer(pages: Pages) -> None:
    """The link's token is in the URL the browser leaves for the provider's consent page."""
    link = pages.links(CARLA, "google")
    response = httpx.get(link, timeout=30, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def _links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def test_the_front_page_links_the_playground_health_metrics_and_readme(pages: Pages) -> None:
    response = httpx.get(pages.url + "/", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert {"/playground", "/healthz", "/metrics", "/readme"} <= set(_links(response.text))
    readme = httpx.get(pages.url + "/readme", timeout=30)
    assert readme.status_code == 200 and readme.headers["content-type"].startswith("text/plain")
    assert readme.text.startswith("# calsync")


def test_the_front_page_outside_the_sandbox_has_no_playground() -> None:
    app = create_web_app(bolt_app=None, healthy=lambda: True, metrics=None, playground=False, readme=None)
    with BackgroundServer(app) as server:
        response = httpx.get(server.url + "/", timeout=30)
        readme = httpx.get(server.url + "/readme", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert set(_links(response.text)) == {"/", "/healthz", "/static/calsync.css", "/static/pages.css"}
    assert "README" in response.text and readme.status_code == 404
