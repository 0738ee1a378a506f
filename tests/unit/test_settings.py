from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tu_analytics import ConfigurationError, Secret, Settings, connect
from tu_analytics._settings import scrub

BASE = {
    "bootstrap_servers": "b:9092",
    "topic": "t",
    "schema_registry_url": "https://sr",
    "sasl_username": "key",
    "sasl_password": "kafka-secret-123",
    "schema_registry_username": "srkey",
    "schema_registry_password": "sr-secret-456",
}
ENV = {
    "TU_BOOTSTRAP_SERVERS": "env:9092",
    "TU_SASL_USERNAME": "envuser",
    "TU_SASL_PASSWORD": "env-secret-789",
    "TU_TOPIC": "envtopic",
    "TU_SCHEMA_REGISTRY_URL": "http://envsr",
    "TU_SECURITY_PROTOCOL": "sasl_plaintext",
}


def test_secrets_are_masked_everywhere() -> None:
    s = Settings.resolve(env={}, **BASE)
    conn = connect(s)
    for text in (repr(s), str(s), repr(conn), str(conn), f"{s}", repr(s.masked())):
        assert "kafka-secret-123" not in text
        assert "sr-secret-456" not in text
    assert "********" in repr(s)
    assert repr(Secret("x")) == "Secret('********')"
    assert str(Secret("x")) == "********"
    with pytest.raises(TypeError):
        pickle.dumps(s.sasl_password)


def test_client_configs_carry_the_secrets() -> None:
    s = Settings.resolve(env={}, **BASE)
    assert s.kafka_config()["sasl.password"] == "kafka-secret-123"
    assert s.kafka_config()["security.protocol"] == "SASL_SSL"  # Confluent Cloud's default
    assert s.registry_config()["basic.auth.user.info"] == "srkey:sr-secret-456"
    assert s.group_id == "key.tu-analytics"


def test_environment_then_profile_then_keywords(tmp_path: Path) -> None:
    s = Settings.resolve(env=ENV)
    assert (s.bootstrap_servers, s.topic, s.security_protocol) == (
        "env:9092",
        "envtopic",
        "SASL_PLAINTEXT",
    )
    assert s.sasl_password == Secret("env-secret-789")
    prof = tmp_path / "profiles.toml"
    prof.write_text('[profiles.prod]\ntopic = "proftopic"\nbootstrap_servers = "prof:9092"\n')
    s = Settings.resolve(env=ENV, profile="prod", profiles_path=prof, topic="kwtopic")
    assert (s.bootstrap_servers, s.topic) == ("prof:9092", "kwtopic")
    with pytest.raises(ConfigurationError, match="not found"):
        Settings.resolve(env=ENV, profile="nope", profiles_path=prof)


def test_missing_settings_say_how_to_start_the_sandbox() -> None:
    with pytest.raises(ConfigurationError, match="tu-analytics sandbox up"):
        Settings.resolve(env={})
    with pytest.raises(ConfigurationError, match="sasl_username"):
        Settings.resolve(env={}, **{**BASE, "sasl_password": None, "sasl_username": None})
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.resolve(env={}, bootstrap="x")
    with pytest.raises(ConfigurationError, match="security_protocol"):
        Settings.resolve(env={}, **BASE, security_protocol="TLS")


def test_scrub_removes_secrets() -> None:
    assert (
        scrub("auth failed for kafka-secret-123!", ["kafka-secret-123"])
        == "auth failed for ********!"
    )
