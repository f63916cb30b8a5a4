"""`streamproc storage check`, `run --storage s3` and `config show` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import event, read_jsonl, write_jsonl
from tests.integration.storage.conftest import ACCESS_KEY, SECRET_KEY, MotoS3
from tests.integration.storage.test_s3 import fetch
from tests.integration.test_cli import streamproc

SESSION_TOKEN = "streamproc-test-session-token-do-not-print"


def s3_env(moto_s3: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Configure the S3 store through the environment, as a container would."""
    for name, value in {
        "STREAMPROC_STORAGE__BACKEND": "s3",
        "STREAMPROC_STORAGE__S3__BUCKET": bucket,
        "STREAMPROC_STORAGE__S3__PREFIX": "cli",
        "STREAMPROC_STORAGE__S3__ENDPOINT_URL": moto_s3.endpoint,
        "STREAMPROC_STORAGE__S3__PATH_STYLE": "true",
        "STREAMPROC_STORAGE__S3__ACCESS_KEY_ID": ACCESS_KEY,
        "STREAMPROC_STORAGE__S3__SECRET_ACCESS_KEY": SECRET_KEY,
        "STREAMPROC_STORAGE__S3__SESSION_TOKEN": SESSION_TOKEN,
        "STREAMPROC_STORAGE__S3__MAX_ATTEMPTS": "2",
    }.items():
        monkeypatch.setenv(name, value)


def assert_no_secrets(*texts: bytes) -> None:
    for text in texts:
        assert SECRET_KEY.encode() not in text
        assert SESSION_TOKEN.encode() not in text


def test_storage_check_passes_on_a_usable_bucket(
    moto_s3: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(moto_s3, bucket, monkeypatch)
    proc = streamproc("storage", "check", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = proc.stdout.decode()
    assert f"s3://{bucket}/cli/videos" in out
    for name in ("bucket", "put", "get", "url", "delete"):
        assert f"ok    {name}" in out
    assert out.rstrip().endswith("storage: OK")
    assert_no_secrets(proc.stdout, proc.stderr)
    assert moto_s3.client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_storage_check_fails_with_one_line_on_a_missing_bucket(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(moto_s3, "no-such-bucket", monkeypatch)
    proc = streamproc("storage", "check", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    [line] = [x for x in err.splitlines() if x.startswith("streamproc: error:")]
    assert "storage check failed (bucket)" in line and "does not exist" in line
    assert_no_secrets(proc.stdout, proc.stderr)


def test_run_on_s3_stores_videos_and_publishes_presigned_urls(
    moto_s3: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(moto_s3, bucket, monkeypatch)
    monkeypatch.delenv("STREAMPROC_STORAGE__BACKEND")  # the flag chooses it
    lines = [event("c1", "a tram in the fog"), event("c2", "a tram in the fog")]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    proc = streamproc(
        "run", "--storage", "s3", "-i", str(source), "--log-format", "json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert f"videos: s3://{bucket}/cli/videos".encode() in proc.stderr
    assert_no_secrets(proc.stdout, proc.stderr)
    results = {r["event_id"]: r for r in read_jsonl(tmp_path / "streamproc-out" / "results.jsonl")}
    assert results["c2"]["cache"] == "hit-exact"
    for result in results.values():
        assert fetch(result["video_url"]) == moto_s3.read(bucket, f"cli/{result['object_key']}")
    assert not (tmp_path / "streamproc-out" / "videos").exists()


def test_run_on_a_missing_bucket_fails_at_start_with_one_line(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(moto_s3, "no-such-bucket", monkeypatch)
    source = write_jsonl(tmp_path / "in.jsonl", [event("m1")])
    proc = streamproc("run", "-i", str(source), cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr
    assert (
        proc.stderr.decode()
        .strip()
        .splitlines()[-1]
        .startswith("streamproc: error: bucket 'no-such-bucket'")
    )
    assert not (tmp_path / "streamproc-out" / "results.jsonl").exists() or not read_jsonl(
        tmp_path / "streamproc-out" / "results.jsonl"
    )


def test_run_with_denied_credentials_fails_at_start_with_one_error_line(
    moto_s3: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(moto_s3, bucket, monkeypatch)
    monkeypatch.delenv("STREAMPROC_STORAGE__BACKEND")  # the flag chooses it
    monkeypatch.setenv("STREAMPROC_STORAGE__S3__ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
    source = write_jsonl(tmp_path / "in.jsonl", [event("d1")])
    with moto_s3.enforcing_iam():
        proc = streamproc(
            "run", "--storage", "s3", "--cache-backend", "none", "-i", str(source),
            cwd=tmp_path, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr
    errors = [x for x in proc.stderr.decode().splitlines() if "error" in x.lower()]
    assert errors == [
        f"streamproc: error: access denied to bucket {bucket!r} at {moto_s3.endpoint} "
        "(403 on head_bucket): check the storage.s3 credentials and the bucket policy"
    ]
    assert_no_secrets(proc.stdout, proc.stderr)
    assert read_jsonl(tmp_path / "streamproc-out" / "results.jsonl") == []


def test_s3_without_a_bucket_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMPROC_STORAGE__S3__BUCKET", raising=False)
    proc = streamproc("storage", "check", "--storage", "s3", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        "streamproc: error: invalid settings: storage.s3.bucket is required when storage.backend is 's3'"
    )


def test_config_show_masks_the_secrets(
    moto_s3: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(moto_s3, bucket, monkeypatch)
    proc = streamproc("config", "show", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    shown = json.loads(proc.stdout)["storage"]["s3"]
    assert shown["access_key_id"] == ACCESS_KEY
    assert shown["secret_access_key"] == shown["session_token"] == "**********"
    assert_no_secrets(proc.stdout, proc.stderr)
