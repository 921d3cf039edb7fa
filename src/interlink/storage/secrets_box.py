"""Encryption at rest for the credentials Interlink holds for tenants (OAuth client secrets and
tokens): Fernet (AES-128-CBC + HMAC-SHA256) under a list of keys, the first of which encrypts
and all of which decrypt, so a key can be rotated without a moment in which a row is unreadable.

The keys come from ``secrets_key`` (``INTERLINK_SECRETS_KEY``, comma-separated); unset, the
embedded default keeps one in ``.interlink/secrets.key``, made on first start (mode 0600). A
deployment of several processes must configure the same keys in each.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from interlink.config import STATE_DIR
from interlink.storage.private_files import create_private_file


class Secret:
    """A decrypted secret: its ``repr`` never shows it, so a logged record cannot leak it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretUnreadable(Exception):
    """A ciphertext none of the configured keys decrypts (a key was dropped too early)."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one secrets key is needed")
        try:
            fernets = [Fernet(k.strip().encode()) for k in keys]
        except (ValueError, TypeError):
            raise ValueError(
                "a secrets key must be 32 url-safe base64-encoded bytes "
                "(make one with `interlink connections new-key`)"
            ) from None
        self._fernet = MultiFernet(fernets)

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "a stored secret cannot be decrypted with the configured keys"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """The same secret, encrypted under the first key (decrypted with whichever fits)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "a stored secret cannot be decrypted with the configured keys"
            ) from None


def secrets_keys(configured: Sequence[str], state_dir: Path = STATE_DIR) -> tuple[str, ...]:
    """The configured keys, or the one kept in ``.interlink/secrets.key`` (made on first use)."""
    if configured:
        return tuple(configured)
    path = state_dir / "secrets.key"
    if path.exists():
        return (path.read_text().strip(),)
    key = SecretBox.new_key()
    try:
        fd = create_private_file(path)
    except FileExistsError:  # another process made it first: use that one
        return (path.read_text().strip(),)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return (key,)
