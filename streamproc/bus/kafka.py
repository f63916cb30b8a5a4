"""What the Kafka source, sink and admin helpers share: client options, headers, errors.

The transport itself lives in :mod:`streamproc.bus.kafka_source` (consumer group, commits,
rebalances, back-pressure) and :mod:`streamproc.bus.kafka_sink` (results and dead letters);
:mod:`streamproc.bus.kafka_admin` creates topics and sends prompt events. ``docs/kafka.md``
describes the settings, topics, keys and headers.

Every aiokafka error is classified here, once, by :func:`kafka_error` (the table is in its
docstring and in ``docs/kafka.md``): the rest of streamproc sees :class:`TransportError`,
:class:`RecordRejected` or :class:`ServiceRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    BrokerNotAvailableError,
    ClusterAuthorizationFailedError,
    CommitFailedError,
    CorruptRecordException,
    DelegationTokenAuthorizationFailed,
    GroupAuthorizationFailedError,
    IllegalGenerationError,
    IllegalSaslStateError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    MessageSizeTooLargeError,
    RebalanceInProgressError,
    RecordListTooLargeError,
    ReplicaNotAvailableError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownError,
    UnknownMemberIdError,
    UnsupportedSaslMechanismError,
)

from streamproc.bus.base import Partition
from streamproc.bus.kafka_clients import Startable
from streamproc.errors import ConfigError, RecordRejected, ServiceRefused, TransportError
from streamproc.settings import KafkaSettings

#: Header names on records streamproc produces (values are UTF-8 text).
EVENT_ID_HEADER = "event_id"
TRACE_ID_HEADER = "trace_id"
TRACEPARENT_HEADER = "traceparent"
CONTENT_TYPE_HEADER = "content-type"
SCHEMA_HEADER = "schema"
#: On results made by ``streamproc replay``: the replay's id.
REPLAY_HEADER = "streamproc-replay"
#: On results re-published from the result ledger (the event was delivered again): ``1``.
REDELIVERY_HEADER = "streamproc-redelivery"
#: On prompt records a one-GPU worker forwarded to the large-clip lane: ``topic/partition/offset``
#: of the record it forwarded.
FORWARDED_HEADER = "streamproc-forwarded-from"

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


#: The record is larger than the producer (``kafka.max_request_size``) or the broker or topic
#: (``message.max.bytes``, ``max.message.bytes``) accepts. (aiokafka's ``RecordTooLargeError``
#: is the consumer's: a record larger than the fetch size blocks its partition for good.)
TOO_LARGE: tuple[type[KafkaError], ...] = (MessageSizeTooLargeError, RecordListTooLargeError)
#: The credentials or the ACLs refuse this client.
ACCESS_REFUSED: tuple[type[KafkaError], ...] = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    DelegationTokenAuthorizationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)
#: Not ``retriable`` in aiokafka, yet an outage or the group moving on: worth another try.
TRANSIENT_ANYWAY: tuple[type[KafkaError], ...] = (
    CommitFailedError,
    IllegalGenerationError,
    UnknownMemberIdError,
    RebalanceInProgressError,
    IllegalStateError,
    KafkaTimeoutError,
    BrokerNotAvailableError,
    ReplicaNotAvailableError,
    KafkaUnavailableError,
    CorruptRecordException,
    UnknownError,
)


def kafka_error(
    what: str,
    exc: BaseException,
    *,
    component: str,
    brokers: str,
    topic: str | None = None,
) -> TransportError | RecordRejected | ServiceRefused:
    """The one error a failed Kafka operation ``what`` becomes (``component`` names the part
    that met it; ``brokers`` and ``topic`` go into the line of a permanent one).

    =========================================================  ===================  ==========
    aiokafka raised                                            becomes              then
    =========================================================  ===================  ==========
    ``MessageSizeTooLargeError`` (also raised by ``send``      ``RecordRejected``   the record
    before any request, for a record over                                           dead-letters
    ``max_request_size``), ``RecordListTooLargeError``
    ``TopicAuthorizationFailedError``,                         ``ServiceRefused``   the worker
    ``GroupAuthorizationFailedError``,                                              faults
    ``ClusterAuthorizationFailedError``, SASL and
    authentication failures (``SaslAuthenticationFailed``…)
    ``CommitFailedError``, ``IllegalGenerationError``,         ``TransportError``   retried
    ``UnknownMemberIdError``, ``RebalanceInProgressError``,
    ``IllegalStateError`` (the group moved on: the next
    owner reads the records again)
    ``KafkaTimeoutError``, ``BrokerNotAvailableError``,        ``TransportError``   retried
    ``ReplicaNotAvailableError``, ``KafkaUnavailableError``,
    ``CorruptRecordException``, ``UnknownError`` (a
    broker's internal error), a bare ``KafkaError`` (what
    aiokafka wraps when it did not expect it),
    ``TimeoutError``, ``OSError``
    any other error with ``retriable = True``                  ``TransportError``   retried
    (``KafkaConnectionError``, ``NotLeaderForPartitionError``,
    ``UnknownTopicOrPartitionError``…)
    any other error with ``retriable = False``                 ``ServiceRefused``   the worker
    (``InvalidTopicError``, ``UnsupportedVersionError``,                            faults
    ``ProducerFenced``, ``PolicyViolationError``,
    ``RecordTooLargeError``: a record over the fetch size…)
    =========================================================  ===================  ==========

    ``UnknownTopicOrPartitionError`` is retriable: a topic is briefly unknown while it is
    created or its leader moves. The sink and the source ask the cluster whether the topic
    is really gone (:func:`absent_topic`) before they call it permanent.
    """
    if isinstance(exc, TOO_LARGE):
        return RecordRejected(
            f"kafka {what} refused the record as too large: {_detail(exc)} (limits: "
            "kafka.max_request_size here, message.max.bytes / max.message.bytes on the brokers)",
            component=component,
        )
    if isinstance(exc, ACCESS_REFUSED):
        return ServiceRefused(
            f"kafka {what} refused by brokers {brokers}{_on(topic)}: {_detail(exc)}: check the "
            "kafka credentials (sasl_*, ssl_*) and the ACLs",
            component=component,
        )
    if isinstance(exc, CommitFailedError):
        return TransportError(
            f"kafka {what} failed: CommitFailedError: the group rebalanced before the commit; "
            "the partitions' next owner reads the records again"
        )
    if isinstance(exc, KafkaConnectionError):
        return TransportError(f"kafka {what} failed: cannot reach the brokers ({_detail(exc)})")
    if isinstance(exc, TimeoutError | KafkaTimeoutError):
        return TransportError(f"kafka {what} timed out")
    if not isinstance(exc, KafkaError) or type(exc) is KafkaError:
        return TransportError(f"kafka {what} failed: {_detail(exc)}")
    if exc.retriable or isinstance(exc, TRANSIENT_ANYWAY):
        return TransportError(f"kafka {what} failed: {_detail(exc)}")
    return ServiceRefused(
        f"kafka {what} refused by brokers {brokers}{_on(topic)}: {_detail(exc)}",
        component=component,
    )


def topic_missing_error(topic: str, *, component: str, brokers: str) -> ServiceRefused:
    """The :class:`ServiceRefused` of a topic the cluster no longer has (while running; at
    start :func:`require_topics` says the same as a :class:`ConfigError`)."""
    return ServiceRefused(
        f"kafka topic {topic} does not exist on brokers {brokers} (create it with: "
        "streamproc topics create)",
        component=component,
    )


async def absent_topic(
    topics_now: Callable[[], Awaitable[Collection[str]]],
    wanted: Iterable[str],
    timeout_s: float,
) -> str | None:
    """The first of ``wanted`` missing from the cluster's topics as ``topics_now`` lists them
    (a fresh metadata request); None when all exist or there is no answer in ``timeout_s``.

    Pass a call whose request names no topic (``consumer.topics``, the client's
    ``fetch_all_metadata``): a request naming one creates it on brokers with
    ``auto.create.topics.enable``, as aiokafka always allows that.
    """
    try:
        have = await asyncio.wait_for(topics_now(), timeout_s)
    except (KafkaError, OSError, TimeoutError):
        return None
    return next((t for t in wanted if t not in have), None)


def _on(topic: str | None) -> str:
    return f" for topic {topic}" if topic else ""


def _detail(exc: BaseException) -> str:
    """``ClassName: text`` of an aiokafka error on one line (aiokafka's own text already
    starts ``[Error 29] ClassName`` for broker answers)."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    return text if name in text else f"{name}: {text}" if text else name


async def start_client(
    client: Startable,
    what: str,
    settings: KafkaSettings,
    *,
    component: str,
    idempotent: bool = False,
) -> None:
    """Start an aiokafka client, turning a failure into one line naming the brokers:
    :class:`ServiceRefused` when the credentials or ACLs refuse it, else
    :class:`TransportError` (with a hint when an idempotent producer is refused by a broker
    that lacks the feature, or when SASL credentials may be what failed)."""
    servers = settings.bootstrap_servers
    try:
        await client.start()
    except KafkaError as exc:
        await _close_quietly(client)
        if isinstance(exc, ACCESS_REFUSED):
            raise ServiceRefused(
                f"cannot start kafka {what}: brokers {servers} refused the credentials "
                f"({_detail(exc)}): check kafka.sasl_* and kafka.ssl_*",
                component=component,
            ) from None
        hint = ""
        if isinstance(exc, KafkaConnectionError):
            if settings.sasl_mechanism is not None:
                # aiokafka reports a refused SASL handshake as a failed bootstrap (the cause
                # only in its log): say so rather than blame the network alone.
                hint = "; unreachable, or the brokers refused the kafka.sasl_* credentials"
        elif idempotent:
            hint = (
                "; if these brokers lack the idempotent producer, set "
                "kafka.enable_idempotence=false (--no-idempotence)"
            )
        raise TransportError(
            f"cannot start kafka {what} (brokers {servers}): {exc}{hint}"
        ) from None


async def _close_quietly(client: object) -> None:
    close = getattr(client, "stop", None) or getattr(client, "close", None)
    if close is None:
        return
    with contextlib.suppress(Exception):  # already half-closed; the start error matters
        await close()


def require_topics(existing: Iterable[str], wanted: Iterable[str], brokers: str) -> None:
    """Raise a one-line :class:`ConfigError` naming the ``wanted`` topics the cluster at
    ``brokers`` lacks."""
    have = set(existing)
    missing = [t for t in wanted if t not in have]
    if missing:
        raise ConfigError(
            f"kafka topic(s) {', '.join(missing)} do not exist on brokers {brokers} "
            "(create them with: streamproc topics create)"
        )
