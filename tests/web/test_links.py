"""Signed links: round trip, tampering, kinds, expiry (with an injected clock), garbage, the secret."""

from __future__ import annotations

import base64
import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync.links import (
    LINK_SECRET_FILE_NAME,
    LinkExpired,
    LinkInvalid,
    LinkSecretError,
    LinkSigner,
    load_or_create_link_secret,
)
from calsync.settings import Settings
from calsync.syncbackend.crypto import TokenCipher
from tests.conftest import FrozenClock

SECRET = b"0123456789abcdef0123456789abcdef"
TTL = timedelta(minutes=30)


@pytest.fixture
def signer(clock: FrozenClock) -> LinkSigner:
    return LinkSigner(SECRET, clock)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _payload(token: str) -> dict[str, object]:
    body = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_round_trip(signer: LinkSigner, clock: FrozenClock) -> None:
    token = signer.make("reconnect", {"rep": "carla@northwind.example", "provider": "google"}, TTL)
    assert all(c.isalnum() or c in "-_." for c in token)  # URL-safe as is
    link = signer.read(token, "reconnect")
    assert link.kind == "reconnect"
    assert link.subject == {"rep": "carla@northwind.example", "provider": "google"}
    assert link.expires_at == clock.now + TTL
    assert len(link.nonce) >= 16


def test_every_link_has_its_own_nonce(signer: LinkSigner) -> None:
    one, two = (signer.make("reconnect", {"rep": "a@x.example"}, TTL) for _ in range(2))
    assert one != two
    assert signer.read(one, "reconnect").nonce != signer.read(two, "reconnect").nonce


def test_tampered_payload_is_invalid(signer: LinkSigner) -> None:
    token = signer.make("reconnect", {"rep": "carla@northwind.example"}, TTL)
    payload = _payload(token)
    payload["s"] = {"rep": "ana@northwind.example"}
    forged = (
        _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()) + "." + token.split(".")[1]
    )
    with pytest.raises(LinkInvalid):
        signer.read(forged, "reconnect")


def test_tampered_signature_is_invalid(signer: LinkSigner) -> None:
    token = signer.make("reconnect", {"rep": "carla@northwind.example"}, TTL)
    body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(LinkInvalid):
        signer.read(f"{body}.{flipped}", "reconnect")


def test_another_secret_does_not_read_it(signer: LinkSigner, clock: FrozenClock) -> None:
    token = signer.make("reconnect", {"rep": "carla@northwind.example"}, TTL)
    with pytest.raises(LinkInvalid):
        LinkSigner(b"another-secret-of-enough-bytes!!", clock).read(token, "reconnect")


def test_wrong_kind_is_invalid(signer: LinkSigner) -> None:
    token = signer.make("report", {"rep": "carla@northwind.example"}, TTL)
    with pytest.raises(LinkInvalid):
        signer.read(token, "reconnect")


@pytest.mark.parametrize(
    ("elapsed", "expired"),
    [
        (timedelta(0), False),
        (TTL - timedelta(seconds=1), False),
        (TTL, True),  # expired at exactly ttl
        (TTL + timedelta(days=3), True),
    ],
    ids=["fresh", "one-second-left", "exactly-ttl", "days-later"],
)
def test_expiry(signer: LinkSigner, clock: FrozenClock, elapsed: timedelta, expired: bool) -> None:
    token = signer.make("reconnect", {"rep": "carla@northwind.example"}, TTL)
    clock.now = clock.now + elapsed
    if expired:
        with pytest.raises(LinkExpired) as caught:
            signer.read(token, "reconnect")
        assert caught.value.link.subject["rep"] == "carla@northwind.example"
    else:
        assert signer.read(token, "reconnect").subject["rep"] == "carla@northwind.example"


def test_an_expired_link_of_another_kind_is_invalid_not_expired(
    signer: LinkSigner, clock: FrozenClock
) -> None:
    token = signer.make("report", {"rep": "carla@northwind.example"}, TTL)
    clock.advance(hours=2)
    with pytest.raises(LinkInvalid):
        signer.read(token, "reconnect")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "x",
        ".",
        "abc.",
        ".abc",
        "a.b.c",
        "not base64!.sig",
        "é.ü",
        "a" * 5000,
        _b64(b"[1, 2]") + ".AAAA",
        "%00%ff.%%",
    ],
    ids=lambda value: repr(value)[:20],
)
def test_garbage_is_invalid(signer: LinkSigner, garbage: str) -> None:
    with pytest.raises(LinkInvalid):
        signer.read(garbage, "reconnect")


def test_a_well_signed_but_malformed_payload_is_invalid(signer: LinkSigner) -> None:
    body = _b64(b'{"k": "reconnect", "s": [], "e": "soon", "n": ""}')
    token = f"{body}.{_b64(signer._sign(body))}"
    with pytest.raises(LinkInvalid):
        signer.read(token, "reconnect")


def test_short_secrets_and_bad_ttls_are_refused(clock: FrozenClock) -> None:
    with pytest.raises(LinkSecretError):
        LinkSigner(b"short", clock)
    with pytest.raises(ValueError):
        LinkSigner(SECRET, clock).make("reconnect", {}, timedelta(0))


def test_repr_hides_the_secret(signer: LinkSigner) -> None:
    assert SECRET.decode() not in repr(signer)


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None).model_copy(update={"state_dir": tmp_path, **values})  # type: ignore[call-arg]


def test_secret_from_the_setting(tmp_path: Path) -> None:
    settings = _settings(tmp_path, link_secret=SecretStr("a-configured-link-secret-value"))
    assert load_or_create_link_secret(settings, sandbox=False) == b"a-configured-link-secret-value"
    assert not (tmp_path / LINK_SECRET_FILE_NAME).exists()


def test_sandbox_generates_the_secret_once_into_the_state_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = load_or_create_link_secret(settings, sandbox=True)
    again = load_or_create_link_secret(settings, sandbox=True)
    assert first == again and len(first) >= 32
    key_file = tmp_path / LINK_SECRET_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_real_providers_require_the_setting(tmp_path: Path) -> None:
    settings = _settings(tmp_path, google_client_id="id", google_client_secret=SecretStr("secret"))
    with pytest.raises(LinkSecretError, match="CALSYNC_LINK_SECRET"):
        load_or_create_link_secret(settings, sandbox=False)
    with pytest.raises(LinkSecretError):
        load_or_create_link_secret(
            settings.model_copy(update={"link_secret": SecretStr("too-short")}), sandbox=False
        )


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _unpadded(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_link_has_exactly_one_valid_spelling(signer: LinkSigner) -> None:
    """Before, a changed last character of the signature was accepted: a 32-byte HMAC is 43 base64
    characters, and the last one carries two bits that decoding ignores."""
    token = signer.make("reconnect", {"rep": "carla@northwind.example"}, TTL)
    body, _, signature = token.partition(".")
    last = _ALPHABET.index(signature[-1])
    twins = [signature[:-1] + _ALPHABET[last ^ bits] for bits in (0b01, 0b10, 0b11)]
    assert all(_unpadded(twin) == _unpadded(signature) for twin in twins)  # the same signature bytes
    others = [
        *(f"{body}.{twin}" for twin in twins),
        f"{body}.{signature}=",  # padding
        f"{body}.{signature[:10]}!{signature[10:]}",  # a character decoding drops
        f"{body}.{signature[:10]}\n{signature[10:]}",
        f"{body}=.{signature}",
    ]
    for other in others:
        with pytest.raises(LinkInvalid):
            signer.read(other, "reconnect")
    assert signer.read(token, "reconnect").subject == {"rep": "carla@northwind.example"}


def test_the_services_build_one_link_signer(tmp_path: Path, clock: FrozenClock) -> None:
    """Reconnect buttons, the reconnect pages, report links and the report pages share one signer."""
    from calsync.app import Services, build_link_signer

    services = Services(
        settings=_settings(tmp_path),
        engine=cast(Engine, None),
        sessions=cast(sessionmaker[Session], None),
        cipher=cast(TokenCipher, None),
        clock=clock,
        providers={},
    )
    assert not (tmp_path / LINK_SECRET_FILE_NAME).exists()  # built on first use, not before
    signer = services.links
    assert build_link_signer(services) is signer and services.links is signer
    assert signer.read(signer.make("report", {"rep": "a@x.example"}, TTL), "report").subject == {
        "rep": "a@x.example"
    }
