"""The operations HTTP server: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

* ``/healthz`` answers 200 as long as the event loop runs (a liveness probe: restart the
  process when it stops answering).
* ``/readyz`` runs every registered readiness check and answers 200 with a JSON object of
  their results only when all pass, else 503 naming the failed ones (a readiness probe: send
  no traffic, or do not count the worker as up, until it passes). The app registers the model
  (loaded and warmed), the broker, the cache and the object store; a component that talks to
  a service implements :class:`Probed`, embedded ones — the JSONL transport, the in-process
  cache, the local store — do not and are always reachable.
* ``/metrics`` is the Prometheus exposition of :class:`~streamproc.metrics.Metrics`.

The server is an async context manager; the app enters it first, so probes answer (503)
while the model still loads.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from streamproc.errors import ConfigError
from streamproc.metrics import Metrics
from streamproc.resource import AsyncResource

if TYPE_CHECKING:
    from aiohttp import web

log = structlog.get_logger(__name__)

#: A readiness check: returns ``(ok, detail)``; raising counts as failed.
Check = Callable[[], Awaitable[tuple[bool, str]]]


@runtime_checkable
class Probed(Protocol):
    """A component whose service can be unreachable (broker, Redis, S3)."""

    async def readiness(self) -> tuple[bool, str]:
        """Whether its service answers now, and a short detail; called at every probe."""
        ...


def readiness_of(component: object, embedded: str) -> Check:
    """The readiness check of ``component``: its own when it is :class:`Probed`, else one
    that always passes with the detail ``embedded``."""

    async def check() -> tuple[bool, str]:
        if isinstance(component, Probed):
            return await component.readiness()
        return True, embedded

    return check


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one readiness check."""

    name: str
    ok: bool
    detail: str


class Readiness:
    """Named readiness checks; all must pass for the worker to be ready. Each runs at every
    probe, bounded by ``timeout_s``."""

    def __init__(self, *, timeout_s: float = 3.0) -> None:
        self._checks: dict[str, Check] = {}
        self._timeout_s = timeout_s

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) the check ``name``."""
        self._checks[name] = check

    def add_flag(self, name: str, detail_false: str) -> Callable[..., None]:
        """Register a check that passes once the returned setter is called with True (and,
        optionally, the detail to report while it passes)."""
        state: dict[str, Any] = {"ok": False, "detail": "ok"}

        async def check() -> tuple[bool, str]:
            return (True, state["detail"]) if state["ok"] else (False, detail_false)

        def set_flag(value: bool, detail: str = "ok") -> None:
            state["ok"] = value
            state["detail"] = detail

        self.add(name, check)
        return set_flag

    async def run(self) -> list[CheckResult]:
        """Run every check concurrently, each bounded by a timeout."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._one(n, self._checks[n]) for n in names))
        return list(outcomes)

    async def _one(self, name: str, check: Check) -> CheckResult:
        try:
            async with asyncio.timeout(self._timeout_s):
                ok, detail = await check()
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {self._timeout_s:g} s")
        except Exception as exc:
            return CheckResult(name, False, repr(exc)[:200])
        return CheckResult(name, ok, detail)


class OpsServer(AsyncResource):
    """Serves the three endpoints on ``host:port`` until stopped (port 0 picks a free one).

    A port that cannot be bound is a :class:`ConfigError`, unless ``fallback``: a port in
    use is then replaced by a free one, and one warning (``ops_server_port_taken``) says
    which.
    """

    def __init__(
        self,
        metrics: Metrics,
        readiness: Readiness,
        *,
        host: str = "0.0.0.0",
        port: int = 9464,
        fallback: bool = False,
    ) -> None:
        self._metrics = metrics
        self._readiness = readiness
        self._host = host
        self._port = port
        self._fallback = fallback
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Bind and serve; the bound port is :attr:`port`."""
        if self._runner is not None:
            return
        # Imported here: a worker run with metrics off does not load aiohttp.
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/healthz", self._handle_health)
        app.router.add_get("/readyz", self._handle_ready)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            if not (self._fallback and exc.errno == errno.EADDRINUSE and self._port):
                await runner.cleanup()
                raise ConfigError(
                    f"cannot serve metrics on {self._host}:{self._port}: {exc.strerror}"
                ) from None
            site = web.TCPSite(runner, self._host, 0, reuse_address=True)
            await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._port
        self._runner = runner
        if self.port != self._port and self._port:
            log.warning("ops_server_port_taken", host=self._host, taken=self._port, port=self.port)
        log.info("ops_server_started", host=self._host, port=self.port)

    async def stop(self) -> None:
        """Stop serving; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = await self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _handle_health(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"status": "alive"})

    async def _handle_ready(self, request: web.Request) -> web.Response:
        from aiohttp import web

        results = await self._readiness.run()
        ready = all(r.ok for r in results)
        self._metrics.ready.set(1 if ready else 0)
        body = {
            "ready": ready,
            "checks": {r.name: {"ok": r.ok, "detail": r.detail} for r in results},
            "failed": [r.name for r in results if not r.ok],
        }
        return web.Response(
            text=json.dumps(body),
            status=200 if ready else 503,
            content_type="application/json",
        )
