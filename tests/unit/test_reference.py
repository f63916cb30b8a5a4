"""docs/configuration.md is generated from the settings model and must not drift."""

from __future__ import annotations

from pathlib import Path

from streamproc.reference import _rows, settings_reference
from streamproc.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_reference_matches_the_settings_model() -> None:
    assert DOC.read_text() == settings_reference(), (
        "run `streamproc config reference > docs/configuration.md`"
    )


def test_every_setting_is_documented_with_a_meaning() -> None:
    undocumented = [row[0] for row in _rows(Settings, []) if not row[4].strip()]
    assert undocumented == []
