"""`/slack/events` verifies before it reads: size and headers first, the body counted as it is read,
the signature on the raw bytes before anything parses them. The real app under uvicorn, on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from calsync.sandbox.slack_requests import FORM, JSON, signed_headers
from calsync.web.slack_verify import MAX_SLACK_BODY
from tests.bot.conftest import SlackHarness

CHALLENGE = json.dumps({"type": "url_verification", "challenge": "c-0123", "token": "legacy"}).encode()


def raw_request(url: str, head: list[str], body: Iterator[bytes] = iter(())) -> tuple[int, bytes]:
    """Send `head` (request line and headers), then `body` as long as the server takes it; the status
    line and what came with it. A socket, so nothing is sent that the test did not write."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in body:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want to read
        answer = b""
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    return int(answer.split(b" ", 2)[1]), answer


def _now() -> str:
    return str(int(time.time()))


def sign_raw(body: bytes, secret: str) -> dict[str, str]:
    """The v0 signature over any bytes (slack_sdk's helper wants UTF-8)."""
    digest = hmac.new(secret.encode(), f"v0:{_now()}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": _now(), "X-Slack-Signature": f"v0={digest}"}


HEADER_ROWS = [
    pytest.param({"X-Slack-Request-Timestamp": "abc"}, id="timestamp-not-a-number"),
    pytest.param({"X-Slack-Request-Timestamp": "1e9"}, id="timestamp-in-exponent-form"),
    pytest.param({"X-Slack-Request-Timestamp": "-60"}, id="timestamp-negative"),
    pytest.param({"X-Slack-Request-Timestamp": "9" * 40}, id="timestamp-absurdly-large"),
    pytest.param({"X-Slack-Request-Timestamp": "1764000000.5"}, id="timestamp-fractional"),
    pytest.param({"X-Slack-Request-Timestamp": ""}, id="timestamp-empty"),
    pytest.param({"X-Slack-Request-Timestamp": "0"}, id="timestamp-1970"),
    pytest.param({"X-Slack-Signature": "v1=" + "0" * 64}, id="signature-another-version"),
    pytest.param({"X-Slack-Signature": "v0=zz"}, id="signature-not-hex"),
]


@pytest.mark.parametrize("headers", HEADER_ROWS)
def test_odd_timestamps_and_signatures_get_401_and_one_log_line(
    slack_server: SlackHarness, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    slack = slack_server
    signed = {**signed_headers(CHALLENGE, slack.secret, JSON), **headers}
    with caplog.at_level(logging.INFO):
        response = slack.http.post(f"{slack.url}/slack/events", content=CHALLENGE, headers=signed)
    assert response.status_code == 401
    assert "c-0123" not in response.text
    lines = [r for r in caplog.records if r.name.startswith(("calsync", "slack_bolt", "uvicorn"))]
    assert [r.name for r in lines] == ["calsync.web.slack_verify"], [r.getMessage() for r in lines]
    assert lines[0].exc_info is None and "Traceback" not in caplog.text


def test_a_declared_oversized_body_is_refused_before_any_of_it_is_sent(slack_server: SlackHarness) -> None:
    """Only the headers go out; the 413 comes back anyway, so the server read none of the body."""
    head = [
        "POST /slack/events HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {FORM}",
        f"Content-Length: {50 * 1024 * 1024}",
        f"X-Slack-Request-Timestamp: {_now()}",
        "X-Slack-Signature: v0=" + "0" * 64,
    ]
    started = time.monotonic()
    status, answer = raw_request(slack_server.url, head)
    assert status == 413
    assert time.monotonic() - started < 2
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed-for-its-timestamp"])
def test_a_chunked_body_is_cut_at_the_cap(slack_server: SlackHarness, signed: bool) -> None:
    chunk = b"x" * 65536
    head = [
        "POST /slack/events HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {FORM}",
        "Transfer-Encoding: chunked",
        f"X-Slack-Request-Timestamp: {_now()}",
        "X-Slack-Signature: v0=" + ("1" if signed else "0") * 64,
    ]
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(50 * 1024 * 1024 // len(chunk)):  # 50 MB unless the server stops us
            sent += len(chunk)
            yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        yield b"0\r\n\r\n"

    status, _ = raw_request(slack_server.url, head, body())
    assert status == 413
    assert sent < 50 * 1024 * 1024, "the server stopped reading long before the end"


def _padded_challenge(size: int) -> bytes:
    body = json.dumps({"type": "url_verification", "challenge": "c-0123", "pad": ""}).encode()
    return body.replace(b'"pad": ""', b'"pad": "' + b"p" * (size - len(body)) + b'"')


@pytest.mark.parametrize(
    ("size", "status"),
    [
        pytest.param(MAX_SLACK_BODY, 200, id="exactly-the-cap"),
        pytest.param(MAX_SLACK_BODY + 1, 413, id="one-byte-over"),
    ],
)
def test_the_cap_is_exact_for_signed_bodies(slack_server: SlackHarness, size: int, status: int) -> None:
    slack = slack_server
    body = _padded_challenge(size)
    assert len(body) == size
    response = slack.http.post(
        f"{slack.url}/slack/events", content=body, headers=signed_headers(body, slack.secret, JSON)
    )
    assert response.status_code == status
    if status == 200:
        assert "c-0123" in response.text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(
            json.dumps({"type": "event_callback", "event": 5}).encode(), JSON, id="json-bolt-fails-on"
        ),
        pytest.param(b"payload=[1]", FORM, id="form-payload-a-list"),
        pytest.param(b"\xff\xfe garbage", FORM, id="not-utf8"),
    ],
)
def test_the_signature_is_checked_before_the_body_is_parsed(
    slack_server: SlackHarness, body: bytes, content_type: str
) -> None:
    """Malformed and unsigned is a 401 (not from Slack), not a 400 (read, then found malformed)."""
    slack = slack_server
    forged = {**sign_raw(body, "not-" + slack.secret), "Content-Type": content_type}
    assert slack.http.post(f"{slack.url}/slack/events", content=body, headers=forged).status_code == 401
    signed = {**sign_raw(body, slack.secret), "Content-Type": content_type}
    assert slack.http.post(f"{slack.url}/slack/events", content=body, headers=signed).status_code == 400


def test_health_and_pages_have_no_body_cap(slack_server: SlackHarness) -> None:
    """The cap and the verification belong to /slack/events alone."""
    assert slack_server.http.get(f"{slack_server.url}/healthz").status_code == 200


def test_the_web_app_will_not_serve_slack_without_a_verifier() -> None:
    from slack_bolt.async_app import AsyncApp

    from calsync.web.app import create_web_app

    bolt = AsyncApp(token="xoxb-x", signing_secret="s")  # makes no call until a request comes
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        create_web_app(bolt_app=bolt, healthy=lambda: True)
