"""OAuth tokens at rest: Fernet encryption with key rotation.

`CALSYNC_ENCRYPTION_KEY` holds one Fernet key, or several separated by commas while rotating: the
first one encrypts, every one of them decrypts. To rotate, put a new key first, keep the old one
after it until every stored token has been re-encrypted (`TokenCipher.rotate`), then drop it.

With no key set (the demo and the sandbox) a key is generated once into `state_dir/encryption.key`
(mode 0600) and reused, so separate processes on one machine agree on it.

No error raised here carries a token or a key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from calsync.settings import Settings

KEY_FILE_NAME = "encryption.key"


class EncryptionKeyError(ValueError):
    """A configured key is not a Fernet key (32 url-safe base64-encoded bytes)."""


class TokenDecryptError(Exception):
    """Stored ciphertext could not be decrypted: the key does not match, or the data is damaged."""


def generate_key() -> str:
    """A new random Fernet key, as text (what `CALSYNC_ENCRYPTION_KEY` holds)."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(value: str) -> list[str]:
    """Split a comma-separated key setting, ignoring blanks and surrounding whitespace."""
    return [part.strip() for part in value.split(",") if part.strip()]


class TokenCipher:
    """Encrypts and decrypts token strings; the first key encrypts, every key decrypts."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, str | bytes):
            raise TypeError(
                "TokenCipher takes a sequence of keys; use TokenCipher.from_setting for one string"
            )
        if not keys:
            raise EncryptionKeyError("no encryption key given")
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # The key itself is never echoed back.
                raise EncryptionKeyError(
                    f"encryption key #{position} is not a valid Fernet key "
                    "(expected 32 url-safe base64-encoded bytes, as made by `Fernet.generate_key()`)"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        """From a `CALSYNC_ENCRYPTION_KEY` value: one key, or several separated by commas."""
        return cls(parse_keys(value))

    def __repr__(self) -> str:
        return f"TokenCipher(keys={self.key_count})"

    def encrypt(self, plaintext: str) -> bytes:
        if not isinstance(plaintext, str):
            raise TypeError(f"only text tokens are encrypted, got {type(plaintext).__name__}")
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode("utf-8")
        except (InvalidToken, TypeError, UnicodeDecodeError):
            raise TokenDecryptError(
                "a stored OAuth token could not be decrypted: CALSYNC_ENCRYPTION_KEY does not hold the key "
                "it was encrypted with (a wrong key, or an old key removed too early), or the data is damaged"
            ) from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same plaintext re-encrypted under the first (newest) key."""
        try:
            return self._fernet.rotate(bytes(ciphertext))
        except (InvalidToken, TypeError):
            raise TokenDecryptError(
                "a stored OAuth token could not be re-encrypted: none of the configured keys decrypts it"
            ) from None


def load_or_create_key(settings: Settings) -> TokenCipher:
    """The cipher from `CALSYNC_ENCRYPTION_KEY`, or (sandbox mode only) from a key generated once into
    the state dir. With real providers configured the key must be set: a generated key on one
    machine would make every token unreadable on the next."""
    if settings.encryption_key is not None and settings.encryption_key.get_secret_value().strip():
        return TokenCipher.from_setting(settings.encryption_key.get_secret_value())
    if not settings.sandbox_mode:
        raise EncryptionKeyError(
            "CALSYNC_ENCRYPTION_KEY is not set: it is required when Google or Microsoft is configured "
            "(make one with `python -c 'import calsync.syncbackend.crypto as c; print(c.generate_key())'`)"
        )
    return TokenCipher.from_setting(_read_or_create_key_file(Path(settings.state_dir) / KEY_FILE_NAME))


def _read_or_create_key_file(path: Path) -> str:
    """Read the key file, creating it first if missing. Safe when several processes race to create it."""
    return read_or_create_secret_file(path, generate_key, setting="CALSYNC_ENCRYPTION_KEY")


def read_or_create_secret_file(path: Path, generate: Callable[[], str], *, setting: str) -> str:
    """A secret kept in a file of the state dir (sandbox/demo only), generated once by `generate`.

    Safe when several processes race to create it: the file appears complete or not at all (mode
    0600). `setting` names the environment variable that replaces the file in production.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write the whole secret to a private temporary file, then link it into place: the link either
        # creates the final file complete, or fails because another process got there first.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(generate() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    value = path.read_text(encoding="ascii").strip()
    if not value:
        raise EncryptionKeyError(
            f"the key file {path} is empty; delete it to have a new key generated "
            f"(or set {setting}); what was protected by the old key has to be redone "
            "(stored tokens reconnected, links sent again)"
        )
    return value
