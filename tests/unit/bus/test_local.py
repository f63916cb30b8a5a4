"""The JSONL source and sink."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamproc.bus.base import Partition
from streamproc.bus.local import JsonlSink, JsonlSource
from streamproc.errors import ConfigError
from tests.helpers import read_jsonl, sample_dead_letter, sample_result, write_jsonl


async def collect(source: JsonlSource) -> list:  # type: ignore[type-arg]
    return [r async for r in source.records()]


async def test_source_yields_lines_with_line_number_offsets(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", ['{"a": 1}', "", "  ", "not json", '{"b": 2}'])
    async with JsonlSource(str(path)) as source:
        assert source.input_size == 3
        records = await collect(source)
    assert [(r.offset, r.value) for r in records] == [
        (0, b'{"a": 1}'),
        (3, b"not json"),
        (4, b'{"b": 2}'),
    ]
    assert records[0].partition == Partition("in.jsonl", 0)


async def test_over_long_line_is_cut_and_flagged_not_buffered(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", ["x" * 5000, '{"ok": true}'])
    async with JsonlSource(str(path), max_record_bytes=1024) as source:
        records = await collect(source)
    assert len(records[0].value) == 1024
    assert records[0].cut_at == 1024
    assert records[1].cut_at is None
    assert records[1].value == b'{"ok": true}' and records[1].offset == 1


async def test_paused_source_yields_nothing_until_resumed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [f'{{"n": {i}}}' for i in range(3)])
    async with JsonlSource(str(path)) as source:
        iterator = source.records()
        first = await anext(iterator)
        source.pause()
        pending = asyncio.ensure_future(anext(iterator))
        await asyncio.sleep(0.1)
        assert not pending.done()
        source.resume()
        second = await asyncio.wait_for(pending, 5)
    assert (first.offset, second.offset) == (0, 1)


async def test_close_input_ends_the_stream(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [f'{{"n": {i}}}' for i in range(100)])
    async with JsonlSource(str(path)) as source:
        seen = 0
        async for _ in source.records():
            seen += 1
            if seen == 5:
                source.close_input()
    assert seen == 5


async def test_missing_input_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open input"):
        await JsonlSource(str(tmp_path / "nope.jsonl")).start()


async def test_sink_appends_results_and_dead_letters_to_separate_files(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "out" / "r.jsonl"), str(tmp_path / "out" / "d.jsonl"))
    async with sink:
        await sink.publish(sample_result("e1"), None)
        await sink.dead_letter(sample_dead_letter(), None)
    assert [r["event_id"] for r in read_jsonl(tmp_path / "out" / "r.jsonl")] == ["e1"]
    assert read_jsonl(tmp_path / "out" / "d.jsonl")[0]["reason"] == "malformed"


async def test_a_second_run_on_the_same_outputs_is_refused_until_the_first_stops(
    tmp_path: Path,
) -> None:
    results, dead = str(tmp_path / "out" / "results.jsonl"), str(tmp_path / "out" / "dead.jsonl")
    first = JsonlSink(results, dead)
    await first.start()
    for other in (
        JsonlSink(results, str(tmp_path / "elsewhere.jsonl")),
        JsonlSink(str(tmp_path / "other.jsonl"), dead),
    ):
        with pytest.raises(ConfigError, match="being written by another streamproc run"):
            await other.start()
    await first.publish(sample_result("e1"), None)
    await first.stop()
    second = JsonlSink(results, dead)
    await second.start()  # the first has stopped: its locks are gone
    await second.publish(sample_result("e2"), None)
    await second.stop()
    assert [r["event_id"] for r in read_jsonl(Path(results))] == ["e1", "e2"]
    # a refused start leaves nothing open: the first file it had locked is free again
    again = JsonlSink(str(tmp_path / "third.jsonl"), dead)
    await first.start()
    with pytest.raises(ConfigError):
        await again.start()
    await first.stop()
    await again.start()
    await again.stop()
