"""Start the sandbox emulators on loopback ports and describe them as settings.

With no Google/Microsoft settings, calsync runs against these in-process emulators; `calsync
sandbox serve` runs them for other processes. Google's emulator speaks plain HTTP; the Microsoft
identity platform and Graph are served over TLS with a CA generated once into the state dir (and
shared by every process using it), because msal accepts only https authorities. The Slack Web API emulator speaks plain HTTP, with a bot token and a signing
secret generated at start.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from calsync.sandbox.google_emulator import build_google_app
from calsync.sandbox.microsoft_emulator import build_microsoft_app
from calsync.sandbox.server import BackgroundServer, TLSFiles
from calsync.sandbox.slack_emulator import build_slack_app
from calsync.sandbox.world import World
from calsync.settings import Settings

GOOGLE_CLIENT_ID = "calsync-sandbox.apps.googleusercontent.com"
MICROSOFT_CLIENT_ID = "00000000-0000-4000-8000-0000ca15ca15"
MICROSOFT_TENANT = "common"
SLACK_BOT_USER_ID = "U0CALSYNC"
SLACK_TEAM_ID = "T0SANDBOX"
INSECURE_TRANSPORT = "OAUTHLIB_INSECURE_TRANSPORT"
# Worker threads for each provider emulator's database calls. They are short (a few hundred µs);
# under the GIL more threads only add switching: with 8 instead of anyio's 40 an emulated token
# refresh took about a fifth less CPU (benchmarks/sweep_bench.py, BENCHMARKS.md "Health sweep").
PROVIDER_EMULATOR_THREADS = 8


@dataclass(frozen=True)
class SandboxEndpoints:
    google_url: str
    microsoft_url: str
    ca_path: Path
    google_client_secret: str
    microsoft_client_secret: str
    slack_url: str = ""
    slack_bot_token: str = ""
    slack_signing_secret: str = ""

    def apply(self, settings: Settings) -> Settings:
        """`settings` with every provider URL and client credential pointed at the emulators.

        Slack too, unless `settings` already carry a bot token: a real workspace in front of sandbox
        calendars is a setup worth keeping (and the bot must not post with one service's token to another).
        """
        return settings.model_copy(
            update={
                "google_client_id": GOOGLE_CLIENT_ID,
                "google_client_secret": SecretStr(self.google_client_secret),
                "google_api_url": self.google_url,
                "google_token_url": f"{self.google_url}/token",
                "google_auth_url": f"{self.google_url}/o/oauth2/auth",
                "microsoft_client_id": MICROSOFT_CLIENT_ID,
                "microsoft_client_secret": SecretStr(self.microsoft_client_secret),
                "microsoft_authority": f"{self.microsoft_url}/{MICROSOFT_TENANT}",
                "microsoft_graph_url": f"{self.microsoft_url}/v1.0",
                "microsoft_ca_bundle": self.ca_path,
                **self._slack_settings(settings),
            }
        )

    def _slack_settings(self, settings: Settings) -> dict[str, object]:
        if not self.slack_url or settings.slack_bot_token is not None:
            return {}
        return {
            "slack_api_url": f"{self.slack_url}/api/",
            "slack_bot_token": SecretStr(self.slack_bot_token),
            "slack_signing_secret": SecretStr(self.slack_signing_secret),
        }

    def environment(self) -> dict[str, str]:
        """The same as environment variables, for another process (`calsync sandbox serve` prints them)."""
        applied = self.apply(Settings())
        return {
            "GOOGLE_CLIENT_ID": GOOGLE_CLIENT_ID,
            "GOOGLE_CLIENT_SECRET": self.google_client_secret,
            "GOOGLE_API_URL": applied.google_api_url,
            "GOOGLE_TOKEN_URL": applied.google_token_url,
            "GOOGLE_AUTH_URL": applied.google_auth_url,
            "MICROSOFT_CLIENT_ID": MICROSOFT_CLIENT_ID,
            "MICROSOFT_CLIENT_SECRET": self.microsoft_client_secret,
            "MICROSOFT_AUTHORITY": applied.microsoft_authority,
            "MICROSOFT_GRAPH_URL": applied.microsoft_graph_url,
            "MICROSOFT_CA_BUNDLE": str(self.ca_path),
            **(
                {
                    "SLACK_API_URL": f"{self.slack_url}/api/",
                    "SLACK_BOT_TOKEN": self.slack_bot_token,
                    "SLACK_SIGNING_SECRET": self.slack_signing_secret,
                }
                if self.slack_url
                else {}
            ),
        }


class SandboxRuntime:
    """The Google, Microsoft and Slack emulators over one `World`, each on its own loopback port."""

    def __init__(
        self,
        world: World,
        state_dir: Path,
        clock: Callable[[], datetime],
        *,
        host: str = "127.0.0.1",
        google_port: int = 0,
        microsoft_port: int = 0,
        slack_port: int = 0,
    ) -> None:
        self.world = world
        self.state_dir = state_dir
        self.clock = clock
        self.host = host
        self.google_port = google_port
        self.microsoft_port = microsoft_port
        self.slack_port = slack_port
        self._servers: list[BackgroundServer] = []
        self.endpoints: SandboxEndpoints | None = None
        self._insecure_transport: str | None = None

    def start(self) -> SandboxEndpoints:
        self.world.create_tables()
        # The Google emulator speaks plain http on loopback; oauthlib (google-auth-oauthlib's sign-in
        # flow) refuses http unless told otherwise. Only the sandbox says so, only while it runs.
        self._insecure_transport = os.environ.get(INSECURE_TRANSPORT)
        os.environ[INSECURE_TRANSPORT] = "1"
        # Fresh client secrets per run: nothing secret is ever committed or reused.
        google_secret = secrets.token_urlsafe(24)
        microsoft_secret = secrets.token_urlsafe(24)
        slack_bot_token = "xoxb-sandbox-" + secrets.token_hex(12)
        slack_signing_secret = secrets.token_hex(16)
        # One CA per state dir, made once: every process (a serve, a CLI command) trusts the same one.
        tls = TLSFiles.load_or_create((self.state_dir / "sandbox-tls").resolve())
        google = BackgroundServer(
            build_google_app(
                self.world, client_id=GOOGLE_CLIENT_ID, client_secret=google_secret, clock=self.clock
            ),
            host=self.host,
            port=self.google_port,
            threads=PROVIDER_EMULATOR_THREADS,
        )
        microsoft = BackgroundServer(
            build_microsoft_app(
                self.world, client_id=MICROSOFT_CLIENT_ID, client_secret=microsoft_secret, clock=self.clock
            ),
            tls=tls,
            host=self.host,
            port=self.microsoft_port,
            threads=PROVIDER_EMULATOR_THREADS,
        )
        slack = BackgroundServer(
            build_slack_app(
                self.world,
                bot_token=slack_bot_token,
                clock=self.clock,
                bot_user_id=SLACK_BOT_USER_ID,
                team_id=SLACK_TEAM_ID,
            ),
            host=self.host,
            port=self.slack_port,
        )
        for server in (google, microsoft, slack):
            server.start()
            self._servers.append(server)
        self.endpoints = SandboxEndpoints(
            google_url=google.url,
            microsoft_url=microsoft.url,
            ca_path=tls.ca_path,
            google_client_secret=google_secret,
            microsoft_client_secret=microsoft_secret,
            slack_url=slack.url,
            slack_bot_token=slack_bot_token,
            slack_signing_secret=slack_signing_secret,
        )
        return self.endpoints

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._insecure_transport is None:
            os.environ.pop(INSECURE_TRANSPORT, None)
        else:
            os.environ[INSECURE_TRANSPORT] = self._insecure_transport

    def __enter__(self) -> SandboxEndpoints:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
