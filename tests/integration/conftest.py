"""Integration fixtures: one real Tansu Kafka broker per session, fresh topics per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka_broker import TansuBroker, Topics, create_topics

PROMPT_PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Tansu broker started for this session (stopped at its end)."""
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "broker.log")
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture
async def topics(kafka_bootstrap: str) -> Topics:
    """Random topic and group names, the topics created (prompts with three partitions)."""
    names = Topics.random()
    await create_topics(
        kafka_bootstrap,
        {names.prompts: PROMPT_PARTITIONS, names.results: 3, names.dead_letters: 1},
    )
    return names
