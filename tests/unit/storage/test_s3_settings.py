"""S3 settings: bucket, credentials, prefix, part sizes and secrets."""

from __future__ import annotations

import pytest

from streamproc.errors import ConfigError
from streamproc.settings import S3Settings, load_settings


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("", ""), ("a", "a/"), ("/a/b/", "a/b/"), ("a/b", "a/b/")],
)
def test_prefix_is_normalised(prefix: str, expected: str) -> None:
    assert S3Settings(bucket="b", prefix=prefix).key_prefix == expected


def test_s3_backend_needs_a_bucket() -> None:
    with pytest.raises(ConfigError, match=r"storage\.s3\.bucket is required"):
        load_settings(storage={"backend": "s3"})


def test_credentials_come_in_pairs() -> None:
    with pytest.raises(ConfigError, match="access_key_id and secret_access_key"):
        load_settings(storage={"s3": {"bucket": "b", "access_key_id": "id"}})


def test_parts_smaller_than_s3_allows_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"storage\.s3\.multipart_chunk_bytes"):
        load_settings(storage={"s3": {"multipart_chunk_bytes": 1 << 20}})


def test_secrets_from_the_environment_are_kept_but_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMPROC_STORAGE__S3__SECRET_ACCESS_KEY", "very-secret")
    monkeypatch.setenv("STREAMPROC_STORAGE__S3__ACCESS_KEY_ID", "id")
    settings = load_settings()
    secret = settings.storage.s3.secret_access_key
    assert secret is not None and secret.get_secret_value() == "very-secret"
    assert "very-secret" not in settings.model_dump_json()
    assert "very-secret" not in repr(settings)
