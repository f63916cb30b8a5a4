"""``streamproc gateway`` (the HTTP front door) and ``streamproc api-key`` (its keys)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from streamproc.cli.common import CONTEXT, fail, load
from streamproc.cli.options import SettingsCommand, settings_options
from streamproc.errors import StreamprocError

#: The settings sections the gateway reads (others still come from env and --config).
SECTIONS = {"gateway", "kafka", "ledger", "cache", "limits", "tenants", "log"}
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@click.command(cls=SettingsCommand, context_settings=CONTEXT)
@settings_options(sections=SECTIONS)
def gateway(config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Serve the HTTP API (POST /v1/videos, GET /v1/videos/{id}[/events|/content],
    DELETE /v1/videos/{id}) over the Kafka prompts topic, until SIGINT/SIGTERM.

    Clients authenticate with 'Authorization: Bearer <key>' (keys: streamproc api-key
    create); each tenant is rate-limited across every replica through Redis. A submission
    is answered 202 only once the brokers have its record (acks=all). Run as many replicas
    as needed side by side: they share nothing but Kafka and Redis. OpenAPI docs at /docs,
    ops endpoints /healthz, /readyz, /metrics; see docs/gateway.md.

    \b
    Exit status:
      0    stopped by SIGINT/SIGTERM
      1    could not start (settings, Kafka or Redis unreachable or refusing, no topic)
      5    a supervised task crashed (a bug; see the task_crashed log)
    """
    settings = load(config_file, overrides)
    from streamproc.gateway.service import serve
    from streamproc.logs import configure_logging

    configure_logging(settings.log)
    from streamproc.gateway.service import TaskCrashed

    try:
        with asyncio.Runner(loop_factory=_fast_loop()) as runner:
            runner.run(serve(settings))
    except TaskCrashed as exc:
        click.echo(f"streamproc: error: {exc}", err=True)
        sys.exit(5)
    except StreamprocError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


def _fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (as with uvicorn[standard]), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@click.group("api-key", context_settings=CONTEXT)
def api_key() -> None:
    """Make and revoke the gateway's API keys (only their SHA-256 is ever stored)."""


@api_key.command("create", cls=SettingsCommand, context_settings=CONTEXT)
@click.option("--tenant", required=True, help="The tenant the key acts for.")
@click.option(
    "--expires-in",
    metavar="DURATION",
    help="Lifetime of the key, e.g. 90d, 12h, 30m (default: no expiry).",
)
@click.option("--name", default="", help="A label for people (e.g. who holds the key).")
@click.option(
    "--store",
    type=click.Choice(["print", "redis"]),
    default="print",
    show_default=True,
    help="'print': print the gateway.api_keys entry to add to the configuration; "
    "'redis': store the key's digest in the gateway's Redis (every replica accepts it "
    "within gateway.key_cache_s).",
)
@settings_options(sections={"gateway", "ledger", "cache"})
def api_key_create(
    tenant: str,
    expires_in: str | None,
    name: str,
    store: str,
    config_file: Path | None,
    overrides: dict[str, Any],
) -> None:
    """Make a new random API key for TENANT and print it (once: it is not kept)."""
    from streamproc.gateway.auth import KeyRecord, generate_key, key_digest
    from streamproc.settings import ApiKeySpec

    settings = load(config_file, overrides)
    expires_at = None
    if expires_in is not None:
        found = _DURATION.match(expires_in.strip())
        if found is None or int(found.group(1)) == 0:
            fail(f"--expires-in {expires_in!r}: give a duration such as 90d, 12h or 30m")
        seconds = int(found.group(1)) * _UNITS[found.group(2)]
        expires_at = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    key = generate_key()
    try:
        spec = ApiKeySpec(tenant=tenant, sha256=key_digest(key), expires_at=expires_at, name=name)
    except ValueError:
        fail(f"--tenant {tenant!r}: 1 to 64 characters of A-Z a-z 0-9 . _ -")
    if store == "redis":
        try:
            asyncio.run(_store(settings, KeyRecord(tenant, expires_at, name), key))
        except StreamprocError as exc:
            fail(str(exc))
    if tenant not in settings.gateway_tenants():
        click.echo(
            f"streamproc: warning: tenant {tenant!r} is not in gateway.tenants (nor the "
            "workers' tenants.*): the gateway refuses its keys (403) until it is",
            err=True,
        )
    click.echo(f"key: {key}")
    click.echo(f"sha256: {spec.sha256}")
    if store == "redis":
        click.echo("stored in Redis: yes")
    else:
        entry = spec.model_dump(mode="json", exclude_defaults=True)
        click.echo(f"gateway.api_keys entry: {json.dumps(entry)}")


@api_key.command("revoke", cls=SettingsCommand, context_settings=CONTEXT)
@click.argument("sha256")
@settings_options(sections={"gateway", "ledger", "cache"})
def api_key_revoke(sha256: str, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Delete the key with digest SHA256 from Redis (configured keys: edit the config)."""
    settings = load(config_file, overrides)
    try:
        found = asyncio.run(_revoke(settings, sha256.strip().lower()))
    except StreamprocError as exc:
        fail(str(exc))
    if not found:
        fail(f"no key with sha256 {sha256} in Redis")
    click.echo("revoked")


async def _store(settings: Any, record: Any, key: str) -> None:
    from streamproc.gateway.auth import store_key

    async with _redis(settings) as redis:
        await store_key(redis, record, key)


async def _revoke(settings: Any, digest: str) -> bool:
    from streamproc.gateway.auth import revoke_key

    async with _redis(settings) as redis:
        return await revoke_key(redis, digest)


def _redis(settings: Any) -> Any:
    from streamproc.gateway.redis import GatewayRedis

    return GatewayRedis(
        settings.gateway_redis_url,
        prefix=settings.gateway.key_prefix,
        timeout_s=max(settings.gateway.redis_timeout_ms / 1000, 2.0),
    )
