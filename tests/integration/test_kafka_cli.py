"""`streamproc topics create`, `produce --kafka` and `run --transport kafka` failures, against
the real Tansu broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamproc.cli import main
from tests.helpers import event, write_jsonl
from tests.integration.test_cli import streamproc
from tests.kafka_broker import Topics, headers_of, read_all

pytestmark = pytest.mark.kafka


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_topics_create_makes_the_five_topics_and_leaves_existing_ones(
    kafka_bootstrap: str,
) -> None:
    fresh = Topics.random()
    code, out = invoke("topics", "create", *fresh.cli_args(kafka_bootstrap), "--partitions", "4")
    assert code == 0, out
    assert out.splitlines() == [
        f"created {fresh.prompts} (4 partitions)",
        f"created {fresh.results} (4 partitions)",
        f"created {fresh.dead_letters} (4 partitions)",
        f"created {fresh.status} (4 partitions)",
        f"created {fresh.control} (4 partitions)",
    ]
    code, out = invoke("topics", "create", *fresh.cli_args(kafka_bootstrap), "--partitions", "2")
    assert code == 0, out
    assert out.splitlines()[0] == f"exists  {fresh.prompts} (4 partitions)"


def test_produce_sends_a_files_lines_keyed_by_event_id(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [event("f1"), "not json", event("f2")])
    code, out = invoke(
        "produce", "--kafka", "-i", str(path), "--no-idempotence", *topics.cli_args(kafka_bootstrap)
    )
    assert code == 0, out
    records = sorted(
        asyncio.run(read_all(kafka_bootstrap, topics.prompts)), key=lambda r: r.key or b""
    )
    assert [r.key for r in records] == [None, b"f1", b"f2"]
    assert records[0].value == b"not json"
    assert json.loads(records[1].value) == event("f1")
    assert headers_of(records[2]) == {"event_id": b"f2"}


def test_produce_sends_generated_examples(kafka_bootstrap: str, topics: Topics) -> None:
    code, out = invoke(
        "produce", "--kafka", "--count", "7", "--no-idempotence", *topics.cli_args(kafka_bootstrap)
    )
    assert code == 0, out
    records = asyncio.run(read_all(kafka_bootstrap, topics.prompts))
    assert len(records) == 7
    assert all(json.loads(r.value)["event_id"].encode() == r.key for r in records)


def test_run_against_missing_topics_fails_with_one_line(kafka_bootstrap: str) -> None:
    missing = Topics.random()
    code, out = invoke(
        "run", "--transport", "kafka", "--device", "cpu", "--no-progress", "--no-idempotence",
        *missing.cli_args(kafka_bootstrap),
    )  # fmt: skip
    assert code == 1
    assert f"kafka topic(s) {missing.results}, {missing.dead_letters} do not exist" in out
    assert "Traceback" not in out


def test_run_on_a_prompts_topic_that_does_not_exist_exits_with_one_error_line(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    missing = f"does-not-exist-{topics.prompts}"
    args = topics.cli_args(kafka_bootstrap)
    args[args.index(topics.prompts)] = missing
    proc = streamproc(
        "run", "--transport", "kafka", *args, "--no-idempotence", "--cache-backend", "none",
        "--device", "cpu", "--no-progress", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr
    errors = [x for x in proc.stderr.decode().splitlines() if "error" in x.lower()]
    assert errors == [
        f"streamproc: error: kafka topic(s) {missing} do not exist on brokers "
        f"{kafka_bootstrap} (create them with: streamproc topics create)"
    ]


def test_unreachable_brokers_fail_with_one_line() -> None:
    code, out = invoke("produce", "--kafka", "--bootstrap-servers", "127.0.0.1:9", "--count", "1")
    assert code == 1
    assert "cannot start kafka producer (brokers 127.0.0.1:9)" in out
    assert "Traceback" not in out


def test_an_idempotent_producer_refused_by_the_broker_says_how_to_turn_it_off(
    kafka_bootstrap: str, topics: Topics
) -> None:
    # Tansu's memory engine refuses InitProducerId; a real Kafka cluster accepts it.
    code, out = invoke("produce", "--kafka", "--count", "1", *topics.cli_args(kafka_bootstrap))
    assert code == 1
    assert "cannot start kafka producer" in out and "--no-idempotence" in out
    assert "Traceback" not in out


def test_run_refuses_an_input_file_with_the_kafka_transport(tmp_path: Path) -> None:
    code, out = invoke("run", "--transport", "kafka", "-i", str(tmp_path / "in.jsonl"))
    assert code == 1
    assert "with --transport kafka prompts come from --topic" in out
