"""confluent-kafka behind the pipeline's :class:`~tu_analytics._pipeline.RecordConsumer`.

:class:`KafkaConsumer` is the only place that touches librdkafka for windows and the tail:
the tuned consumer configuration (``read_committed``, large fetches), the topic check that
turns wrong credentials, ACLs, unknown topics and a wrong ``security_protocol`` into clear
errors, and ``consume`` batches taken apart into columns with one C-level ``map`` each.
Planning and the fetch loop live in ``_pipeline``.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

from ._pipeline import Batch, ConsumeError
from ._settings import Settings, scrub
from .errors import (
    AuthorizationError,
    ConfigurationError,
    ConnectionError,
    TopicNotFoundError,
    authentication_error,
)

log = logging.getLogger("tu_analytics.kafka")

#: librdkafka error names that mean "the credentials are wrong", whatever the call.
_AUTH = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED")


class _Errors:
    """Collects asynchronous client errors (auth failures arrive only through error_cb)."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.errors: list[Any] = []
        self.failures: list[str] = []  # librdkafka's connection-failure log lines

    def __call__(self, err: Any) -> None:
        self.errors.append(err)

    def auth_failure(self) -> str | None:
        for err in self.errors:
            if err.name() in _AUTH or "SASL authentication" in err.str():
                return scrub(err.str(), self.secrets)
        return None

    def last(self) -> str:
        return scrub(self.errors[-1].str(), self.secrets) if self.errors else "no answer"

    def protocol_mixup(self, protocol: str) -> str | None:
        """The likely fix when the errors show a TLS client at a plaintext listener or the
        other way round (librdkafka words both in its transport errors)."""
        texts = [err.str() for err in self.errors] + self.failures
        for text in texts:
            hint = protocol_hint(text, protocol)
            if hint:
                return hint
        # A TLS listener drops a plaintext client's first request (ApiVersion) unanswered.
        dropped = sum("in state APIVERSION_QUERY" in t for t in self.failures)
        if dropped >= 2 and not protocol.endswith("SSL"):
            return protocol_hint("connecting to a SSL listener", protocol)
        return None


def protocol_hint(text: str, protocol: str) -> str | None:
    """What a librdkafka transport error says about ``security.protocol``, if anything."""
    low = text.lower()
    if "connecting to a ssl listener" in low:
        return (f"the listener speaks TLS but security_protocol is {protocol!r}: use "
                "security_protocol='SASL_SSL' (or the plaintext port)")
    if "plaintext broker listener" in low or (
            "ssl handshake failed" in low and ("wrong version number" in low
                                               or "packet length too long" in low
                                               or "unexpected eof" in low)):
        return (f"the listener speaks plaintext but security_protocol is {protocol!r}: use "
                "security_protocol='SASL_PLAINTEXT' (or the TLS port)")
    if "certificate verify failed" in low:
        return ("the broker's TLS certificate is not trusted: pass ssl_ca_location= (env "
                "TU_SSL_CA_LOCATION) with the CA that signed it")
    return None


class _Logger(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's own log lines, scrubbed, at DEBUG (they are noisy on reconnects). Connection
    failures are kept too: a wrong security.protocol shows only there, not in error_cb."""

    def __init__(self, errors: _Errors) -> None:
        super().__init__(log, {})
        self._errors = errors

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        text = scrub(str(msg) % args if args else str(msg), self._errors.secrets)
        if "FAIL" in text[:8] and len(self._errors.failures) < 50:
            self._errors.failures.append(text)
        log.debug("%s", text)


def make_consumer(settings: Settings, **overrides: Any) -> tuple[Any, _Errors]:
    from confluent_kafka import Consumer

    errors = _Errors(settings.secrets())
    # Tuned defaults first; the user's own librdkafka settings (extra_kafka) win over them.
    conf: dict[str, Any] = {
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
        # A partition whose local queue holds this many messages (100k by default) is not
        # fetched again for fetch.queue.backoff.ms (1 s): a window read sat idle about half
        # of the time. The queue stays bounded by queued.max.messages.kbytes.
        "queued.min.messages": 10_000_000,
    }
    conf.update(settings.kafka_config())
    if settings.ssl_ca_location:
        conf["ssl.ca.location"] = settings.ssl_ca_location
    conf.update({
        # Transaction markers and aborted records are skipped; the position moves past them.
        "isolation.level": "read_committed",
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "error_cb": errors,
        "logger": _Logger(errors),
    })
    conf.update(overrides)
    # librdkafka refuses a fetch.max.bytes below message.max.bytes (1 MB unless set); a
    # consumer sends only small requests, so a smaller fetch limit lowers that bound too.
    fetch_max = int(conf["fetch.max.bytes"])
    if "message.max.bytes" not in conf and fetch_max < 1_000_000:
        conf["message.max.bytes"] = max(1000, fetch_max)
    return Consumer(conf), errors


class KafkaConsumer:
    """A confluent-kafka consumer of ``settings.topic``, as a ``RecordConsumer``."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        self.topic = settings.topic
        self.raw, self.errors = make_consumer(settings, **overrides)

    def partitions(self, timeout: float) -> list[int]:
        return describe_topic(self.raw, self.errors, self.settings, timeout)

    def watermarks(self, partition: int, timeout: float) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        with self._wrapped("the watermarks", partition):
            low, high = self.raw.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                       timeout=timeout, cached=False)
        return int(low), int(high)

    def offsets_for_times(self, stamps: Mapping[int, int], timeout: float) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        with self._wrapped("the offsets for times", None):
            found = self.raw.offsets_for_times(
                [TopicPartition(self.topic, p, ts) for p, ts in stamps.items()], timeout=timeout)
        return {tp.partition: int(tp.offset) for tp in found}

    @contextlib.contextmanager
    def _wrapped(self, what: str, partition: int | None) -> Iterator[None]:
        """A driver exception as the project's ConnectionError, with topic and partition."""
        from confluent_kafka import KafkaException

        try:
            yield
        except KafkaException as exc:
            s = self.settings
            raise ConnectionError(
                f"asking {s.bootstrap_servers} for {what} of topic {self.topic!r} failed: "
                f"{scrub(str(exc), s.secrets())}", topic=self.topic, partition=partition,
                url=s.bootstrap_servers, user=s.sasl_username) from None

    def assign(self, starts: Mapping[int, int]) -> None:
        from confluent_kafka import TopicPartition

        self.raw.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])

    def unassign(self, partitions: Iterable[int]) -> None:
        from confluent_kafka import TopicPartition

        self.raw.incremental_unassign([TopicPartition(self.topic, p) for p in partitions])

    def consume(self, max_records: int, timeout: float) -> Batch:
        return to_batch(self.raw.consume(num_messages=max_records, timeout=timeout),
                        self.settings)

    def position(self, partition: int) -> int:
        from confluent_kafka import TopicPartition

        return int(self.raw.position([TopicPartition(self.topic, partition)])[0].offset)

    def auth_failure(self) -> str | None:
        return self.errors.auth_failure()

    def last_error(self) -> str:
        return self.errors.last()

    def close(self) -> None:
        self.raw.close()


_second = operator.itemgetter(1)


def to_batch(msgs: list[Any], settings: Settings) -> Batch:
    """A ``consume()`` result as columns; error messages apart, scrubbed."""
    from confluent_kafka import Message

    if not msgs:
        return Batch()
    errs = list(map(Message.error, msgs))
    errors: list[ConsumeError] = []
    if errs.count(None) != len(errs):
        errors = [ConsumeError(e.name(), scrub(e.str(), settings.secrets()), e.fatal(),
                               m.partition(), m.offset())
                  for m, e in zip(msgs, errs, strict=True) if e is not None]
        msgs = [m for m, e in zip(msgs, errs, strict=True) if e is None]
    # Records (not errors) always carry a partition and an offset.
    return Batch(
        cast("list[int]", list(map(Message.partition, msgs))),
        cast("list[int]", list(map(Message.offset, msgs))),
        list(map(_second, map(Message.timestamp, msgs))),
        list(map(Message.key, msgs)),
        list(map(Message.value, msgs)),
        errors,
    )


def describe_topic(consumer: Any, errors: _Errors, settings: Settings, timeout: float) -> list[int]:
    """Partitions of the topic; a clear error for wrong credentials, ACLs, unknown topics or
    a security_protocol that does not match the listener."""
    from confluent_kafka import KafkaException

    topic = settings.topic
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        _raise_client_errors(errors, settings)
        # error_cb (where SASL failures arrive) is served only by poll/consume.
        consumer.poll(0)
        try:
            wait = min(1.0, max(0.1, deadline - time.monotonic()))
            md = consumer.list_topics(topic, timeout=wait)
        except KafkaException as exc:
            last = scrub(str(exc), settings.secrets())
            continue
        t = md.topics.get(topic)
        if t is None:
            continue
        if t.error is not None:
            _raise_topic_error(t.error.name(), settings)
            last = t.error.name()
            continue
        if t.partitions:
            return sorted(t.partitions)
    _raise_client_errors(errors, settings)
    raise ConnectionError(
        f"no answer about topic {topic!r} from {settings.bootstrap_servers} within "
        f"{timeout:.0f} s ({last or errors.last()})",
        topic=topic, url=settings.bootstrap_servers, user=settings.sasl_username,
    )


def _raise_client_errors(errors: _Errors, settings: Settings) -> None:
    auth = errors.auth_failure()
    if auth:
        raise authentication_error("broker", settings.bootstrap_servers, settings.sasl_username,
                                   auth, topic=settings.topic)
    hint = errors.protocol_mixup(settings.security_protocol)
    if hint:
        raise ConfigurationError(
            f"cannot talk to the broker at {settings.bootstrap_servers}: {hint}",
            topic=settings.topic, url=settings.bootstrap_servers, user=settings.sasl_username)


def _raise_topic_error(name: str, settings: Settings) -> None:
    topic = settings.topic
    if name == "TOPIC_AUTHORIZATION_FAILED":
        # Brokers answer this for unknown topics too, so as not to reveal names.
        raise AuthorizationError(
            f"topic {topic!r} does not exist or {settings.sasl_username!r} may not read "
            "it (TOPIC_AUTHORIZATION_FAILED): check the topic name and its ACLs",
            topic=topic, url=settings.bootstrap_servers, user=settings.sasl_username)
    if name in ("UNKNOWN_TOPIC_OR_PART", "UNKNOWN_TOPIC_ID"):
        raise TopicNotFoundError(
            f"topic {topic!r} does not exist on {settings.bootstrap_servers}",
            topic=topic, url=settings.bootstrap_servers, user=settings.sasl_username)
