from pathlib import Path

import pytest

from interlink.storage.secrets_box import (
    Secret,
    SecretBox,
    SecretsKeyRequired,
    SecretUnreadable,
    database_keys,
    is_sealed,
    secrets_keys,
)


def test_a_ciphertext_does_not_contain_the_plaintext_and_round_trips() -> None:
    box = SecretBox([SecretBox.new_key()])
    ciphertext = box.encrypt("sim_at_very-secret")
    assert "very-secret" not in ciphertext
    assert box.decrypt(ciphertext) == "sim_at_very-secret"
    assert box.encrypt("x") != box.encrypt("x")  # a fresh IV each time


def test_rotation_the_first_key_encrypts_every_key_decrypts() -> None:
    old, new = SecretBox.new_key(), SecretBox.new_key()
    under_old = SecretBox([old]).encrypt("s3cret")
    both = SecretBox([new, old])
    assert both.decrypt(under_old) == "s3cret"
    rotated = both.rotate(under_old)
    assert SecretBox([new]).decrypt(rotated) == "s3cret"
    with pytest.raises(SecretUnreadable):
        SecretBox([old]).decrypt(rotated)
    with pytest.raises(SecretUnreadable):
        SecretBox([new]).decrypt(under_old)


@pytest.mark.parametrize("keys", [[], ["not-a-key"], ["a" * 44]])
def test_bad_keys_are_refused_at_once(keys: list[str]) -> None:
    with pytest.raises(ValueError):
        SecretBox(keys)


def test_a_secret_never_shows_in_a_repr() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in repr([secret])
    assert secret.reveal() == "hunter2" and secret == Secret("hunter2")


def test_without_configured_keys_one_is_made_once_and_kept(tmp_path: Path) -> None:
    first = secrets_keys((), tmp_path)
    assert secrets_keys((), tmp_path) == first
    assert (tmp_path / "secrets.key").stat().st_mode & 0o777 == 0o600
    SecretBox(first)  # a valid key
    assert secrets_keys(("k1", "k2"), tmp_path) == ("k1", "k2")


def test_a_key_file_made_wider_is_narrowed_when_read(tmp_path: Path) -> None:
    first = secrets_keys((), tmp_path)
    (tmp_path / "secrets.key").chmod(0o644)
    assert secrets_keys((), tmp_path) == first
    assert (tmp_path / "secrets.key").stat().st_mode & 0o777 == 0o600


def test_postgres_has_no_default_key(tmp_path: Path) -> None:
    with pytest.raises(SecretsKeyRequired, match="INTERLINK_SECRETS_KEY"):
        database_keys((), sqlite=False)
    assert database_keys(("k",), sqlite=False) == ("k",)


def test_only_rows_not_under_the_first_key_need_rotating() -> None:
    old, new = SecretBox.new_key(), SecretBox.new_key()
    sealed = SecretBox([old]).encrypt("whsec_x")
    box = SecretBox([new, old])
    assert not box.under_first_key(sealed) and is_sealed(sealed)
    rotated = box.rotate(sealed)
    assert box.under_first_key(rotated) and SecretBox([new]).decrypt(rotated) == "whsec_x"
    assert not is_sealed("whsec_x")
