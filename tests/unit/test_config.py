from pathlib import Path

import pytest

from interlink.config import ConfigError, Settings, load


def test_defaults_keep_state_under_the_working_directory(tmp_path: Path) -> None:
    settings = load(str(tmp_path / "absent.toml"), env={})
    assert settings == Settings()
    assert settings.database_url == "sqlite:///.interlink/interlink.db"


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    file = tmp_path / "interlink.toml"
    file.write_text('port = 9000\nhost = "0.0.0.0"\noutbound_allow_networks = ["10.0.0.0/8"]\n')
    env = {"INTERLINK_PORT": "9100", "INTERLINK_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8, ::1/128"}
    settings = load(str(file), env=env)
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"
    assert settings.outbound_allow_networks == ("127.0.0.0/8", "::1/128")
    assert settings.public_url == "http://127.0.0.1:9100"
    assert load(str(file), env=env, port=9200).port == 9200


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    file = tmp_path / "x.toml"
    file.write_text("delivery_concurrency = 8\n")
    assert load(env={"INTERLINK_CONFIG": str(file)}).delivery_concurrency == 8


@pytest.mark.parametrize(
    ("text", "env", "words"),
    [
        ("port = [", {}, "x.toml"),
        ("colour = 1", {}, "colour"),
        ("", {"INTERLINK_PORT": "eighty"}, "port"),
        ("", {"INTERLINK_OAUTH_REFRESH_FRACTION": "1.5"}, "oauth_refresh_fraction"),
        ("", {"INTERLINK_SECRETS_KEY": "not-a-key"}, "secrets_key"),
    ],
)
def test_bad_configuration_says_what_is_wrong(
    tmp_path: Path, text: str, env: dict[str, str], words: str
) -> None:
    file = tmp_path / "x.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load(str(file), env=env)


def test_secrets_keys_are_a_comma_separated_list(tmp_path: Path) -> None:
    a, b = "A" * 43 + "=", "B" * 43 + "="
    settings = load(str(tmp_path / "none.toml"), env={"INTERLINK_SECRETS_KEY": f"{a}, {b}"})
    assert settings.secrets_key == (a, b)


def test_partner_api_urls_by_kit_from_the_environment_or_the_file(tmp_path: Path) -> None:
    env = {"INTERLINK_PARTNER_API_URLS": "pms_gamma=http://127.0.0.1:9/v2, other=https://x"}
    settings = load(str(tmp_path / "none.toml"), env=env)
    assert settings.partner_api_urls == {"pms_gamma": "http://127.0.0.1:9/v2", "other": "https://x"}
    file = tmp_path / "interlink.toml"
    file.write_text('[partner_api_urls]\npms_gamma = "https://sandbox.example/v2"\n')
    assert load(str(file), env={}).partner_api_urls == {"pms_gamma": "https://sandbox.example/v2"}
    with pytest.raises(ConfigError, match="name=value"):
        load(str(tmp_path / "none.toml"), env={"INTERLINK_PARTNER_API_URLS": "just-a-url"})
