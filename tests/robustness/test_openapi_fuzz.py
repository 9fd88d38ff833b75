"""The HTTP app fuzzed from its OpenAPI description with schemathesis, over real HTTP to uvicorn.

Two schemas:

- the app's own (`/openapi.json`): only `/healthz` is in it; every response must conform to it.
- the whole HTTP surface: the reconnect flow, the report page, the playground and `/slack/events` are
  left out of the published schema on purpose (they are for browsers and Slack, not API clients). Their
  description is generated here by FastAPI from the very routers the composition root builds, plus the
  query parameters the OAuth callback reads by hand. Those pages answer 400/403/410 with an HTML page
  by design (tests/web asserts each one), which FastAPI's generated schema cannot declare, so only
  "never a 5xx, never a traceback, nothing written" is checked there.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests
import schemathesis
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from calsync.app import build_pages, build_reconnect
from tests.robustness.conftest import Robust, protected_rows

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DEMO_REPS = ["ana@northwind.example", "carla@northwind.example", "dev@northwind.example", "nobody@x.example"]
OAUTH_CALLBACK_QUERY = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string", "maxLength": 5000}}
    for name in ("state", "code", "error", "error_description", "session_state")
]


def surface_schema(robust: Robust) -> dict[str, Any]:
    """OpenAPI for every route of the app, from the composition root's own routers."""
    services, troubleshooter = robust.services, robust.troubleshooter
    routers = [build_reconnect(services, None, troubleshooter), build_pages(services, troubleshooter)]
    routes: list[APIRoute] = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                shown = copy.copy(route)
                shown.include_in_schema = True
                routes.append(shown)
    schema = get_openapi(title="calsync (whole surface)", version="test", routes=routes)
    schema["paths"]["/healthz"] = robust.app.openapi()["paths"]["/healthz"]
    paths = schema["paths"]
    for operation in paths["/oauth/{provider}/callback"].values():
        operation.setdefault("parameters", []).extend(OAUTH_CALLBACK_QUERY)
    for path in ("/connect/{provider}", "/oauth/{provider}/callback"):
        for operation in paths[path].values():
            for parameter in operation["parameters"]:
                if parameter["name"] == "provider":
                    parameter["schema"] = {"anyOf": [{"enum": ["google", "microsoft"]}, {"type": "string"}]}
    # Some generated reps are real, so the playground also answers (a whole diagnosis) for them.
    for operation in paths["/playground/ask"].values():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "rep":
                parameter["schema"] = {"anyOf": [{"enum": DEMO_REPS}, parameter["schema"]]}
    paths["/slack/events"] = {
        "post": {
            "operationId": "slack_events",
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"type": {"type": "string"}, "event": {"type": "object"}},
                        }
                    },
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "payload": {"type": "string"},
                                "command": {"type": "string"},
                                "text": {"type": "string"},
                            },
                        }
                    },
                }
            },
            "responses": {"200": {"description": "acknowledged"}},
        }
    }
    return schema


@pytest.fixture(scope="module")
def published(robust_app: Robust) -> BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", robust_app.app)


@pytest.fixture(scope="module")
def surface(robust_app: Robust) -> BaseSchema:
    return schemathesis.openapi.from_dict(surface_schema(robust_app))


def _send(case: Any, robust: Robust, session: requests.Session) -> Any:
    # Real HTTP to uvicorn; never to anything but the app (the socket guard would refuse anyway).
    return case.call(base_url=robust.url, session=session, allow_redirects=False, timeout=30)


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_the_published_schema_holds(robust: Robust, published: BaseSchema, data: st.DataObject) -> None:
    assert [method.upper() for method in published["/healthz"]] == [
        "GET"
    ]  # all there is: the rest is for browsers and Slack
    case = data.draw(published.as_strategy(GenerationMode.POSITIVE), label="case")
    with requests.Session() as session:
        response = _send(case, robust, session)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    assert response.json() == {"ok": True, "database": "up"}


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_the_whole_surface_never_fails_with_a_5xx(
    robust: Robust, surface: BaseSchema, data: st.DataObject
) -> None:
    before = protected_rows(robust.services.sessions)
    mode = data.draw(st.sampled_from(list(GenerationMode)), label="mode")
    case = data.draw(surface.as_strategy(mode), label="case")
    with requests.Session() as session:
        response = _send(case, robust, session)
    event(f"{case.method} {case.operation.path} -> {response.status_code}")
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    assert "Traceback" not in response.text
    assert protected_rows(robust.services.sessions) == before
