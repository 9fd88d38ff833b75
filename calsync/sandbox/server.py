"""Run an ASGI app with uvicorn on a loopback ephemeral port in a background thread (optionally TLS)."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio.to_thread
import trustme
import uvicorn


@dataclass(frozen=True)
class TLSFiles:
    """A locally generated CA and a server certificate for 127.0.0.1/localhost signed by it."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    @classmethod
    def generate(cls, directory: Path) -> TLSFiles:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        files = cls(
            directory / "sandbox-ca.pem", directory / "sandbox-cert.pem", directory / "sandbox-key.pem"
        )
        ca.cert_pem.write_to_path(str(files.ca_path))
        server_cert.cert_chain_pems[0].write_to_path(str(files.cert_path))
        for extra in server_cert.cert_chain_pems[1:]:
            extra.write_to_path(str(files.cert_path), append=True)
        server_cert.private_key_pem.write_to_path(str(files.key_path))
        return files


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread owns signals
        pass


class BackgroundServer:
    """Serves `app` on 127.0.0.1 at an ephemeral port until `stop()` (or the `with` block ends)."""

    def __init__(
        self,
        app: Any,
        *,
        tls: TLSFiles | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int | None = None,
    ) -> None:
        """`threads`: how many worker threads the app's blocking calls (`run_in_threadpool`) may use
        at once; None keeps anyio's default (40)."""
        self._threads = threads
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.scheme = "https" if tls else "http"
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            ssl_certfile=str(tls.cert_path) if tls else None,
            ssl_keyfile=str(tls.key_path) if tls else None,
        )
        self._server = _ThreadServer(config)
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _run(self) -> None:
        # uvicorn's own loop choice (uvloop when installed, as `calsync serve` gets): the emulators
        # answer every request of a health sweep over thousands of connections.
        with asyncio.Runner(loop_factory=self._server.config.get_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        if self._threads is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = self._threads
        await self._server.serve(sockets=[self._sock])

    def start(self) -> BackgroundServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("sandbox server failed to start")
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(1)
        if self._thread.is_alive():  # an idle TLS keep-alive whose client never closes it holds uvicorn
            self._server.force_exit = True
            self._thread.join(4)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
