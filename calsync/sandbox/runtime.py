"""Start the sandbox emulators on loopback ports and describe them as settings.

With no Google/Microsoft settings, calsync runs against these in-process emulators; `calsync
sandbox serve` runs them for other processes. Google's emulator speaks plain HTTP; the Microsoft
identity platform and Graph are served over TLS with a CA generated at start, because msal accepts
only https authorities.
"""

from __future__ import annotations

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
from calsync.sandbox.world import World
from calsync.settings import Settings

GOOGLE_CLIENT_ID = "calsync-sandbox.apps.googleusercontent.com"
MICROSOFT_CLIENT_ID = "00000000-0000-4000-8000-0000ca15ca15"
MICROSOFT_TENANT = "common"


@dataclass(frozen=True)
class SandboxEndpoints:
    google_url: str
    microsoft_url: str
    ca_path: Path
    google_client_secret: str
    microsoft_client_secret: str

    def apply(self, settings: Settings) -> Settings:
        """`settings` with every provider URL and client credential pointed at the emulators."""
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
            }
        )

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
        }


class SandboxRuntime:
    """The Google and Microsoft emulators over one `World`, each on its own ephemeral loopback port."""

    def __init__(
        self,
        world: World,
        state_dir: Path,
        clock: Callable[[], datetime],
        *,
        host: str = "127.0.0.1",
        google_port: int = 0,
        microsoft_port: int = 0,
    ) -> None:
        self.world = world
        self.state_dir = state_dir
        self.clock = clock
        self.host = host
        self.google_port = google_port
        self.microsoft_port = microsoft_port
        self._servers: list[BackgroundServer] = []
        self.endpoints: SandboxEndpoints | None = None

    def start(self) -> SandboxEndpoints:
        self.world.create_tables()
        # Fresh client secrets per run: nothing secret is ever committed or reused.
        google_secret = secrets.token_urlsafe(24)
        microsoft_secret = secrets.token_urlsafe(24)
        tls = TLSFiles.generate((self.state_dir / "sandbox-tls").resolve())
        google = BackgroundServer(
            build_google_app(
                self.world, client_id=GOOGLE_CLIENT_ID, client_secret=google_secret, clock=self.clock
            ),
            host=self.host,
            port=self.google_port,
        )
        microsoft = BackgroundServer(
            build_microsoft_app(
                self.world, client_id=MICROSOFT_CLIENT_ID, client_secret=microsoft_secret, clock=self.clock
            ),
            tls=tls,
            host=self.host,
            port=self.microsoft_port,
        )
        for server in (google, microsoft):
            server.start()
            self._servers.append(server)
        self.endpoints = SandboxEndpoints(
            google_url=google.url,
            microsoft_url=microsoft.url,
            ca_path=tls.ca_path,
            google_client_secret=google_secret,
            microsoft_client_secret=microsoft_secret,
        )
        return self.endpoints

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()

    def __enter__(self) -> SandboxEndpoints:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
