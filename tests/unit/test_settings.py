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


def test_lateness_defaults_to_five_minutes_and_reads_every_layer(tmp_path: Path) -> None:
    assert Settings.resolve(env={}, **BASE).lateness_ms == 300_000
    assert Settings.resolve(env={**ENV, "TU_LATENESS": "90s"}).lateness_ms == 90_000
    assert Settings.resolve(env={**ENV, "TU_LATENESS": "2 minutes"}).lateness_ms == 120_000
    prof = tmp_path / "profiles.toml"
    prof.write_text('[profiles.p]\nlateness = "10m"\n')
    env = {**ENV, "TU_LATENESS": "90s"}
    assert Settings.resolve(env=env, profile="p", profiles_path=prof).lateness_ms == 600_000
    s = Settings.resolve(env=env, profile="p", profiles_path=prof, lateness="1h")
    assert s.lateness_ms == 3_600_000
    assert Settings.resolve(env=env, lateness_ms=1234).lateness_ms == 1234
    assert Settings.resolve(env=env, lateness="0").lateness_ms == 0
    with pytest.raises(ConfigurationError, match="no unit"):
        Settings.resolve(env=ENV, lateness=300)
    with pytest.raises(ConfigurationError, match="duration"):
        Settings.resolve(env={**ENV, "TU_LATENESS": "soon"})
    with pytest.raises(ConfigurationError, match="lateness_ms"):
        Settings.resolve(env=ENV, lateness_ms=-1)


def test_ssl_ca_location_from_keyword_env_and_profile(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    s = Settings.resolve(env={}, **BASE, ssl_ca_location=ca)
    assert s.kafka_config()["ssl.ca.location"] == ca
    assert s.registry_config()["ssl.ca.location"] == ca  # https registry, same CA
    env = {**ENV, "TU_SECURITY_PROTOCOL": "SASL_SSL", "TU_SSL_CA_LOCATION": ca}
    assert Settings.resolve(env=env).ssl_ca_location == ca
    # The registry is http here: no TLS settings for it.
    assert "ssl.ca.location" not in Settings.resolve(env=env).registry_config()
    prof = tmp_path / "profiles.toml"
    prof.write_text(f'[profiles.tls]\nssl_ca_location = "{ca}2"\n')
    assert Settings.resolve(env=env, profile="tls", profiles_path=prof).ssl_ca_location == ca + "2"
    # Plaintext: librdkafka is not handed a CA it would not use.
    plain = Settings.resolve(env={**ENV, "TU_SSL_CA_LOCATION": ca})
    assert "ssl.ca.location" not in plain.kafka_config()
    assert plain.ssl_ca_location == ca


@pytest.mark.parametrize(
    "url", ["not a url", "localhost:8081", "ftp://sr", "http://", "http://sr:port", "sr"]
)
def test_a_malformed_registry_url_is_refused_at_connect(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"schema_registry_url .* http"):
        connect(**{**BASE, "schema_registry_url": url})


def test_registry_urls_that_are_fine() -> None:
    for url in ("http://127.0.0.1:8081/apis/ccompat/v7", "https://sr", "https://a,https://b:1"):
        assert connect(**{**BASE, "schema_registry_url": url}).settings.schema_registry_url == url


@pytest.mark.parametrize("servers", ["b:port", "http://b:9092/x", "b:99999", "a b:9092", "b:9092,"])
def test_malformed_bootstrap_servers_are_refused(servers: str) -> None:
    with pytest.raises(ConfigurationError, match="bootstrap_servers"):
        connect(**{**BASE, "bootstrap_servers": servers})


def test_bootstrap_servers_that_are_fine() -> None:
    for servers in ("b:9092", "b", "a:1,b:2", "SASL_SSL://b:9092", "[::1]:9092"):
        assert connect(**{**BASE, "bootstrap_servers": servers}).settings.bootstrap_servers
