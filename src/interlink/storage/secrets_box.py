"""Encryption at rest for the credentials Interlink holds for tenants (OAuth client secrets and
tokens, sources' verifying secrets, endpoints' signing secrets): Fernet (AES-128-CBC +
HMAC-SHA256) under a list of keys, the first of which encrypts and all of which decrypt, so a
key can be rotated without a moment in which a row is unreadable.

The keys come from ``secrets_key`` (``INTERLINK_SECRETS_KEY``, comma-separated); unset, the
embedded default (SQLite) keeps one in ``.interlink/secrets.key``, made on first start (mode
0600). On PostgreSQL there is no default: several processes, often on several machines, must
share the same keys, and a key file made by whichever started first would be on one disk only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from interlink.config import STATE_DIR, ConfigError
from interlink.storage.private_files import create_private_file, narrow_private_file

# Every Fernet token starts with its version byte (0x80) and a 64-bit timestamp whose high bytes
# are zero until the year 36812: in url-safe base64, these six characters. Plaintext secrets
# (whsec_…, a partner's shared secret) never do in practice; ``is_sealed`` tells stored values
# written before encryption at rest from those written after.
_FERNET_MARK = "gAAAAA"


class SecretsKeyRequired(ConfigError):
    """PostgreSQL without ``secrets_key``: refused at start-up (see the module's docstring)."""


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
                "(make one with `interlink secrets new-key`)"
            ) from None
        self._fernet = MultiFernet(fernets)
        self._first = fernets[0]

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

    def under_first_key(self, ciphertext: str) -> bool:
        """Whether the first key encrypted ``ciphertext`` (then ``rotate-key`` leaves it)."""
        try:
            self._first.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: str) -> str:
        """The same secret, encrypted under the first key (decrypted with whichever fits)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "a stored secret cannot be decrypted with the configured keys"
            ) from None


def is_sealed(stored: str) -> bool:
    """Whether a stored value is a ciphertext of this box's format (else: plaintext)."""
    return stored.startswith(_FERNET_MARK)


def secrets_keys(configured: Sequence[str], state_dir: Path = STATE_DIR) -> tuple[str, ...]:
    """The configured keys, or the one kept in ``.interlink/secrets.key`` (made on first use)."""
    if configured:
        return tuple(configured)
    path = state_dir / "secrets.key"
    if path.exists():
        narrow_private_file(path)  # made by a release that did not create it 0600
        return (path.read_text().strip(),)
    key = SecretBox.new_key()
    try:
        fd = create_private_file(path)
    except FileExistsError:  # another process made it first: use that one
        return (path.read_text().strip(),)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return (key,)


def database_keys(configured: Sequence[str], sqlite: bool) -> tuple[str, ...]:
    """The keys for a database: on SQLite the configured ones or the key file's; on PostgreSQL
    only configured ones (SecretsKeyRequired otherwise)."""
    if not configured and not sqlite:
        raise SecretsKeyRequired(
            "PostgreSQL needs INTERLINK_SECRETS_KEY (secrets_key): the key that encrypts "
            "secrets at rest, the same in every process. Make one with "
            "`interlink secrets new-key`"
        )
    return secrets_keys(configured)
