"""Local runs side by side: a local run whose metrics port nobody chose moves to a free port
when the default one is taken, and says where in one line; a chosen port, and any Kafka
worker's, still has to be free (tests/integration/ops/test_cli_metrics.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from streamproc.errors import ConfigError
from streamproc.health import OpsServer, Readiness
from streamproc.metrics import Metrics
from streamproc.settings import MetricsSettings, load_settings
from tests.integration.ops.scrape import get


@contextlib.contextmanager
def listening(port: int = 0) -> Iterator[int]:
    """A socket listening on 127.0.0.1:``port`` (0: any) for the duration: that port is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        yield int(taken.getsockname()[1])


async def test_a_taken_port_moves_to_a_free_one_and_one_warning_says_where() -> None:
    with listening() as port:
        server = OpsServer(Metrics(), Readiness(), host="127.0.0.1", port=port, fallback=True)
        with capture_logs() as logs:
            async with server:
                assert server.port is not None and server.port != port
                assert (await get(server.port, "/healthz"))[0] == 200
    [moved] = [x for x in logs if x["event"] == "ops_server_port_taken"]
    assert (moved["taken"], moved["port"], moved["log_level"]) == (port, server.port, "warning")


async def test_without_fallback_a_taken_port_stops_the_start() -> None:
    with listening() as port:
        server = OpsServer(Metrics(), Readiness(), host="127.0.0.1", port=port)
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await server.start()


def test_a_port_is_chosen_only_when_some_source_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMPROC_METRICS__PORT", raising=False)
    assert "port" not in load_settings().metrics.model_fields_set
    assert "port" in load_settings(metrics={"port": 9464}).metrics.model_fields_set
    monkeypatch.setenv("STREAMPROC_METRICS__PORT", "9464")
    assert "port" in load_settings().metrics.model_fields_set


@pytest.mark.slow
def test_a_local_run_beside_another_serves_its_metrics_on_a_free_port(tmp_path: Path) -> None:
    """The default port held by someone else (another run): the run starts anyway, on a
    free port, says so in one line, and ends normally."""
    default = MetricsSettings().port
    env = {k: v for k, v in os.environ.items() if k != "STREAMPROC_METRICS__PORT"}
    env.update(HF_HUB_OFFLINE="1", STREAMPROC_METRICS__HOST="127.0.0.1")
    command = [sys.executable, "-m", "streamproc", "run", "-i", "-", "--no-progress"]
    command += ["--cache-backend", "none", "--log-format", "json"]
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # already held elsewhere: taken all the same
            stack.enter_context(listening(default))
        proc = subprocess.run(
            command, cwd=tmp_path, input=b"", capture_output=True, env=env, timeout=600
        )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    lines = [json.loads(x) for x in proc.stderr.decode().splitlines() if x.startswith("{")]
    [moved] = [x for x in lines if x["event"] == "ops_server_port_taken"]
    [started] = [x for x in lines if x["event"] == "ops_server_started"]
    assert moved["taken"] == default and started["port"] == moved["port"] != default
