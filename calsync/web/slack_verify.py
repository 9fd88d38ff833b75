"""Verify a request to `/slack/events` before anything else looks at it.

In order, each step refusing without doing the next:

1. The headers: a `Content-Length` over `MAX_SLACK_BODY` is a 413 before one byte of the body is
   read; a missing, non-numeric or absurd `X-Slack-Request-Timestamp` (more than five minutes from
   now, Slack's own replay window) or a signature that is not `v0=` + 64 hex digits is a 401.
2. The body is read from the stream and counted; past `MAX_SLACK_BODY` (a chunked body has no
   length up front) the read stops and the answer is a 413.
3. Slack's v0 signature, HMAC-SHA256 of `v0:{timestamp}:{raw body}` with the signing secret, is
   compared in constant time on the raw bytes. Only then is the body parsed (by Bolt, which checks
   the signature again).

Every refusal is one log line, never a traceback. Before, Bolt read the whole body and parsed the
form or JSON before checking anything: a 50 MB unsigned POST cost 340 MB of memory, and a
non-numeric timestamp raised inside slack_sdk (a 500 and a traceback per request).

`MAX_SLACK_BODY` is 1 MiB. What Slack sends is small: an event envelope or a slash command is a
few kilobytes; the largest payloads are interactions, which echo the message they came from (at most
50 blocks of at most 3 000 characters, about 150 kB of JSON, up to three times that form-encoded).
1 MiB holds that twice over, and bounds what any unsigned request can make calsync hold to 1 MiB.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_SLACK_BODY = 1024 * 1024
MAX_AGE_SECONDS = 5 * 60  # Slack's documented replay window
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 (not from Slack), 413 (too large)
    reason: str

    @property
    def text(self) -> str:
        return "request body too large" if self.status == 413 else "invalid request"


class SlackVerifier:
    """Checks one request's headers, reads its body within the cap, and verifies its signature."""

    def __init__(
        self,
        signing_secret: str,
        *,
        max_body: int = MAX_SLACK_BODY,
        max_age: int = MAX_AGE_SECONDS,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not signing_secret:
            raise ValueError("a Slack signing secret is required to verify requests")
        self._secret = signing_secret.encode("utf-8")
        self.max_body = max_body
        self.max_age = max_age
        self._now = now

    def __repr__(self) -> str:
        return "SlackVerifier(secret=[hidden])"

    def check_headers(self, headers: Mapping[str, str]) -> Refusal | None:
        length = headers.get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self.max_body):
            return self._refuse(413, f"Content-Length {length[:20]!r} over the {self.max_body}-byte cap")
        stamp = headers.get("x-slack-request-timestamp")
        if stamp is None:
            return self._refuse(401, "no X-Slack-Request-Timestamp")
        if not _DIGITS.fullmatch(stamp):
            return self._refuse(401, f"a non-numeric X-Slack-Request-Timestamp {stamp[:40]!r}")
        if abs(self._now() - int(stamp)) > self.max_age:
            return self._refuse(401, f"an X-Slack-Request-Timestamp {stamp} more than 5 minutes from now")
        if not _SIGNATURE.fullmatch(headers.get("x-slack-signature") or ""):
            return self._refuse(401, "no v0 X-Slack-Signature")
        return None

    async def read_body(self, chunks: AsyncIterator[bytes]) -> bytes | Refusal:
        """The body, or a 413 as soon as it passes the cap (the rest is never read)."""
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > self.max_body:
                return self._refuse(413, f"a body over the {self.max_body}-byte cap")
        return bytes(body)

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> Refusal | None:
        stamp = headers.get("x-slack-request-timestamp", "")
        expected = hmac.new(self._secret, b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        given = headers.get("x-slack-signature", "")
        if not hmac.compare_digest(f"v0={expected}".encode(), given.encode("ascii", "replace")):
            return self._refuse(401, "a signature that does not match the body")
        return None

    @staticmethod
    def _refuse(status: int, reason: str) -> Refusal:
        log.warning("refused a request to /slack/events: %s", reason)
        return Refusal(status, reason)


__all__ = ["MAX_AGE_SECONDS", "MAX_SLACK_BODY", "Refusal", "SlackVerifier"]
