"""The smaller commands: ``produce``, ``topics create``, ``schemas``, ``config`` and
``storage check``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from streamproc.cli.common import CONTEXT, fail, load, videos_at
from streamproc.cli.options import SettingsCommand, settings_options
from streamproc.errors import StreamprocError
from streamproc.events import json_schemas
from streamproc.samples import example_events


@click.command(cls=SettingsCommand, context_settings=CONTEXT)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many events to write.",
)
@click.option(
    "-o",
    "--output",
    type=click.File("w"),
    default="-",
    show_default=True,
    help="JSONL file to write ('-' = stdout).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the choices.")
@click.option(
    "--repeat-ratio",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of events that repeat an earlier prompt (cache hits).",
)
@click.option("--width", type=int, default=832, show_default=True)
@click.option("--height", type=int, default=480, show_default=True)
@click.option(
    "--frames",
    "num_frames",
    type=int,
    default=17,
    show_default=True,
    help="Frames per video, 4k+1.",
)
@click.option("--steps", "num_inference_steps", type=int, default=16, show_default=True)
@click.option("--guidance", "guidance_scale", type=float, default=5.0, show_default=True)
@click.option(
    "--kafka",
    "to_kafka",
    is_flag=True,
    help="Send the events to the prompts topic (keyed by event_id) instead of writing them.",
)
@click.option(
    "-i",
    "--input",
    "input_file",
    type=click.File("rb"),
    help="With --kafka: send the lines of this JSONL file ('-' = stdin) as they are, "
    "instead of generated examples.",
)
@settings_options(sections={"kafka"})
def produce(
    count: int,
    output: Any,
    seed: int,
    repeat_ratio: float,
    width: int,
    height: int,
    num_frames: int,
    num_inference_steps: int,
    guidance_scale: float,
    to_kafka: bool,
    input_file: Any,
    config_file: Path | None,
    overrides: dict[str, Any],
) -> None:
    """Write example prompt events as JSON lines (valid input for `streamproc run`), or send
    them (or the lines of --input) to the Kafka prompts topic with --kafka."""
    if input_file is not None and not to_kafka:
        fail("--input only works with --kafka (to send a file's events to the topic)")
    if input_file is not None:
        lines = [line.rstrip(b"\r\n") for line in input_file if line.strip()]
    else:
        try:
            lines = [
                event.model_dump_json(exclude_none=True).encode()
                for event in example_events(
                    count,
                    seed=seed,
                    repeat_ratio=repeat_ratio,
                    width=width,
                    height=height,
                    num_frames=num_frames,
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                )
            ]
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            fail(f"these parameters make invalid events: {exc}".splitlines()[0])
    if not to_kafka:
        for line in lines:
            output.write(line.decode() + "\n")
        return
    settings = load(config_file, overrides)
    from streamproc.bus.kafka_admin import send_prompts

    try:
        sent = asyncio.run(send_prompts(settings.kafka, lines))
    except StreamprocError as exc:
        fail(str(exc))
    click.echo(f"streamproc: sent {sent} events to {settings.kafka.prompts_topics[0]}", err=True)


@click.group(context_settings=CONTEXT)
def topics() -> None:
    """Manage the Kafka topics."""


@topics.command("create", cls=SettingsCommand, context_settings=CONTEXT)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Partitions per new topic (the most workers one group can use).",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Copies of each partition; use 3 on a production cluster.",
)
@settings_options(sections={"kafka"})
def topics_create(
    partitions: int, replication_factor: int, config_file: Path | None, overrides: dict[str, Any]
) -> None:
    """Create the prompts, results, dead-letter, status and control topics; existing ones are
    left as they are."""
    settings = load(config_file, overrides)
    from streamproc.bus.kafka_admin import create_topics

    try:
        statuses = asyncio.run(
            create_topics(
                settings.kafka, partitions=partitions, replication_factor=replication_factor
            )
        )
    except StreamprocError as exc:
        fail(str(exc))
    for status in statuses:
        if status.created:
            click.echo(f"created {status.name} ({status.partitions} partitions)")
        else:
            click.echo(f"exists  {status.name} ({status.partitions} partitions)")


@click.command(context_settings=CONTEXT)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("schemas"),
    show_default=True,
    help="Where the schema files live.",
)
@click.option("--check", is_flag=True, help="Exit 1 if the files differ from the models.")
def schemas(directory: Path, check: bool) -> None:
    """Write (or --check) the JSON Schemas of the event contract."""
    stale = []
    for name, schema in json_schemas().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = directory / name
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(name)
        if not check:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            click.echo(f"wrote {path}", err=True)
    if check and stale:
        fail(f"schemas out of date: {', '.join(stale)} (run: streamproc schemas)")


@click.group(context_settings=CONTEXT)
def config() -> None:
    """Inspect settings."""


@config.command("show", cls=SettingsCommand, context_settings=CONTEXT)
@settings_options()
def config_show(config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Print the effective settings (flags + environment + file + defaults) as JSON.

    Secrets are masked; a URL holding a password (cache.redis_url) is shown with only the
    password masked, so you can see which server is used.
    """
    settings = load(config_file, overrides)
    click.echo(settings.model_dump_json(indent=2))


@config.command("reference", context_settings=CONTEXT)
def config_reference() -> None:
    """Print the Markdown reference of every setting (docs/configuration.md)."""
    from streamproc.reference import settings_reference

    click.echo(settings_reference(), nl=False)


@click.group(context_settings=CONTEXT)
def storage() -> None:
    """Inspect the object store."""


@storage.command("check", cls=SettingsCommand, context_settings=CONTEXT)
@settings_options(sections={"storage"})
def storage_check(config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Verify the configured object store: credentials, bucket, and a small probe object
    written, read back, fetched by its URL and deleted (S3: below storage.s3.prefix).

    Exit status 0 when every step passed (a URL that cannot be fetched from this host is only
    a warning), 1 otherwise.
    """
    settings = load(config_file, overrides)
    from streamproc.app import build_store
    from streamproc.logs import configure_logging

    configure_logging(settings.log)
    try:
        steps = asyncio.run(build_store(settings).check())
    except StreamprocError as exc:
        fail(str(exc))
        return
    click.echo(f"storage check: {settings.storage.backend} store at {videos_at(settings)}")
    for step in steps:
        click.echo(f"  {step.status:<4}  {step.name:<6}  {step.detail}")
    failed = [step for step in steps if step.status == "fail"]
    if failed:
        fail(f"storage check failed ({failed[0].name}): {failed[0].detail}")
    warned = any(step.status == "warn" for step in steps)
    click.echo(f"storage: OK{' (with warnings)' if warned else ''}")
