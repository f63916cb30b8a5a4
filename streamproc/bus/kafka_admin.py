"""Operator helpers: create the topics, send prompt events (``streamproc topics create``,
``streamproc produce --kafka``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from streamproc.bus.kafka import (
    EVENT_ID_HEADER,
    client_options,
    kafka_error,
    require_topics,
    start_client,
)
from streamproc.events import event_id_of
from streamproc.settings import KafkaSettings


@dataclass(frozen=True)
class TopicStatus:
    """What :func:`create_topics` did for one topic."""

    name: str
    created: bool
    partitions: int | None  # as found, for topics that existed


async def create_topics(
    settings: KafkaSettings,
    *,
    partitions: int,
    replication_factor: int,
    client_id: str = "streamproc-admin",
) -> list[TopicStatus]:
    """Create the prompts, results, dead-letter, status and control topics; existing ones are
    left alone."""
    names = [
        *settings.prompts_topics,
        settings.results_topic,
        settings.dead_letter_topic,
        settings.status_topic,
        settings.control_topic,
    ]
    names = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(**client_options(settings, client_id))
    await start_client(admin, "admin client", settings, component="admin")
    brokers = settings.bootstrap_servers
    try:
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor) for name in names]
        )
        statuses: list[TopicStatus] = []
        existing: list[str] = []
        for name, code, message in _topic_errors(response):
            error = for_code(code)
            if code == 0:
                statuses.append(TopicStatus(name, True, partitions))
            elif error is TopicAlreadyExistsError:
                existing.append(name)
            else:
                raise kafka_error(
                    f"create topic {name}",
                    error(message or ""),
                    component="admin",
                    brokers=brokers,
                    topic=name,
                )
        if existing:
            described = await admin.describe_topics(existing)
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            statuses += [TopicStatus(name, False, counts.get(name)) for name in existing]
    except KafkaError as exc:
        raise kafka_error("create topics", exc, component="admin", brokers=brokers) from None
    finally:
        await admin.close()
    order = {name: i for i, name in enumerate(names)}
    return sorted(statuses, key=lambda s: order[s.name])


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((name, code, message))
    return out


async def send_prompts(
    settings: KafkaSettings,
    lines: Iterable[bytes],
    *,
    client_id: str = "streamproc-producer",
) -> int:
    """Send each line (a prompt event as JSON) to the first prompts topic, keyed by its
    ``event_id``; lines without a readable id go unkeyed (the worker dead-letters bad ones).
    Returns how many were acknowledged."""
    topic = settings.prompts_topics[0]
    producer = AIOKafkaProducer(
        **client_options(settings, client_id),
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=settings.linger_ms,
    )
    await start_client(
        producer, "producer", settings, component="producer", idempotent=settings.enable_idempotence
    )
    try:
        cluster = await producer.client.fetch_all_metadata()
        require_topics(cluster.topics(), [topic], settings.bootstrap_servers)
        pending = []
        for line in lines:
            found = event_id_of(line)
            event_id = found.encode() if found is not None else None
            headers = [(EVENT_ID_HEADER, event_id)] if event_id is not None else []
            pending.append(await producer.send(topic, line, key=event_id, headers=headers))
        await asyncio.gather(*pending)
    except KafkaError as exc:
        raise kafka_error(
            f"send to {topic}",
            exc,
            component="producer",
            brokers=settings.bootstrap_servers,
            topic=topic,
        ) from None
    finally:
        await producer.stop()
    return len(pending)
