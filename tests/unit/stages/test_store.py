"""The store stage alone, over the real encoder and local store: encode, keep, retry an
outage, and give up on an original the store refuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamproc.errors import ServiceRefused, StorageError
from streamproc.events import utcnow
from streamproc.generation.encode import EncoderPool
from streamproc.metrics import Metrics
from streamproc.retry import RetryPolicy
from streamproc.settings import Settings
from streamproc.stages.base import Generated
from streamproc.stages.store import Keep
from streamproc.storage.local import LocalObjectStore
from tests.unit.stages.conftest import Request


class OutageStore(LocalObjectStore):
    """The real local store, failing the first ``failures`` puts, or refusing every put."""

    def __init__(self, root: Path, failures: int = 0, *, refuse: bool = False) -> None:
        super().__init__(root)
        self.failures = failures
        self.refuse = refuse
        self.puts = 0

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        self.puts += 1
        if self.refuse:
            raise ServiceRefused("bucket gone", component="store")
        if self.puts <= self.failures:
            raise StorageError("store down")
        return await super().put(key, data, metadata)


class Rig:
    def __init__(self, settings: Settings, store: OutageStore) -> None:
        self.store = store
        self.metrics = Metrics()
        self.clocked: dict[str, float] = {}
        self.keep = Keep(
            store,
            EncoderPool(settings.encoding),
            model_id="tiny-wan",
            retries=RetryPolicy(0.001, 0.01, metrics=self.metrics),
            clock=lambda name, s: self.clocked.__setitem__(name, s),
        )


def generated() -> Generated:
    frames = np.full((5, 32, 64, 3), 128, dtype=np.uint8)
    return Generated(frames, 1, utcnow(), utcnow(), "b1")


@pytest.fixture
async def rig_of(settings: Settings, tmp_path: Path) -> AsyncIterator[Any]:
    rigs: list[Rig] = []

    def make(**store: Any) -> Rig:
        rig = Rig(settings, OutageStore(tmp_path / "store", **store))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.keep.encoder.stop()


async def test_a_video_is_encoded_and_kept_under_its_content_address(
    rig_of: Any, admitted: Request
) -> None:
    rig = rig_of()
    await rig.keep.encoder.start()
    stored = await rig.keep.keep(admitted("e1", seed=3), generated())
    # The same request (another event id, the same seed) has the same address.
    again = await rig.keep.keep(admitted("e2", seed=3), generated())
    assert stored.key == again.key and stored.url.startswith("file://")
    mp4 = await asyncio.to_thread(Path(stored.url.removeprefix("file://")).read_bytes)
    assert mp4[4:8] == b"ftyp"  # an MP4
    assert {"mp4_encode", "store"} <= set(rig.clocked)


async def test_a_store_outage_is_retried_until_the_video_is_kept(
    rig_of: Any, admitted: Request
) -> None:
    rig = rig_of(failures=3)
    await rig.keep.encoder.start()
    stored = await rig.keep.keep(admitted("e1"), generated())
    assert rig.store.puts == 4 and stored.key
    assert rig.metrics.retries.labels("store_put")._value.get() == 3


async def test_a_store_that_refuses_the_worker_is_not_retried(
    rig_of: Any, admitted: Request
) -> None:
    rig = rig_of(refuse=True)
    await rig.keep.encoder.start()
    with pytest.raises(ServiceRefused):
        await rig.keep.keep(admitted("e1"), generated())
    assert rig.store.puts == 1


async def test_an_original_the_store_refuses_is_left_out_not_fatal(rig_of: Any) -> None:
    assert await rig_of(refuse=True).keep.keep_original(b"x" * 10) is None
    url = await rig_of().keep.keep_original(b"y" * 10)
    assert url is not None and "dead-letters/" in url


async def test_a_hardware_codec_gets_its_own_content_address(
    rig_of: Any, admitted: Request
) -> None:
    """Videos of NVENC and of x264 differ: they never share an object key (or a cache hit)."""
    rig = rig_of()
    await rig.keep.encoder.start()
    x264 = await rig.keep.keep(admitted("e1", seed=3), generated())
    rig.keep.encoder.codec = "h264_nvenc"  # as chosen at start on a GPU host that has it
    key = rig.keep.encoder.key_material
    assert key["codec"] == "h264_nvenc"
    from streamproc.storage.base import object_key

    request = admitted("e2", seed=3)
    assert object_key("tiny-wan", request.prompt, request.params, encoding=key) != x264.key
