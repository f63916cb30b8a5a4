"""The command line is generated from the settings model: every setting has an option on
`run` (and on `replay`, but for the local transport), with the help and default of
docs/configuration.md, and flags layer over the environment and the config file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field

from streamproc.cli import main
from streamproc.cli.options import ALIASES, SettingOption, setting_option
from streamproc.cli.replay import replay
from streamproc.cli.run import run
from streamproc.reference import SettingField, default_text, setting_fields
from streamproc.settings import Settings

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
FIELDS = list(setting_fields())


def long_name(field: SettingField) -> str:
    return "--" + ".".join(p.replace("_", "-") for p in field.path)


def setting_options(command: click.Command) -> dict[str, SettingOption]:
    return {p.field.dotted: p for p in command.params if isinstance(p, SettingOption)}


def show(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["config", "show", *args], env=env)
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.output)
    return shown


def test_every_setting_has_an_option_on_run_named_after_its_path() -> None:
    options = setting_options(run)
    assert sorted(options) == sorted(f.dotted for f in FIELDS)
    for field in FIELDS:
        assert long_name(field) in options[field.dotted].opts, field.dotted


def test_every_option_carries_the_documented_meaning_and_default() -> None:
    for dotted, option in setting_options(run).items():
        info = option.field.info
        assert option.help == f"{info.description} [default: {default_text(info)}]", dotted
        assert option.default is None  # unset: the environment and the file still apply


def test_every_setting_is_in_the_reference_with_its_default() -> None:
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(
            r"^\| `([^`]+)` \| `[^`]+` \| .*? \| (.*?) \| .*\|$", DOC.read_text(), re.M
        )
    }
    for field in FIELDS:
        assert field.dotted in rows, field.dotted
        assert rows[field.dotted].strip("`") == default_text(field.info), field.dotted


def test_replay_shares_the_options_of_run_but_those_of_the_local_transport() -> None:
    shared = setting_options(replay)
    assert sorted(shared) == sorted(
        f.dotted for f in FIELDS if f.section != "local" and f.dotted != "transport"
    )
    for dotted, option in shared.items():
        assert option.opts == setting_options(run)[dotted].opts


def test_every_alias_names_a_setting() -> None:
    assert set(ALIASES) <= {f.dotted for f in FIELDS}


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text("[batch]\nwindow_ms = 10\nmax_batch_size = 2\nmax_in_flight = 5\n")
    env = {"STREAMPROC_BATCH__MAX_BATCH_SIZE": "3", "STREAMPROC_BATCH__MAX_IN_FLIGHT": "7"}
    shown = show("--config", str(config), "--max-in-flight", "9", env=env)["batch"]
    assert (shown["window_ms"], shown["max_batch_size"], shown["max_in_flight"]) == (10, 3, 9)


@pytest.mark.parametrize(
    ("args", "section", "name", "value"),
    [
        (["--window-ms", "7"], "batch", "window_ms", 7.0),
        (["--batch.window-ms", "7"], "batch", "window_ms", 7.0),
        (["--fp8"], "generation", "fp8", True),
        (["--generation.fp8"], "generation", "fp8", True),
        (["--no-idempotence"], "kafka", "enable_idempotence", False),
        (["--no-kafka.enable-idempotence"], "kafka", "enable_idempotence", False),
        (["--cache", "bypass"], "cache", "mode", "bypass"),
        (["--warmup-shape", "64x64x5", "--warmup-shape", "32x32x1"], "generation",
         "warmup_shapes", ["64x64x5", "32x32x1"]),
        (["--storage.s3.region", "eu-west-1"], "storage", "s3", None),
        (["--compile-cache-dir", "/tmp/cc"], "generation", "compile_cache_dir", "/tmp/cc"),
    ],
)  # fmt: skip
def test_a_flag_sets_its_setting(args: list[str], section: str, name: str, value: object) -> None:
    shown = show(*args)[section][name]
    if value is None:  # nested section: the region inside it
        assert shown["region"] == "eu-west-1"
    else:
        assert shown == value


def test_a_table_setting_is_given_as_json() -> None:
    classes = {"fast": {"kind": "first-block", "threshold": 0.2}}
    shown = show("--generation.step-cache-classes", json.dumps(classes))
    assert shown["generation"]["step_cache_classes"]["fast"]["threshold"] == 0.2
    result = CliRunner().invoke(main, ["config", "show", "--generation.step-cache-classes", "{"])
    assert result.exit_code == 2 and "not JSON" in result.output


def test_a_value_the_model_refuses_is_one_line_naming_the_setting() -> None:
    result = CliRunner().invoke(main, ["config", "show", "--batch.max-batch-size", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("streamproc: error: invalid settings: batch.max_batch_size")


class _NewSection(BaseModel):
    """A section a later change might add."""

    switch: bool = Field(False, description="On or off.")
    mode: Literal["a", "b"] = Field("a", description="Which.")
    shapes: list[str] = Field(default_factory=list, description="Some shapes.")
    table: dict[str, int] = Field(default_factory=dict, description="A table.")
    limit: int | None = Field(None, description="A bound.")


@pytest.mark.parametrize(
    ("name", "args", "parsed"),
    [
        ("switch", ["--new.switch"], True),
        ("switch", ["--no-new.switch"], False),
        ("mode", ["--new.mode", "b"], "b"),
        ("shapes", ["--new.shapes", "x", "--new.shapes", "y"], ("x", "y")),
        ("table", ["--new.table", '{"k": 1}'], {"k": 1}),
        ("limit", ["--new.limit", "3"], 3),
    ],
)
def test_a_new_field_of_any_kind_gets_its_option_without_code(
    name: str, args: list[str], parsed: object
) -> None:
    field = SettingField(("new", name), _NewSection.model_fields[name], "A new section.")

    @click.command()
    @setting_option(field)
    def command(**kwargs: Any) -> None:
        click.echo(json.dumps(next(iter(kwargs.values()))))

    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    value = json.loads(result.output)
    assert value == (list(parsed) if isinstance(parsed, tuple) else parsed)


def test_run_help_explains_the_exit_statuses_and_groups_the_settings() -> None:
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=100)
    assert result.exit_code == 0
    text = result.output
    assert "Exit status:" in text and "130  interrupted before the worker started" in text
    headings = re.findall(r"^Settings: (\S+)", text, re.M)
    assert headings == ["top", *dict.fromkeys(f.section for f in FIELDS if f.section)]
    assert text.index("--reprocess") < text.index("Settings: top")


def test_each_settings_heading_names_its_top_level_section() -> None:
    text = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for name, info in Settings.model_fields.items():
        model: Any = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            first = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").rstrip(".")
            assert f"Settings: {name} ({first})" in text, name


def test_an_unset_flag_leaves_the_environment_in_force() -> None:
    env = {"STREAMPROC_KAFKA__ENABLE_IDEMPOTENCE": "false", "STREAMPROC_GENERATION__FP8": "true"}
    shown = show(env=env)
    assert shown["kafka"]["enable_idempotence"] is False and shown["generation"]["fp8"] is True
    assert show("--idempotence", env=env)["kafka"]["enable_idempotence"] is True
