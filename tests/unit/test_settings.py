"""Settings precedence: flags > environment > config file > defaults."""

from __future__ import annotations

from pathlib import Path

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
