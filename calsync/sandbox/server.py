"""Run an ASGI app with uvicorn on a loopback ephemeral port in a background thread (optionally TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio.to_thread
import trustme
import uvicorn
from cryptography import x509
from cryptography.exceptions import InvalidSignature


@dataclass(frozen=True)
class TLSFiles:
    """A locally generated CA and a server certificate for 127.0.0.1/localhost signed by it."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    @classmethod
    def at(cls, directory: Path) -> TLSFiles:
        return cls(
            directory / "sandbox-ca.pem", directory / "sandbox-cert.pem", directory / "sandbox-key.pem"
        )

    @classmethod
    def generate(cls, directory: Path) -> TLSFiles:
        """A fresh CA and certificate, written over whatever `directory` held (tests' throwaway dirs)."""
        directory.mkdir(parents=True, exist_ok=True)
        files = cls.at(directory)
        files._write(trustme.CA())
        return files

    @classmethod
    def load_or_create(cls, directory: Path) -> TLSFiles:
        """The CA and certificate under `directory`, made only when they are missing or unusable.

        Every process on one state dir uses the same files: a running `calsync serve` keeps trusting
        its own emulator's certificate while a CLI command starts and stops its emulators (a new CA
        each time made the serve's Microsoft calls fail TLS, a false outage). An exclusive lock on
        `.lock` makes "check, else create" one step across processes; each file is written to a
        temporary name and renamed, so a reader never sees half a file.
        """
        directory.mkdir(parents=True, exist_ok=True)
        files = cls.at(directory)
        with (directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not files.usable():
                    files._write(trustme.CA())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return files

    def usable(self) -> bool:
        """All three files are there, the key matches the certificate, and the CA signed it."""
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(self.cert_path), str(self.key_path))
            ca = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            leaf = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            leaf.verify_directly_issued_by(ca)
        except (OSError, ssl.SSLError, ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _write(self, ca: trustme.CA) -> None:
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        chain = b"".join(pem.bytes() for pem in server_cert.cert_chain_pems)
        # The key first and the CA last: a reader checking the set sees a CA only once the rest is in place.
        _write_atomically(self.key_path, server_cert.private_key_pem.bytes(), mode=0o600)
        _write_atomically(self.cert_path, chain)
        _write_atomically(self.ca_path, ca.cert_pem.bytes())


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """`data` at `path` via a temporary file in the same directory and a rename."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


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
        lifespan: bool = False,
    ) -> None:
        """`threads`: how many worker threads the app's blocking calls (`run_in_threadpool`) may use
        at once; None keeps anyio's default (40). `lifespan`: run the app's start-up and shut-down
        (calsync's web app opens its answer queue and runs its answer worker there); the emulators
        have none."""
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
            lifespan="on" if lifespan else "off",
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
