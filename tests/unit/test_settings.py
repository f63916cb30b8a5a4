"""Settings precedence: flags > environment > config file > defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from streamproc.errors import ConfigError
from streamproc.settings import load_settings


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMPROC_BATCH__WINDOW_MS", raising=False)
    settings = load_settings()
    assert settings.generation.model == "tiny"
    assert settings.batch.window_ms == 100
    assert settings.cache.mode == "reuse"


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_flags_beat_environment_beat_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = tmp_path / f"cfg{suffix}"
    if suffix == ".toml":
        path.write_text("[batch]\nwindow_ms = 10\nmax_batch_size = 2\nmax_in_flight = 5\n")
    else:
        path.write_text("batch:\n  window_ms: 10\n  max_batch_size: 2\n  max_in_flight: 5\n")
    monkeypatch.setenv("STREAMPROC_BATCH__MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("STREAMPROC_BATCH__MAX_IN_FLIGHT", "7")
    settings = load_settings(path, batch={"max_in_flight": 9, "window_ms": None})
    assert settings.batch.window_ms == 10  # file (flag unset)
    assert settings.batch.max_batch_size == 3  # environment beats file
    assert settings.batch.max_in_flight == 9  # flag beats environment


def test_invalid_value_is_one_readable_config_error() -> None:
    with pytest.raises(ConfigError, match=r"batch\.max_batch_size"):
        load_settings(batch={"max_batch_size": 0})


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text("[batch]\nwindow = 10\n")
    with pytest.raises(ConfigError, match="window"):
        load_settings(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("cfg.ini", "x=1", "must end in"),
        ("cfg.toml", "[batch\n", "does not parse"),
        ("cfg.yaml", "- a list", "table of settings"),
    ],
)
def test_bad_config_files_are_config_errors(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml")


def test_event_limits_follow_the_settings() -> None:
    settings = load_settings(limits={"max_width": 512, "max_prompt_chars": 50})
    limits = settings.event_limits("m")
    assert (limits.max_width, limits.max_prompt_chars, limits.model_id) == (512, 50, "m")


def test_cache_lower_band_must_sit_below_the_threshold() -> None:
    with pytest.raises(ConfigError, match="verified_threshold"):
        load_settings(cache={"similarity_threshold": 0.8, "verified_threshold": 0.9})
    settings = load_settings(cache={"verified_threshold": 0.7, "backend": "redis"})
    assert settings.cache.verified_threshold == 0.7 and settings.cache.backend == "redis"


def test_redis_url_is_a_secret_never_printed() -> None:
    settings = load_settings(cache={"redis_url": "redis://:hunter2@cache:6379/0"})
    assert settings.cache.redis_url.get_secret_value().endswith("@cache:6379/0")
    assert "hunter2" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"cache": {"redis_url": "http://cache:6379/0"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "cache:6379"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "redis:///0"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "redis://cache:0/0"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "redis://cache:65536/0"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "redis://cache:63x9/0"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "redis://cache:6379/-1"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "redis://cache:6379/zero"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "redis://cache:6379?db=x"}}, "cache.redis_url"),
        ({"cache": {"redis_url": "unix://run/redis.sock"}}, "cache.redis_url"),
        ({"storage": {"s3": {"endpoint_url": "minio:9000"}}}, "storage.s3.endpoint_url"),
        ({"storage": {"s3": {"endpoint_url": "s3://bucket"}}}, "storage.s3.endpoint_url"),
        ({"storage": {"s3": {"endpoint_url": "http://minio:99999"}}}, "storage.s3.endpoint_url"),
        ({"storage": {"s3": {"public_base_url": "https://"}}}, "storage.s3.public_base_url"),
        (
            {"storage": {"s3": {"public_base_url": "https://cdn/v?x=1"}}},
            "storage.s3.public_base_url",
        ),
        (
            {"storage": {"s3": {"presign_endpoint_url": "ftp://h"}}},
            "storage.s3.presign_endpoint_url",
        ),
        ({"kafka": {"bootstrap_servers": "kafka"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"bootstrap_servers": "k1:9092,k2:0"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"bootstrap_servers": "PLAINTEXT://k:9092"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"bootstrap_servers": "::1:9092"}}, "kafka.bootstrap_servers"),
        ({"kafka": {"bootstrap_servers": " , "}}, "kafka.bootstrap_servers"),
        ({"metrics": {"host": "0.0.0.0:9464"}}, "metrics.host"),
        ({"metrics": {"host": "http://localhost"}}, "metrics.host"),
    ],
)
def test_a_bad_url_like_setting_is_a_config_error_naming_it(
    overrides: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^invalid settings: {re.escape(setting)}: "):
        load_settings(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"cache": {"redis_url": "redis://cache"}},
        {"cache": {"redis_url": "rediss://user:pw@cache.internal:6380/15"}},
        {"cache": {"redis_url": "redis://[::1]:6379?db=2"}},
        {"cache": {"redis_url": "unix:///run/redis.sock?db=1"}},
        {"storage": {"s3": {"endpoint_url": "http://minio:9000"}}},
        {"storage": {"s3": {"public_base_url": "https://cdn.example.com/videos/"}}},
        {"storage": {"s3": {"presign_endpoint_url": "http://[::1]:9000"}}},
        {"kafka": {"bootstrap_servers": "k1:9092, k2:9093,[::1]:9094,"}},
        {"metrics": {"host": "::"}},
    ],
)
def test_url_like_settings_in_every_documented_form_are_accepted(overrides: dict[str, Any]) -> None:
    load_settings(**overrides)


def test_a_rejected_redis_url_does_not_repeat_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(cache={"redis_url": "redis://:hunter2@cache:99999/0"})
    assert "cache.redis_url" in str(caught.value) and "hunter2" not in str(caught.value)


def test_an_empty_s3_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPROC_STORAGE__S3__ENDPOINT_URL", "")
    assert load_settings().storage.s3.endpoint_url is None


def test_a_redis_that_does_not_answer_at_start_is_an_error_unless_degrading_is_allowed() -> None:
    assert load_settings().cache.degrade_at_start is False
    assert load_settings(cache={"degrade_at_start": True}).cache.degrade_at_start is True


def test_shown_settings_mask_the_password_of_the_redis_url_and_nothing_else_of_it() -> None:
    shown = json.loads(
        load_settings(cache={"redis_url": "redis://:hunter2@cache:6379/0"}).model_dump_json()
    )
    assert shown["cache"]["redis_url"] == "redis://:***@cache:6379/0"


def test_shown_settings_give_a_redis_url_without_password_whole() -> None:
    shown = json.loads(
        load_settings(cache={"redis_url": "rediss://cache.internal:6380/2"}).model_dump_json()
    )
    assert shown["cache"]["redis_url"] == "rediss://cache.internal:6380/2"


def test_shown_settings_still_mask_every_secret_field() -> None:
    settings = load_settings(
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "u",
            "sasl_password": "hunter2",
        },
        storage={"s3": {"access_key_id": "AKIA", "secret_access_key": "hunter2"}},
    )
    text = settings.model_dump_json()
    assert "hunter2" not in text
    shown = json.loads(text)
    assert (
        shown["kafka"]["sasl_password"]
        == shown["storage"]["s3"]["secret_access_key"]
        == ("**********")
    )
