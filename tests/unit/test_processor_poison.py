"""The processor's choke point against records that break the JSON decoder itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamproc.app import run_worker
from streamproc.bus.local import JsonlSource
from streamproc.cache.null import NullCache
from streamproc.generation.wan import WanGenerator
from tests.conftest import MakeSettings
from tests.helpers import event, read_jsonl, write_jsonl


async def test_records_that_break_the_event_id_lookup_still_end_as_dead_letters(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    """An integer of thousands of digits and nesting beyond the recursion limit (which once
    broke the JSON decoder and the dead letter's event-id look-up alike) each end as their
    dead letter, and the run neither crashes nor abandons anything."""
    settings = make_settings()
    lines: list[Any] = [
        b'{"event_id": "huge", "prompt": "p", "seed": ' + b"7" * 5000 + b"}",
        b'{"event_id": "deep", "attributes": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        event("fine", "a quiet harbour"),
    ]
    source = JsonlSource(str(write_jsonl(tmp_path / "in.jsonl", lines)))
    summary = await run_worker(
        settings,
        source=source,
        generator=WanGenerator(settings.generation, loaded=tiny_pipeline),
        cache=NullCache(),
        handle_signals=False,
    )
    assert summary.crashed is None and summary.abandoned == 0 and summary.exit_status == 0
    dead = read_jsonl(Path(settings.local.dead_letters))
    assert sorted(d["origin"]["offset"] for d in dead) == [0, 1]
    # The id is found by a cheap scan of the record's head, not by parsing it again.
    assert sorted(d["event_id"] for d in dead) == ["deep", "huge"]
    assert [r["event_id"] for r in read_jsonl(Path(settings.local.results))] == ["fine"]
