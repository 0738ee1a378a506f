"""The CLI's edges, in-process: every failure is `error: …` with rc 2, a traceback only with
--debug, help on every option, and the window flags reaching the library."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from tu_analytics import ConfigurationError
from tu_analytics._connection import Connection
from tu_analytics.cli import build_parser, main
from tu_analytics.cli_window import parse_size

ENV = {
    "TU_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "TU_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "TU_SASL_USERNAME": "u",
    "TU_SASL_PASSWORD": "hunter2-kafka",
    "TU_TOPIC": "t",
    "TU_SCHEMA_REGISTRY_URL": "http://127.0.0.1:1",
    "TU_SCHEMA_REGISTRY_USERNAME": "sr",
    "TU_SCHEMA_REGISTRY_PASSWORD": "hunter2-registry",
}


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TU_LATENESS", raising=False)
    monkeypatch.delenv("TU_PROFILE", raising=False)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ("--last", "2"),
        ("--last", "1000000000w"),
        ("--last", "100000w"),
        ("--start", "1900-01-01T00:00Z", "--end", "2026-01-01T00:00Z"),
        ("--start", "2026-01-01T00:00Z", "--end", "10000-01-01T00:00Z"),
        ("--start", "2026-01-01T00:00Z"),
        ("--last", "1h", "--lateness", "soon"),
        ("--last", "1h", "--format", "raw"),
    ],
)
def test_bad_input_is_one_error_line_with_rc_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, argv: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TU_TOPIC_RAW", raising=False)
    rc, err = _run(capsys, "window", *argv, "-o", str(tmp_path / "x.parquet"), "--no-progress")
    assert rc == 2
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_malformed_url_is_refused_before_reading(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("TU_SCHEMA_REGISTRY_URL", "not a url")
    rc, err = _run(capsys, "window", "--last", "1h", "-o", str(tmp_path / "x.parquet"))
    assert rc == 2
    assert "error: schema_registry_url 'not a url' is not an http(s) URL" in err


def _raising(exc: BaseException) -> Any:
    def window(self: Connection, **kw: Any) -> Any:
        raise exc

    return window


def _kafka_exception() -> BaseException:
    from confluent_kafka import KafkaError, KafkaException

    return KafkaException(KafkaError(KafkaError._TRANSPORT, "broker transport failure"))


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (_kafka_exception(), "KafkaException: "),
        (OverflowError("date value out of range"), "OverflowError: date value out of range"),
        (ValueError("bad"), "ValueError: bad"),
        (RuntimeError(), "error: RuntimeError"),
        (ConfigurationError("ours"), "error: ours"),
    ],
)
def test_every_failure_maps_to_rc_2_and_a_traceback_only_with_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    exc: BaseException, shown: str,
) -> None:
    monkeypatch.setattr(Connection, "window", _raising(exc))
    out = str(tmp_path / "x.parquet")
    rc, err = _run(capsys, "window", "--last", "1h", "-o", out)
    assert (rc, "Traceback" in err, shown in err) == (2, False, True)
    assert err.startswith("error: ")
    rc, err = _run(capsys, "--debug", "window", "--last", "1h", "-o", out)
    assert (rc, "Traceback (most recent call last)" in err, shown in err) == (2, True, True)


def test_driver_errors_are_scrubbed_of_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(
        Connection, "window", _raising(RuntimeError("sasl.password=hunter2-kafka rejected"))
    )
    rc, err = _run(capsys, "window", "--last", "1h", "-o", str(tmp_path / "x.parquet"))
    assert rc == 2
    assert "hunter2" not in err
    assert "********" in err


def test_window_flags_reach_the_library(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    seen: dict[str, Any] = {}

    def window(self: Connection, **kw: Any) -> Any:
        seen.update(kw, lateness_ms=self.settings.lateness_ms)
        raise ConfigurationError("stop here")

    monkeypatch.setattr(Connection, "window", window)
    out = str(tmp_path / "x.parquet")
    _run(capsys, "window", "--last", "2 days", "-o", out, "--lateness", "90s",
         "--max-records", "1_000", "--max-bytes", "4G", "--dedupe", "--machine", "EX-001")
    assert seen["lateness_ms"] == 90_000
    assert (seen["max_records"], seen["max_bytes"], seen["dedupe"]) == (1000, 4 * 2**30, True)
    assert (seen["last"], seen["machines"]) == ("2 days", ["EX-001"])
    seen.clear()
    monkeypatch.setenv("TU_LATENESS", "7m")
    _run(capsys, "window", "--last", "1h", "-o", out)
    # Unset flags leave the library's defaults alone.
    assert seen["lateness_ms"] == 420_000
    assert not {"max_records", "max_bytes", "dedupe"} & set(seen)


@pytest.mark.parametrize(
    ("text", "size"),
    [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", int(1.5 * 2**30)), ("100", 100),
     ("2k", 2048), ("1TB", 2**40), ("4 g", 4 * 2**30)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "G", "-4G", "4X", "0", "4GG"])
def test_bad_sizes_are_usage_errors(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(bad)
    with pytest.raises(SystemExit) as info:
        main(["window", "--last", "1h", "-o", "x.parquet", "--max-bytes", bad])
    assert info.value.code == 2
    assert "--max-bytes" in capsys.readouterr().err


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def test_every_option_of_the_global_and_window_parsers_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    window = sub.choices["window"]
    opts = _options(parser) + _options(window)
    assert {"--debug", "--lateness", "--max-records", "--max-bytes", "--dedupe"} <= {
        s for a in opts for s in a.option_strings
    }
    for action in opts:
        assert action.help, action.option_strings
        assert len(action.help) > 10, action.option_strings
