"""What every command shares: one-line errors and reading the settings once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from streamproc.errors import StreamprocError
from streamproc.settings import Settings, load_settings

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str) -> NoReturn:
    """Print ``streamproc: error: MESSAGE`` and exit 1 (never a traceback)."""
    click.echo(f"streamproc: error: {message}", err=True)
    sys.exit(1)


def load(config_file: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """The settings: ``overrides`` (flags) > environment > ``config_file`` > defaults."""
    try:
        return load_settings(config_file, **(overrides or {}))
    except StreamprocError as exc:
        fail(str(exc))


def videos_at(settings: Settings) -> str:
    """Where the videos go, for the one-line summaries."""
    if settings.storage.backend == "s3":
        return f"s3://{settings.storage.s3.bucket}/{settings.storage.s3.key_prefix}videos"
    return str(settings.storage.local_dir / "videos")
