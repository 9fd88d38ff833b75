"""OAuth tokens at rest: the cipher, key rotation, the generated demo key, and the connection columns."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.settings import Settings
from calsync.syncbackend.crypto import (
    KEY_FILE_NAME,
    EncryptionKeyError,
    TokenCipher,
    TokenDecryptError,
    generate_key,
    load_or_create_key,
)
from calsync.syncbackend.models import CalendarConnection, MissingTokenError, User
from calsync.syncbackend.providers.base import Authorization

REFRESH = "1//0refresh-token-PLAINTEXT-abc123"
ACCESS = "ya29.access-token-PLAINTEXT-xyz789"
EXPIRES = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def settings_for(state_dir: Path, key: str | None = None) -> Settings:
    values: dict[str, Any] = {"CALSYNC_STATE_DIR": state_dir}
    if key is not None:
        values["CALSYNC_ENCRYPTION_KEY"] = key
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALSYNC_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("CALSYNC_STATE_DIR", raising=False)


def full_error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


# -- the cipher -----------------------------------------------------------------------------------


def test_round_trip_and_ciphertext_hides_the_plaintext(cipher: TokenCipher) -> None:
    ciphertext = cipher.encrypt(REFRESH)
    assert isinstance(ciphertext, bytes)
    assert REFRESH.encode() not in ciphertext
    assert cipher.decrypt(ciphertext) == REFRESH
    assert cipher.encrypt(REFRESH) != ciphertext  # random IV: equal tokens do not look equal


def test_unicode_and_empty_tokens(cipher: TokenCipher) -> None:
    for token in ("", "tøken-✓"):
        assert cipher.decrypt(cipher.encrypt(token)) == token


def test_key_rotation() -> None:
    old_key, new_key = generate_key(), generate_key()
    old = TokenCipher([old_key])
    stored = old.encrypt(REFRESH)

    rotating = TokenCipher.from_setting(f" {new_key} , {old_key} ")  # new first: it encrypts
    assert rotating.key_count == 2
    assert rotating.decrypt(stored) == REFRESH  # the old key still decrypts

    fresh = rotating.encrypt(ACCESS)
    assert TokenCipher([new_key]).decrypt(fresh) == ACCESS  # the new key encrypts
    with pytest.raises(TokenDecryptError):
        old.decrypt(fresh)

    rotated = rotating.rotate(stored)
    assert TokenCipher([new_key]).decrypt(rotated) == REFRESH  # old key can now be dropped


@pytest.mark.parametrize(
    "ciphertext",
    [b"not a fernet token", b"", b"gAAAAABm" + b"A" * 80],
    ids=["garbage", "empty", "fernet-shaped"],
)
def test_undecryptable_data_raises_a_clear_error(cipher: TokenCipher, ciphertext: bytes) -> None:
    with pytest.raises(TokenDecryptError, match="could not be decrypted"):
        cipher.decrypt(ciphertext)


def test_wrong_key_error_carries_no_token_or_key() -> None:
    right_key, wrong_key = generate_key(), generate_key()
    stored = TokenCipher([right_key]).encrypt(REFRESH)
    with pytest.raises(TokenDecryptError) as caught:
        TokenCipher([wrong_key]).decrypt(stored)
    message = full_error_text(caught.value)
    assert "CALSYNC_ENCRYPTION_KEY" in message
    for secret in (REFRESH, stored.decode(), right_key, wrong_key):
        assert secret not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    "setting", ["not-a-key", "c2hvcnQ=", "", " , "], ids=["text", "too-short", "empty", "only-commas"]
)
def test_invalid_key_setting_raises_without_echoing_it(setting: str) -> None:
    with pytest.raises(EncryptionKeyError) as caught:
        TokenCipher.from_setting(setting)
    if setting.strip(" ,"):
        assert setting not in full_error_text(caught.value)


def test_cipher_repr_shows_no_key() -> None:
    key = generate_key()
    assert repr(TokenCipher([key])) == "TokenCipher(keys=1)"


# -- where the key comes from ---------------------------------------------------------------------


def test_key_from_the_setting_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    key = generate_key()
    cipher = load_or_create_key(settings_for(tmp_path / "state", key))
    assert TokenCipher([key]).decrypt(cipher.encrypt(REFRESH)) == REFRESH
    assert not (tmp_path / "state").exists()


def test_generated_key_is_created_once_and_reused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = load_or_create_key(settings_for(state_dir))
    key_file = state_dir / KEY_FILE_NAME
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()

    second = load_or_create_key(settings_for(state_dir))
    assert key_file.read_text() == content
    assert second.decrypt(first.encrypt(REFRESH)) == REFRESH
    assert sorted(p.name for p in state_dir.iterdir()) == [KEY_FILE_NAME]  # no temporary files left


def test_processes_racing_for_the_key_agree(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    settings = settings_for(state_dir)
    with ThreadPoolExecutor(max_workers=8) as pool:
        ciphers = list(pool.map(lambda _: load_or_create_key(settings), range(16)))
    stored = ciphers[0].encrypt(REFRESH)
    assert all(c.decrypt(stored) == REFRESH for c in ciphers)

    # A separate process reading the same state dir decrypts it too.
    script = (
        "import sys\n"
        "from calsync.settings import Settings\n"
        "from calsync.syncbackend.crypto import load_or_create_key\n"
        "print(load_or_create_key(Settings(_env_file=None)).decrypt(sys.stdin.buffer.read()), end='')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CALSYNC_ENCRYPTION_KEY"}
    env["CALSYNC_STATE_DIR"] = str(state_dir)
    result = subprocess.run(
        [sys.executable, "-c", script], input=stored, env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == REFRESH


def test_an_empty_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).write_text("\n")
    with pytest.raises(EncryptionKeyError, match="empty"):
        load_or_create_key(settings_for(tmp_path))


# -- tokens on a connection -----------------------------------------------------------------------


def add_connection(session: Session) -> CalendarConnection:
    user = User(email="ann@acme.com")
    connection = CalendarConnection(
        user=user, provider="google", account_email="ann@acme.com", scopes="openid https://x/calendar"
    )
    session.add_all([user, connection])
    return connection


def test_tokens_are_stored_encrypted(
    sessions: sessionmaker[Session], engine: Engine, cipher: TokenCipher
) -> None:
    with transaction(sessions) as session:
        connection = add_connection(session)
        connection.set_tokens(cipher, refresh_token=REFRESH, access_token=ACCESS, expires_at=EXPIRES)
        session.flush()
        connection_id = connection.id

    with engine.connect() as db:
        row = db.execute(
            text("SELECT * FROM calendar_connections WHERE id = :id"), {"id": connection_id}
        ).one()
    raw = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
    assert REFRESH.encode() not in raw and ACCESS.encode() not in raw
    stored_refresh = bytes(row._mapping["refresh_token_encrypted"])
    assert cipher.decrypt(stored_refresh) == REFRESH

    with sessions() as session:
        auth = session.get_one(CalendarConnection, connection_id).authorization(cipher)
    assert auth == Authorization(
        refresh_token=REFRESH,
        access_token=ACCESS,
        expires_at=EXPIRES,
        account_email="ann@acme.com",
        scopes=("openid", "https://x/calendar"),
    )
    assert auth.expires_at is not None and auth.expires_at.tzinfo is UTC


def test_refreshed_authorization_is_persisted(sessions: sessionmaker[Session], cipher: TokenCipher) -> None:
    with transaction(sessions) as session:
        connection = add_connection(session)
        connection.set_tokens(cipher, refresh_token=REFRESH)
        session.flush()
        connection_id = connection.id

    with transaction(sessions) as session:
        connection = session.get_one(CalendarConnection, connection_id)
        auth = connection.authorization(cipher)
        assert auth.access_token is None and auth.expires_at is None
        auth.access_token, auth.expires_at, auth.refreshed = "ya29.new", EXPIRES + timedelta(hours=1), True
        connection.store_authorization(cipher, auth)

    with sessions() as session:
        auth = session.get_one(CalendarConnection, connection_id).authorization(cipher)
        assert (auth.refresh_token, auth.access_token) == (REFRESH, "ya29.new")
        assert auth.expires_at == EXPIRES + timedelta(hours=1)


def test_wrong_key_on_a_stored_connection(sessions: sessionmaker[Session], cipher: TokenCipher) -> None:
    with transaction(sessions) as session:
        connection = add_connection(session)
        connection.set_tokens(cipher, refresh_token=REFRESH, access_token=ACCESS)
        session.flush()
        connection_id = connection.id
    with sessions() as session, pytest.raises(TokenDecryptError) as caught:
        session.get_one(CalendarConnection, connection_id).authorization(TokenCipher([generate_key()]))
    assert REFRESH not in full_error_text(caught.value)


def test_cleared_tokens(cipher: TokenCipher) -> None:
    connection = CalendarConnection(id=5, provider="google", account_email="ann@acme.com")
    connection.set_tokens(cipher, refresh_token=REFRESH, access_token=ACCESS, expires_at=EXPIRES)
    assert connection.has_tokens
    connection.clear_tokens()
    assert not connection.has_tokens
    assert connection.access_token_encrypted is None and connection.access_token_expires_at is None
    with pytest.raises(MissingTokenError, match="connection 5"):
        connection.authorization(cipher)


def test_reprs_never_show_a_token(cipher: TokenCipher) -> None:
    connection = CalendarConnection(id=5, user_id=1, provider="google", account_email="ann@acme.com")
    connection.set_tokens(cipher, refresh_token=REFRESH, access_token=ACCESS, expires_at=EXPIRES)
    auth = connection.authorization(cipher)
    assert connection.refresh_token_encrypted is not None and connection.access_token_encrypted is not None

    shown = repr(connection) + str(connection) + repr(auth) + str(auth)
    assert "ann@acme.com" in repr(connection) and "google" in repr(connection)
    for secret in (
        REFRESH,
        ACCESS,
        connection.refresh_token_encrypted.decode(),
        connection.access_token_encrypted.decode(),
    ):
        assert secret not in shown


def test_no_key_is_generated_when_real_providers_are_configured(tmp_path: Path) -> None:
    settings = settings_for(tmp_path).model_copy(update={"google_client_id": "real-client.apps.example"})
    with pytest.raises(EncryptionKeyError, match="CALSYNC_ENCRYPTION_KEY is not set"):
        load_or_create_key(settings)
    assert not (tmp_path / KEY_FILE_NAME).exists()
