from pathlib import Path

import pytest

from interlink.storage.secrets_box import Secret, SecretBox, SecretUnreadable, secrets_keys


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
