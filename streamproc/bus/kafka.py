"""What the Kafka source, sink and admin helpers share: client options, headers, errors.

The transport itself lives in :mod:`streamproc.bus.kafka_source` (consumer group, commits,
rebalances, back-pressure) and :mod:`streamproc.bus.kafka_sink` (results and dead letters);
:mod:`streamproc.bus.kafka_admin` creates topics and sends prompt events. ``docs/kafka.md``
describes the settings, topics, keys and headers.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from streamproc.bus.base import Partition
from streamproc.errors import ConfigError, TransportError
from streamproc.settings import KafkaSettings

#: Header names on records streamproc produces (values are UTF-8 text).
EVENT_ID_HEADER = "event_id"
TRACE_ID_HEADER = "trace_id"
TRACEPARENT_HEADER = "traceparent"
CONTENT_TYPE_HEADER = "content-type"
SCHEMA_HEADER = "schema"
#: On results made by ``streamproc replay``: the replay's id.
REPLAY_HEADER = "streamproc-replay"

Headers = list[tuple[str, bytes]]


def client_options(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """Keyword arguments every aiokafka client gets: brokers, identity, security."""
    options: dict[str, Any] = {
        "bootstrap_servers": [
            s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()
        ],
        "client_id": settings.client_id or client_id,
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        password = settings.sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def fetch_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments of every prompts consumer (live or replay): how much one fetch
    brings back, and only committed transactional records."""
    return {
        "max_poll_records": settings.max_poll_records,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "fetch_max_bytes": settings.fetch_max_bytes,
        "max_partition_fetch_bytes": settings.max_partition_fetch_bytes,
        "isolation_level": "read_committed",
    }


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A TLS context from the ``ssl_*`` settings (system CAs unless ``ssl_cafile`` is set)."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        context.check_hostname = settings.ssl_check_hostname
        if settings.ssl_certfile is not None:
            password = settings.ssl_key_password
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
                password.get_secret_value() if password else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"kafka TLS files cannot be used: {exc}") from None
    return context


def to_partition(tp: TopicPartition) -> Partition:
    """aiokafka's partition type to ours."""
    return Partition(tp.topic, tp.partition)


def to_topic_partition(partition: Partition) -> TopicPartition:
    """Our partition type to aiokafka's."""
    return TopicPartition(partition.topic, partition.partition)


def partitions(tps: Iterable[TopicPartition]) -> list[Partition]:
    """Sorted :class:`Partition` s of aiokafka partitions."""
    return sorted(to_partition(tp) for tp in tps)


def trace_headers(input_headers: Sequence[tuple[str, bytes]]) -> Headers:
    """The trace headers of an answer: the input's ``trace_id`` (or the trace id inside its
    W3C ``traceparent``, which is passed on too), else a new random trace id."""
    found = dict(input_headers)
    out: Headers = []
    trace_id = found.get(TRACE_ID_HEADER)
    parent = found.get(TRACEPARENT_HEADER)
    if parent is not None:
        out.append((TRACEPARENT_HEADER, parent))
        fields = parent.split(b"-")
        if trace_id is None and len(fields) == 4 and len(fields[1]) == 32:
            trace_id = fields[1]
    out.insert(0, (TRACE_ID_HEADER, trace_id if trace_id else os.urandom(16).hex().encode()))
    return out


def transport_error(what: str, exc: BaseException) -> TransportError:
    """A one-line :class:`TransportError` for a failed Kafka operation."""
    if isinstance(exc, KafkaConnectionError):
        return TransportError(f"kafka {what} failed: cannot reach the brokers ({exc})")
    if isinstance(exc, TimeoutError):
        return TransportError(f"kafka {what} timed out")
    name = type(exc).__name__
    text = str(exc)
    detail = text if text.startswith(name) else f"{name}: {text}" if text else name
    return TransportError(f"kafka {what} failed: {detail}")


async def start_client(client: Any, what: str, servers: str, *, idempotent: bool = False) -> None:
    """Start an aiokafka client, turning a failure into a one-line error (with a hint when an
    idempotent producer is refused by a broker that lacks the feature)."""
    try:
        await client.start()
    except KafkaError as exc:
        await _close_quietly(client)
        hint = ""
        if idempotent and not isinstance(exc, KafkaConnectionError):
            hint = (
                "; if these brokers lack the idempotent producer, set "
                "kafka.enable_idempotence=false (--no-idempotence)"
            )
        raise TransportError(
            f"cannot start kafka {what} (brokers {servers}): {exc}{hint}"
        ) from None


async def _close_quietly(client: Any) -> None:
    close = getattr(client, "stop", None) or client.close
    with contextlib.suppress(Exception):  # already half-closed; the start error matters
        await close()


def require_topics(existing: Iterable[str], wanted: Iterable[str]) -> None:
    """Raise a one-line :class:`ConfigError` naming the ``wanted`` topics the cluster lacks."""
    have = set(existing)
    missing = [t for t in wanted if t not in have]
    if missing:
        raise ConfigError(
            f"kafka topic(s) {', '.join(missing)} do not exist "
            "(create them with: streamproc topics create)"
        )
