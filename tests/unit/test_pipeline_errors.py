"""Errors as data: the registry's answers (Confluent and Apicurio bodies) against a local
HTTP server, a registry that never answers, the protocol mix-up texts, the tail's errors
buffer and retries on the fake consumer."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from test_pipeline import SCHEMA, T0, settings, topic, value

from tu_analytics._fake import FakeConsumer, FakeRegistry
from tu_analytics._kafka import protocol_hint
from tu_analytics._pipeline import ConsumeError
from tu_analytics._registry import Registry
from tu_analytics._tail import KafkaBatchSource
from tu_analytics.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionError,
    RegistryError,
    authentication_error,
)

#: path -> (status, body) the fake registry answers; anything else: Apicurio's 404 page.
Answers = dict[str, tuple[int, object]]


@pytest.fixture
def registry_server() -> Iterator[tuple[str, Answers]]:
    answers: Answers = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.get(self.path.split("/v7", 1)[-1], (404, "<html>nope"))
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", answers
    srv.shutdown()
    srv.server_close()


def registry(url: str, password: str = "sr-secret") -> Registry:
    return Registry(settings(schema_registry_url=url, schema_registry_username="sr-user",
                             schema_registry_password=_secret(password)))


def _secret(text: str) -> object:
    from tu_analytics._settings import Secret

    return Secret(text)


def test_confluent_and_apicurio_not_found_are_answers(registry_server) -> None:
    url, answers = registry_server
    answers["/schemas/ids/1"] = (200, {"schema": SCHEMA})
    answers["/schemas/ids/2"] = (404, {"error_code": 40403, "message": "Schema not found"})
    answers["/schemas/ids/3"] = (404, {"error_code": 40403, "message": "No content with id"})
    reg = registry(f"{url}/apis/ccompat/v7")
    assert reg.schemas([1, 2, 3]) == {1: SCHEMA, 2: None, 3: None}


def test_401_with_an_empty_body_names_url_and_user_not_the_password(registry_server) -> None:
    url, answers = registry_server
    answers["/schemas/ids/1"] = (401, "")
    with pytest.raises(AuthenticationError) as info:
        registry(f"{url}/apis/ccompat/v7", "pw-xyz").schemas([1])
    text = str(info.value)
    assert "b''" not in text
    assert "pw-xyz" not in text
    assert f"{url}/apis/ccompat/v7" in text
    assert "'sr-user'" in text
    assert info.value.user == "sr-user"
    assert info.value.url == f"{url}/apis/ccompat/v7"


def test_server_errors_carry_the_registrys_own_message_and_the_schema_id(registry_server) -> None:
    url, answers = registry_server
    answers["/schemas/ids/5"] = (500, {"error_code": 50001, "message": "store down"})
    answers["/schemas/ids/6"] = (503, {"status": 503, "title": "Unavailable",
                                       "detail": "apicurio storage"})
    reg = registry(f"{url}/apis/ccompat/v7")
    with pytest.raises(RegistryError, match="code 50001: store down") as info:
        reg.schemas([5])
    assert info.value.schema_id == 5
    with pytest.raises(RegistryError, match="code 503: apicurio storage"):
        reg.schemas([6])


def test_check_names_the_missing_ccompat_path(registry_server) -> None:
    url, _ = registry_server
    with pytest.raises(ConfigurationError, match="/apis/ccompat/v7") as info:
        registry(url).check("fake")
    assert info.value.url == url
    with pytest.raises(ConfigurationError, match="Apicurio's own API"):
        registry(f"{url}/apis/registry/v3").check("fake")


def test_check_names_a_missing_subject_and_passes_a_good_one(registry_server) -> None:
    url, answers = registry_server
    answers["/subjects/fake-value/versions"] = (
        404, {"error_code": 40401, "message": "Subject not found"})
    with pytest.raises(ConfigurationError, match="no subject 'fake-value'"):
        registry(f"{url}/apis/ccompat/v7").check("fake")
    answers["/subjects/fake-value/versions"] = (200, [1, 2])
    reg = registry(f"{url}/apis/ccompat/v7")
    reg.check("fake")
    assert reg.checked


def test_a_registry_that_never_answers_fails_within_the_deadline() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # connections are accepted by the kernel and never answered
    try:
        reg = registry(f"http://127.0.0.1:{srv.getsockname()[1]}/apis/ccompat/v7")
        began = time.monotonic()
        with reg.deadline(1.0), pytest.raises(RegistryError, match="could not be reached"):
            reg.schemas([1])
        with reg.deadline(1.0):
            with pytest.raises(RegistryError):
                reg.schemas([1])
            hung = time.monotonic()
            with pytest.raises(RegistryError):  # the window's next chunk: failed at once
                reg.schemas([2])
            assert time.monotonic() - hung < 0.5
        assert time.monotonic() - began < 4
    finally:
        srv.close()


def test_protocol_mixups_are_named_both_ways() -> None:
    tls_at_plain = ("ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A00010B:SSL "
                    "routines::wrong version number (after 3ms in state SSL_HANDSHAKE)")
    plain_at_tls = ("sasl_plaintext://127.0.0.1:9093/bootstrap: Disconnected while requesting "
                    "ApiVersion: might be caused by incorrect security.protocol configuration "
                    "(connecting to a SSL listener?) or broker version is < 0.10")
    assert "SASL_PLAINTEXT" in (protocol_hint(tls_at_plain, "SASL_SSL") or "")
    assert "SASL_SSL" in (protocol_hint(plain_at_tls, "SASL_PLAINTEXT") or "")
    assert "ssl_ca_location" in (protocol_hint("certificate verify failed", "SASL_SSL") or "")
    assert protocol_hint("Connection refused", "SASL_SSL") is None


def test_one_authentication_error_builder() -> None:
    err = authentication_error("broker", "h:9092", "alice", "SASL authentication failed",
                               topic="t")
    assert (err.url, err.user, err.topic) == ("h:9092", "alice", "t")
    assert str(err).startswith("the broker at h:9092 rejected the SASL credentials of 'alice'")


# -- the tail's Kafka side on the fake ----------------------------------------------------------


def source(fake: FakeConsumer, reg: FakeRegistry | None = None, **kw: object) -> KafkaBatchSource:
    return KafkaBatchSource(settings(), reg or FakeRegistry({7: SCHEMA}), consumer=lambda s: fake,
                            **kw)  # type: ignore[arg-type]


def drain(src: KafkaBatchSource, polls: int = 20) -> pl.DataFrame:
    frames = [f for f in (src.poll(0.01) for _ in range(polls)) if f is not None]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def test_tail_keeps_bad_records_in_its_errors_buffer() -> None:
    fake = topic({0: [T0 + i for i in range(10)]})
    fake.append(0, T0 + 10, b"junk")
    src = source(fake, start_ms=T0)
    got = drain(src)
    assert got.height == 10
    bad = src.take_errors()
    assert bad is not None
    assert bad["offset"].to_list() == [10]
    assert src.errors_seen == 1
    assert src.take_errors() is None


def test_tail_resumes_from_stored_positions() -> None:
    fake = topic({0: [T0 + i for i in range(10)], 1: [T0 + i for i in range(4)]})
    first = source(fake, start_ms=T0)
    drain(first)
    assert first.positions == {0: 10, 1: 4}
    fake.extend(0, [T0 + 100, T0 + 101], value=value)
    again = source(fake, start_offsets=first.positions)
    assert drain(again)["offset"].to_list() == [10, 11]


def test_tail_catch_up_skips_out_of_order_records_older_than_start() -> None:
    fake = topic({0: [T0, T0 + 1000, T0 + 500, T0 + 2000]})
    got = drain(source(fake, start_ms=T0 + 1000))
    assert got["offset"].to_list() == [1, 3]


def test_tail_retries_while_the_registry_is_away_and_loses_nothing() -> None:
    fake = topic({0: [T0 + i for i in range(10)]})
    reg = FakeRegistry({7: SCHEMA}, down=RegistryError("registry away"))
    src = source(fake, reg, start_ms=T0)
    assert drain(src, polls=3).height == 0
    assert isinstance(src.problem, RegistryError)
    reg.down = None
    src._retry_at = 0.0  # skip the backoff wait
    assert drain(src).height == 10
    assert src.problem is None


def test_the_registry_budget_counts_time_waiting_not_the_windows_length(registry_server) -> None:
    url, answers = registry_server
    answers["/schemas/ids/1"] = (200, {"schema": SCHEMA})
    answers["/schemas/ids/2"] = (200, {"schema": SCHEMA})
    reg = registry(f"{url}/apis/ccompat/v7")
    with reg.deadline(0.5):
        reg.schemas([1])
        time.sleep(0.6)  # a long read between two new schema ids
        assert reg.schemas([2]) == {2: SCHEMA}


def test_tail_reopens_after_a_fatal_consumer_error_at_the_positions_reached() -> None:
    fake = topic({0: [T0 + i for i in range(6)]}, fetch_records=3)
    opened: list[FakeConsumer] = []

    def factory(s: object) -> FakeConsumer:
        opened.append(fake)
        return fake

    src = KafkaBatchSource(settings(), FakeRegistry({7: SCHEMA}), start_ms=T0,
                           consumer=factory)  # type: ignore[arg-type]
    first = src.poll(0.01)
    assert first is not None
    assert first.height == 3
    fake.pending_errors.append(ConsumeError("_FENCED", "fenced", fatal=True, partition=0))
    assert src.poll(0.01) is None
    assert fake.closed
    assert isinstance(src.problem, ConnectionError)
    src._retry_at = 0.0
    rest = drain(src)
    assert rest["offset"].to_list() == [3, 4, 5]
    assert len(opened) == 2
