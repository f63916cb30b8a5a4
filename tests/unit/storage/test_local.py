"""Content-addressed keys and the local object store."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from streamproc.errors import RecordRejected, ServiceRefused, StorageError
from streamproc.events import GenerationParameters
from streamproc.storage.base import object_key
from streamproc.storage.local import LocalObjectStore, _classify

PARAMS = GenerationParameters(
    width=64,
    height=32,
    num_frames=5,
    num_inference_steps=2,
    guidance_scale=5.0,
    seed=1,
    scheduler="unipc",
    fps=16,
)


def test_key_is_stable_and_content_addressed() -> None:
    key = object_key("org/model", "a fox", PARAMS)
    assert key == object_key("org/model", "a fox", PARAMS)
    assert key.startswith("videos/org-model/") and key.endswith(".mp4")


@pytest.mark.parametrize(
    "change",
    [
        {"model_id": "org/other"},
        {"prompt": "a fox "},
        {"params": PARAMS.model_copy(update={"seed": 2})},
        {"params": PARAMS.model_copy(update={"width": 96})},
        {"params": PARAMS.model_copy(update={"scheduler": "dpm++"})},
        {"params": PARAMS.model_copy(update={"fps": 24})},
        {"params": PARAMS.model_copy(update={"negative_prompt": "blur"})},
        {"params": PARAMS.model_copy(update={"step_cache": "first-block:0.1"})},
    ],
)
def test_anything_that_changes_the_bytes_changes_the_key(change: dict[str, object]) -> None:
    base = {"model_id": "org/model", "prompt": "a fox", "params": PARAMS}
    assert object_key(**base) != object_key(**(base | change))  # type: ignore[arg-type]


def test_standard_requests_keep_the_keys_they_had_before_request_classes() -> None:
    # Objects stored before step caches existed must still be found (no re-generation).
    material = json.dumps(
        {
            "model": "org/model",
            "prompt": "a fox",
            "params": PARAMS.model_dump(mode="json", exclude={"step_cache"}),
            "encoding": [1, {}],
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(material.encode()).hexdigest()
    assert object_key("org/model", "a fox", PARAMS) == f"videos/org-model/{digest[:2]}/{digest}.mp4"


def test_prefix_is_prepended() -> None:
    assert object_key("m", "p", PARAMS, prefix="tenant-a/").startswith("tenant-a/videos/")


async def test_put_writes_atomically_with_metadata_and_returns_a_file_url(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    url = await store.put("videos/m/ab/abc.mp4", b"mp4 bytes", {"event_id": "e1"})
    path = tmp_path / "videos/m/ab/abc.mp4"
    assert url == path.resolve().as_uri()
    assert path.read_bytes() == b"mp4 bytes"
    assert json.loads(path.with_suffix(".mp4.json").read_text()) == {"event_id": "e1"}
    assert await store.exists("videos/m/ab/abc.mp4")
    assert await store.url_for("videos/m/ab/abc.mp4") == url
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


async def test_second_put_of_the_same_key_is_idempotent(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    await store.put("videos/k.mp4", b"same", {})
    first = (tmp_path / "videos/k.mp4").stat().st_mtime_ns
    await store.put("videos/k.mp4", b"same", {})
    assert (tmp_path / "videos/k.mp4").stat().st_mtime_ns == first


async def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    with pytest.raises(RecordRejected, match="escapes") as caught:
        await LocalObjectStore(tmp_path / "root").put("../outside.mp4", b"x", {})
    assert caught.value.component == "store"


async def test_a_store_that_cannot_be_written_at_all_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(
        ServiceRefused, match=r"cannot write .*: check storage\.local_dir"
    ) as caught:
        await LocalObjectStore(tmp_path / "file").put("videos/k.mp4", b"x", {})
    assert caught.value.component == "store"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.ENOSPC, StorageError),
        (errno.EIO, StorageError),
        (errno.EACCES, ServiceRefused),
        (errno.EROFS, ServiceRefused),
        (errno.EFBIG, RecordRejected),
    ],
)
def test_write_errors_are_classified_by_errno(code: int, error: type[Exception]) -> None:
    made = _classify(Path("/v/k.mp4"), OSError(code, os.strerror(code)))
    assert type(made) is error
    assert str(made).startswith(f"cannot write /v/k.mp4: {os.strerror(code)}")


def test_encoder_settings_are_part_of_the_key() -> None:
    fast = object_key("m", "p", PARAMS, encoding={"preset": "ultrafast", "crf": 18})
    slow = object_key("m", "p", PARAMS, encoding={"preset": "veryfast", "crf": 18})
    assert fast != slow


async def test_check_writes_reads_and_removes_a_probe(tmp_path: Path) -> None:
    steps = await LocalObjectStore(tmp_path).check()
    assert [(s.name, s.status) for s in steps] == [("put", "ok"), ("get", "ok"), ("delete", "ok")]
    assert [p for p in await asyncio.to_thread(tmp_path.rglob, "*") if p.is_file()] == []


async def test_check_reports_an_unwritable_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    [step] = await LocalObjectStore(tmp_path / "file").check()
    assert step.name == "put" and step.status == "fail"
