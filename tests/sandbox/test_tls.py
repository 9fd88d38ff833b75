"""The sandbox CA is made once per state dir and shared: a CLI command never breaks a running serve.

Before, every process wrote a fresh CA over the state dir's, so a running `calsync serve` stopped
trusting its own Microsoft emulator (a false Outlook outage for every rep) whenever any command ran.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from calsync.db import make_engine
from calsync.sandbox.runtime import SandboxRuntime
from calsync.sandbox.server import TLSFiles
from calsync.sandbox.world import World
from calsync.syncbackend import migrate
from tests.bot.conftest import wait_for
from tests.harness import MutableClock
from tests.test_cli_serve import CALSYNC, free_port, healthy


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reaches(url: str, ca: Path) -> bool:
    """A TLS handshake with the emulator at `url`, trusting only `ca` (any HTTP status will do)."""
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=5) as client:
            client.get(f"{url}/common/v2.0/.well-known/openid-configuration")
    except httpx.ConnectError:
        return False
    return True


def test_a_second_runtime_on_one_state_dir_reuses_the_ca_and_the_first_keeps_working(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'calsync.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with SandboxRuntime(World(engine), tmp_path, MutableClock()) as serving:
            before = digest(serving.ca_path)
            assert reaches(serving.microsoft_url, serving.ca_path)
            with SandboxRuntime(World(engine), tmp_path, MutableClock()) as command:  # a CLI command
                assert command.ca_path == serving.ca_path
                assert reaches(command.microsoft_url, command.ca_path)
            assert digest(serving.ca_path) == before
            assert reaches(serving.microsoft_url, serving.ca_path)
    finally:
        engine.dispose()


MAKE_CA = (
    "import hashlib, sys\n"
    "from pathlib import Path\n"
    "from calsync.sandbox.server import TLSFiles\n"
    "files = TLSFiles.load_or_create(Path(sys.argv[1]))\n"
    "print(hashlib.sha256(files.ca_path.read_bytes()).hexdigest())\n"
)


@pytest.mark.parametrize("round_", range(3))
def test_processes_racing_on_an_empty_state_dir_end_up_with_one_ca(tmp_path: Path, round_: int) -> None:
    directory = tmp_path / "sandbox-tls"
    racers = [
        subprocess.Popen([sys.executable, "-c", MAKE_CA, str(directory)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    seen = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert seen == {digest(directory / "sandbox-ca.pem")}
    assert TLSFiles.at(directory).usable()
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".sandbox-")], "no temp files left"


def _truncate_ca(files: TLSFiles) -> None:
    files.ca_path.write_bytes(files.ca_path.read_bytes()[:40])


def _drop_key(files: TLSFiles) -> None:
    files.key_path.unlink()


def _foreign_ca(files: TLSFiles) -> None:
    files.ca_path.write_bytes(trustme.CA().cert_pem.bytes())


def _empty_cert(files: TLSFiles) -> None:
    files.cert_path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_truncate_ca, id="truncated-ca"),
        pytest.param(_drop_key, id="key-missing"),
        pytest.param(_foreign_ca, id="ca-that-did-not-sign-the-certificate"),
        pytest.param(_empty_cert, id="empty-certificate"),
    ],
)
def test_an_unusable_set_is_made_again(tmp_path: Path, damage: Callable[[TLSFiles], None]) -> None:
    files = TLSFiles.load_or_create(tmp_path)
    damage(files)
    assert not files.usable()
    assert TLSFiles.load_or_create(tmp_path).usable()


def test_a_usable_set_is_never_rewritten(tmp_path: Path) -> None:
    files = TLSFiles.load_or_create(tmp_path)
    stamps = [
        (p.read_bytes(), p.stat().st_mtime_ns) for p in (files.ca_path, files.cert_path, files.key_path)
    ]
    again = TLSFiles.load_or_create(tmp_path)
    assert [
        (p.read_bytes(), p.stat().st_mtime_ns) for p in (again.ca_path, again.cert_path, again.key_path)
    ] == (stamps)
    assert oct(files.key_path.stat().st_mode & 0o777) == "0o600"


def test_a_cli_command_while_serve_runs_leaves_outlook_reps_connected(tmp_path: Path) -> None:
    """The issue's scenario: `calsync serve` in sandbox mode, then any command on the same state dir."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "MICROSOFT_", "SLACK_"))}
    env.update({"CALSYNC_STATE_DIR": str(tmp_path), "PYTHONIOENCODING": "utf-8"})
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [CALSYNC, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    ask = {"rep": "ben@northwind.example", "q": "are my meetings syncing"}  # Ben: a healthy Outlook
    try:
        wait_for(lambda: healthy(url) or server.poll() is not None, timeout=90, what="calsync serve")
        assert server.poll() is None, server.communicate()[1].decode()
        ca = digest(tmp_path / "sandbox-tls" / "sandbox-ca.pem")
        first = httpx.get(f"{url}/playground/ask", params=ask, timeout=30).text
        assert "reach" not in first.lower() and "found nothing wrong" in first

        command = subprocess.run(
            [CALSYNC, "diagnose", "ben@northwind.example", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert command.returncode == 0, command.stderr.decode()

        assert digest(tmp_path / "sandbox-tls" / "sandbox-ca.pem") == ca
        after = httpx.get(f"{url}/playground/ask", params=ask, timeout=30).text
        assert "reach" not in after.lower() and "found nothing wrong" in after
    finally:
        server.terminate()
        server.communicate(timeout=30)
