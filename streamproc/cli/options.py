"""Command-line options generated from the settings model.

Every leaf setting becomes one option named after its path: ``batch.window_ms`` is
``--batch.window-ms``, a flag pair for booleans (``--generation.fp8/--no-generation.fp8``).
Help text and default come from the field, as in ``docs/configuration.md``; the option itself
defaults to unset, so the environment and the config file still apply underneath. The most
used settings keep short names too (``ALIASES``). A new settings field needs no code here.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Callable, Collection
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
from pydantic import SecretStr

from streamproc.reference import SettingField, default_text, setting_fields

F = TypeVar("F", bound=Callable[..., Any])

#: Short names of the most used settings, kept from the hand-written options.
ALIASES: dict[str, tuple[str, ...]] = {
    "local.input": ("-i", "--input"),
    "local.results": ("--results",),
    "local.dead_letters": ("--dead-letters",),
    "local.status": ("--status",),
    "local.control": ("--control",),
    "storage.local_dir": ("--store-dir",),
    "storage.backend": ("--storage",),
    "generation.model": ("--model",),
    "generation.scheduler": ("--scheduler",),
    "generation.device": ("--device",),
    "generation.dtype": ("--dtype",),
    "generation.fps": ("--fps",),
    "generation.compile": ("--compile/--no-compile",),
    "generation.compile_cache_dir": ("--compile-cache-dir",),
    "generation.fp8": ("--fp8/--no-fp8",),
    "generation.attention_backend": ("--attention-backend",),
    "generation.warmup_shapes": ("--warmup-shape",),
    "batch.window_ms": ("--window-ms",),
    "batch.max_batch_size": ("--max-batch-size",),
    "batch.max_in_flight": ("--max-in-flight",),
    "cache.mode": ("--cache",),
    "cache.backend": ("--cache-backend",),
    "cache.redis_url": ("--redis-url",),
    "cache.similarity_threshold": ("--similarity-threshold",),
    "cache.ttl_s": ("--cache-ttl",),
    "kafka.bootstrap_servers": ("--bootstrap-servers",),
    "kafka.prompts_topic": ("--topic",),
    "kafka.results_topic": ("--results-topic",),
    "kafka.dead_letter_topic": ("--dead-letter-topic",),
    "kafka.enable_idempotence": ("--idempotence/--no-idempotence",),
    "kafka.group_id": ("--group-id",),
    "log.format": ("--log-format",),
    "log.level": ("--log-level",),
    "metrics.port": ("--metrics-port",),
    "metrics.enabled": ("--metrics/--no-metrics",),
}

_PREFIX = "setting__"


class SettingOption(click.Option):
    """An option that sets one field of the settings model."""

    def __init__(self, *args: Any, field: SettingField, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field = field


class SettingsCommand(click.Command):
    """A command whose help lists its own options first, then the settings by section."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        sections: dict[str, list[tuple[str, str]]] = {}
        titles: dict[str, str] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, SettingOption):
                name = param.field.section or "top level"
                sections.setdefault(name, []).append(record)
                titles[name] = param.field.section_doc.rstrip(".")
            else:
                own.append(record)
        with formatter.section("Options"):
            formatter.write_dl(own)
        for name, records in sections.items():
            title = f"Settings: {name}" + (f" ({titles[name]})" if titles[name] else "")
            with formatter.section(title):
                formatter.write_dl(records)
        formatter.write_paragraph()
        formatter.write_text(
            "Every setting also comes from STREAMPROC_<PATH> environment variables or the "
            "--config file (flags win); reference: docs/configuration.md."
        )


def settings_options(
    *, sections: Collection[str] | None = None, exclude: Collection[str] = ()
) -> Callable[[F], F]:
    """Add ``--config`` and one option per setting (of ``sections`` only, when given; not
    those whose dotted name or section is in ``exclude``) to a command; the command receives
    them as ``config_file`` and ``overrides``, the nested dict :func:`load_settings` takes."""
    fields = [
        f
        for f in setting_fields()
        if (sections is None or f.section in sections)
        and f.dotted not in exclude
        and f.section not in exclude
    ]

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            overrides: dict[str, Any] = {}
            for field in fields:
                value = kwargs.pop(_param_name(field))
                if value is None or value == ():
                    continue
                *parents, leaf = field.path
                target = overrides
                for part in parents:
                    target = target.setdefault(part, {})
                target[leaf] = list(value) if isinstance(value, tuple) else value
            return func(overrides=overrides, **kwargs)

        command: Any = wrapper
        for field in reversed(fields):
            command = setting_option(field)(command)
        command = click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="TOML or YAML settings file (see docs/configuration.md).",
        )(command)
        return command  # type: ignore[no-any-return]

    return decorate


def setting_option(field: SettingField) -> Callable[[F], F]:
    """The click option of one setting."""
    kind, multiple, is_flag = _click_type(field.info.annotation)
    long = "--" + ".".join(p.replace("_", "-") for p in field.path)
    if is_flag:
        names = [*ALIASES.get(field.dotted, ()), f"{long}/--no-{long.removeprefix('--')}"]
    else:
        names = [*(a for a in ALIASES.get(field.dotted, ()) if a != long), long]
    help_text = f"{field.description} [default: {default_text(field.info)}]"
    return click.option(
        *names,
        _param_name(field),
        cls=SettingOption,
        field=field,
        type=kind,
        multiple=multiple,
        is_flag=is_flag or None,
        default=None,
        help=help_text,
        metavar=None if isinstance(kind, click.Choice) else _metavar(field.info.annotation),
    )


def _param_name(field: SettingField) -> str:
    return _PREFIX + "__".join(field.path)


def _optional_inner(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _click_type(annotation: Any) -> tuple[click.ParamType[Any], bool, bool]:
    """(click type, repeatable, boolean flag) of a field type."""
    inner = _optional_inner(annotation)
    if inner is bool:
        return click.BOOL, False, True
    if get_origin(inner) is list and _scalar(get_args(inner)[0]) is not None:
        return _scalar(get_args(inner)[0]) or click.STRING, True, False
    scalar = _scalar(inner)
    if scalar is not None:
        return scalar, False, False
    return _JSON, False, False


def _scalar(annotation: Any) -> click.ParamType[Any] | None:
    if get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in get_args(annotation)])
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return click.Choice([str(m.value) for m in annotation])
    if annotation is int:
        return click.INT
    if annotation is float:
        return click.FLOAT
    if annotation in (str, Path, SecretStr):
        return click.STRING
    return None


def _metavar(annotation: Any) -> str:
    inner = _optional_inner(annotation)
    if get_origin(inner) is list:
        inner = get_args(inner)[0]
    names = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH", SecretStr: "SECRET"}
    return names.get(inner, "JSON")


class _JsonType(click.ParamType[Any]):
    """A value given as JSON (tables and lists of tables)."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not JSON: {exc}", param, ctx)


_JSON = _JsonType()
