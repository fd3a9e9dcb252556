"""Secrets from files (IMAGEGATE_SECRETS_DIR, e.g. a mounted Kubernetes Secret): used, ranked between
the TOML file and the environment, and never shown by repr() or by configuration errors."""

from __future__ import annotations

import os

import pytest

from consumer.config import ConfigError, load_settings

SASL = "sasl-pw-7f3a9c2e-do-not-print"
REDIS_PW = "redis-pw-51c0d8-do-not-print"


@pytest.fixture
def secrets(tmp_path, monkeypatch):
    d = tmp_path / "secrets"
    d.mkdir()
    # As Kubernetes mounts a Secret: each key a symlink into a hidden, timestamped directory.
    data = d / "..2026_12_05_10_00_00.000000001"
    data.mkdir()
    (data / "IMAGEGATE_KAFKA__sasl.password").write_text(SASL + "\n")
    (data / "IMAGEGATE_KAFKA__sasl.username").write_text("imagegate")
    (data / "IMAGEGATE_REDIS_URL").write_text(f"redis://imagegate:{REDIS_PW}@redis.example:6379/0\n")
    (d / "..data").symlink_to(data.name)
    for f in data.iterdir():
        (d / f.name).symlink_to(f"..data/{f.name}")
    for k in list(os.environ):
        if k.startswith("IMAGEGATE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("IMAGEGATE_SECRETS_DIR", str(d))
    return d


def test_secret_files_are_used(secrets):
    s = load_settings()
    assert s.kafka == {"sasl.password": SASL, "sasl.username": "imagegate"}
    assert s.kafka_common()["sasl.password"] == SASL
    assert s.redis_url == f"redis://imagegate:{REDIS_PW}@redis.example:6379/0"


def test_environment_beats_secret_files_which_beat_the_config_file(secrets, tmp_path, monkeypatch):
    cfg = tmp_path / "imagegate.toml"
    cfg.write_text('redis_url = "redis://from-toml:6379/0"\nmax_batch_size = 4\n[kafka]\n"sasl.password" = "toml"\n')
    monkeypatch.setenv("IMAGEGATE_CONFIG", str(cfg))
    s = load_settings()
    assert REDIS_PW in s.redis_url and s.kafka["sasl.password"] == SASL and s.max_batch_size == 4
    monkeypatch.setenv("IMAGEGATE_KAFKA__sasl.password", "from-env")
    monkeypatch.setenv("IMAGEGATE_REDIS_URL", "redis://from-env:6379/0")
    s = load_settings()
    assert s.kafka["sasl.password"] == "from-env" and s.redis_url == "redis://from-env:6379/0"


def test_repr_and_str_never_show_a_secret(secrets):
    s = load_settings()
    for text in (repr(s), str(s)):
        assert SASL not in text and REDIS_PW not in text
        assert "imagegate" in text and "redis.example" in text  # the rest is still there


def test_configuration_errors_never_quote_a_secret(secrets, monkeypatch):
    monkeypatch.setenv("IMAGEGATE_MAX_BATCH_SIZE", "0")
    (secrets / "IMAGEGATE_CACHE_TTL_S").write_text(SASL)  # a secret in a numeric setting's file
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert "IMAGEGATE_MAX_BATCH_SIZE" in msg and "IMAGEGATE_CACHE_TTL_S" in msg
    assert SASL not in msg and REDIS_PW not in msg


def test_a_misnamed_secret_file_is_an_error_not_ignored(secrets):
    (secrets / "password").write_text(SASL)
    with pytest.raises(ConfigError, match="'password' is not an IMAGEGATE_\\* setting") as e:
        load_settings()
    assert SASL not in str(e.value)


def test_a_missing_secrets_dir_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEGATE_SECRETS_DIR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="IMAGEGATE_SECRETS_DIR=.*not a directory"):
        load_settings()


def test_safety_critical_kafka_settings_are_refused_from_files_too(secrets):
    (secrets / "IMAGEGATE_KAFKA__acks").write_text("0")
    with pytest.raises(ConfigError, match="acks cannot be set"):
        load_settings()
