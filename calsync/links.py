"""Signed links: a small payload (kind, subject, expiry, nonce) and an HMAC-SHA256 signature, URL-safe.

    token = base64url(JSON payload) "." base64url(HMAC-SHA256(secret, "calsync-link.v1." + payload part))

The payload is signed, not encrypted: put in `subject` only what the person holding the link may
read (their own email, where the link was given). `kind` is part of what is signed and checked on
reading, so a link made for one purpose ("reconnect") never works for another ("report").

`read` tells an expired link (`LinkExpired`, carrying the link so the caller can say whose it was)
from anything else that is wrong (`LinkInvalid`: tampered, truncated, garbage, wrong kind). The
signature is checked with a constant-time compare before the payload is even parsed.

Single use is not the signer's business (it has no storage): a link carries a random `nonce` that
the consumer claims in its database (`calsync.syncbackend.reconnect`, `calsync.store.reports`).

The secret comes from `CALSYNC_LINK_SECRET`; in sandbox mode it is generated once into the state
dir (`link.key`), like the demo encryption key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from calsync.settings import Settings

LINK_SECRET_FILE_NAME = "link.key"
MIN_SECRET_BYTES = 16
MAX_TOKEN_LENGTH = 4096  # a URL-safe token longer than this is not one of ours
_DOMAIN = b"calsync-link.v1."


class LinkSecretError(ValueError):
    """No usable link secret: unset with real providers configured, or too short."""


class LinkError(Exception):
    """A link that cannot be used."""


class LinkInvalid(LinkError):
    """Not a link we made for this purpose: tampered, truncated, garbage, or of another kind."""


class LinkExpired(LinkError):
    """A genuine link whose time is up; `link` says whose it was."""

    def __init__(self, link: SignedLink) -> None:
        super().__init__(f"the {link.kind} link expired at {link.expires_at.isoformat()}")
        self.link = link


@dataclass(frozen=True)
class SignedLink:
    kind: str
    subject: dict[str, Any] = field(hash=False)
    expires_at: datetime
    nonce: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Makes and reads signed, expiring links. `clock` is injected (tests move it)."""

    def __init__(self, secret: bytes, clock: Callable[[], datetime]) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise LinkSecretError(f"the link secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._clock = clock

    def __repr__(self) -> str:
        return "LinkSigner(secret=[hidden])"

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, _DOMAIN + body.encode("ascii"), hashlib.sha256).digest()

    def make(self, kind: str, subject: dict[str, Any], ttl: timedelta) -> str:
        """A token for `subject` that reads back as `kind` until `ttl` from now (not at `ttl`)."""
        if not kind:
            raise ValueError("a link needs a kind")
        if ttl <= timedelta(0):
            raise ValueError("a link's ttl must be positive")
        expires = self._clock() + ttl
        payload = {
            "k": kind,
            "s": subject,
            "e": int(expires.timestamp()),
            "n": secrets.token_urlsafe(16),
        }
        body = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        return f"{body}.{_b64encode(self._sign(body))}"

    def read(self, token: str, kind: str) -> SignedLink:
        """The link behind `token`; raises `LinkExpired` or `LinkInvalid`."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise LinkInvalid("not a link")
        body, dot, signature = token.partition(".")
        if not dot or not body or not signature or "." in signature:
            raise LinkInvalid("not a link")
        try:
            given = _b64decode(signature)
            body.encode("ascii")
        except (binascii.Error, ValueError):
            raise LinkInvalid("not a link") from None
        # One valid spelling per link: decoding ignores the unused low bits of the last character and
        # drops characters outside the alphabet, so anything but the canonical encoding is refused.
        if not hmac.compare_digest(_b64encode(given).encode("ascii"), signature.encode("ascii", "replace")):
            raise LinkInvalid("not a link")
        if not hmac.compare_digest(given, self._sign(body)):
            raise LinkInvalid("the link's signature does not match")
        try:
            decoded = _b64decode(body)
            payload = json.loads(decoded)
        except (binascii.Error, ValueError):
            raise LinkInvalid("the link's payload is unreadable") from None
        if _b64encode(decoded) != body:  # signed as we made it, so canonical; checked all the same
            raise LinkInvalid("the link's payload is unreadable")
        link = _parse(payload)
        if not hmac.compare_digest(link.kind.encode("utf-8"), kind.encode("utf-8")):
            raise LinkInvalid(f"not a {kind} link")
        if self._clock() >= link.expires_at:
            raise LinkExpired(link)
        return link


def _parse(payload: Any) -> SignedLink:
    """A signed payload we made; checked anyway, so a bug elsewhere cannot turn into a crash here."""
    if not isinstance(payload, dict):
        raise LinkInvalid("the link's payload is malformed")
    kind, subject, expires, nonce = payload.get("k"), payload.get("s"), payload.get("e"), payload.get("n")
    if not (
        isinstance(kind, str)
        and isinstance(subject, dict)
        and isinstance(expires, int)
        and not isinstance(expires, bool)
        and isinstance(nonce, str)
        and nonce
    ):
        raise LinkInvalid("the link's payload is malformed")
    try:
        expires_at = datetime.fromtimestamp(expires, UTC)
    except (OverflowError, OSError, ValueError):
        raise LinkInvalid("the link's payload is malformed") from None
    return SignedLink(kind=kind, subject=subject, expires_at=expires_at, nonce=nonce)


def generate_link_secret() -> str:
    """A new random link secret, as text (what `CALSYNC_LINK_SECRET` holds)."""
    return secrets.token_urlsafe(32)


def load_or_create_link_secret(settings: Settings, *, sandbox: bool) -> bytes:
    """`CALSYNC_LINK_SECRET`, or (sandbox only) a secret generated once into the state dir.

    With real providers configured the setting is required: a secret generated on one machine would
    make every link another instance sent unreadable, and a restart would void every link in flight.
    """
    from calsync.syncbackend.crypto import read_or_create_secret_file

    if settings.link_secret is not None and settings.link_secret.get_secret_value().strip():
        value = settings.link_secret.get_secret_value().strip()
    elif sandbox or settings.sandbox_mode:  # the emulators in this process, or no provider configured
        value = read_or_create_secret_file(
            Path(settings.state_dir) / LINK_SECRET_FILE_NAME,
            generate_link_secret,
            setting="CALSYNC_LINK_SECRET",
        )
    else:
        raise LinkSecretError(
            "CALSYNC_LINK_SECRET is not set: it is required when Google or Microsoft is configured "
            "(make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    secret = value.encode("utf-8")
    if len(secret) < MIN_SECRET_BYTES:
        raise LinkSecretError(f"CALSYNC_LINK_SECRET must be at least {MIN_SECRET_BYTES} characters")
    return secret


__all__ = [
    "LINK_SECRET_FILE_NAME",
    "LinkError",
    "LinkExpired",
    "LinkInvalid",
    "LinkSecretError",
    "LinkSigner",
    "SignedLink",
    "generate_link_secret",
    "load_or_create_link_secret",
]
