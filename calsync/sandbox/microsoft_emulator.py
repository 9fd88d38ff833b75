"""A local emulator of the Microsoft identity platform (Entra ID v2.0 endpoints) and a Microsoft Graph subset.

One ASGI app, one base URL, served over TLS (msal refuses any non-https authority):

- identity platform under `/{tenant}/`: OpenID configuration, a minimal no-JS consent page, and the
  token endpoint (authorization_code with PKCE, refresh_token with rotation), answering errors the
  way Entra ID does (`error`, `error_description` with the AADSTS text, `error_codes`, `suberror`, ...);
- Graph under `/v1.0/`: `/me`, calendars, calendarView (window, `$filter` on our extended property,
  `$expand`, `$top`/`$skip` paging), calendarView delta (`@odata.nextLink`/`@odata.deltaLink`,
  `@removed`, 410 `syncStateNotFound`), event CRUD with `transactionId` de-duplication.

Faults from the world (`World.take_faults("microsoft", endpoint, email)`) are applied per request,
and every request is recorded (`World.record_request`) with secrets redacted. All world access is
synchronous SQLAlchemy and runs in worker threads, never on the event loop.

The emulator is in parts: `microsoft_common.py` (constants, error shapes, and the plumbing every route
shares: reading, authenticating, faults via `calsync.sandbox.faults`, the request log),
`microsoft_identity.py` (the identity platform), `microsoft_graph.py` (Graph) and this module (the
routes and the app).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.routing import Route

from calsync.sandbox.microsoft_common import (
    AADSTS_ERRORS,
    APPOINTMENT_PROPERTY_ID,
    SANDBOX_TENANT_ID,
    aadsts_error,
)
from calsync.sandbox.microsoft_graph import GraphApi, not_found
from calsync.sandbox.microsoft_identity import MicrosoftIdentity, openid_configuration
from calsync.sandbox.world import World


class MicrosoftEmulator(MicrosoftIdentity, GraphApi):
    """The identity platform and the Graph subset, as Starlette routes on one base URL."""

    def routes(self) -> list[Route]:
        return [
            Route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                self.handler(openid_configuration, identity=True),
                methods=["GET"],
            ),
            Route(
                "/{tenant}/oauth2/v2.0/authorize",
                self.handler(self.authorize, identity=True),
                methods=["GET"],
            ),
            Route(
                "/{tenant}/oauth2/v2.0/authorize/decision",
                self.handler(self.authorize_decision, identity=True),
                methods=["POST"],
            ),
            Route("/{tenant}/oauth2/v2.0/token", self.handler(self.token, identity=True), methods=["POST"]),
            Route("/v1.0/me", self.handler(self.me, endpoint="calendars"), methods=["GET"]),
            Route(
                "/v1.0/me/calendars", self.handler(self.list_calendars, endpoint="calendars"), methods=["GET"]
            ),
            Route(
                "/v1.0/me/calendars/{calendar_id}",
                self.handler(self.get_calendar, endpoint="calendars"),
                methods=["GET"],
            ),
            Route(
                "/v1.0/me/calendars/{calendar_id}/calendarView",
                self.handler(self.calendar_view, endpoint="events"),
                methods=["GET"],
            ),
            Route(
                "/v1.0/me/calendars/{calendar_id}/calendarView/delta",
                self.handler(self.calendar_view_delta, endpoint="changes"),
                methods=["GET"],
            ),
            Route("/v1.0/me/events", self.handler(self.create_event, endpoint="events"), methods=["POST"]),
            Route(
                "/v1.0/me/calendars/{calendar_id}/events",
                self.handler(self.create_event, endpoint="events"),
                methods=["POST"],
            ),
            Route(
                "/v1.0/me/events/{event_id}",
                self.handler(self.event_item, endpoint="events"),
                methods=["GET", "PATCH", "DELETE"],
            ),
            Route(
                "/v1.0/me/calendars/{calendar_id}/events/{event_id}",
                self.handler(self.event_item, endpoint="events"),
                methods=["GET", "PATCH", "DELETE"],
            ),
        ]


def build_microsoft_app(
    world: World, *, client_id: str, client_secret: str, clock: Callable[[], datetime]
) -> Starlette:
    """The identity platform + Graph emulator as one Starlette app (serve it over TLS)."""
    emulator = MicrosoftEmulator(world, client_id=client_id, client_secret=client_secret, clock=clock)
    app = Starlette(routes=emulator.routes())
    app.add_route("/{path:path}", not_found, methods=["GET", "POST", "PATCH", "DELETE", "PUT"])
    return app


__all__ = [
    "AADSTS_ERRORS",
    "APPOINTMENT_PROPERTY_ID",
    "SANDBOX_TENANT_ID",
    "MicrosoftEmulator",
    "aadsts_error",
    "build_microsoft_app",
]
