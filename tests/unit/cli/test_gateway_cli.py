"""`streamproc api-key create` prints a new key once and its digest; bad input is one line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from streamproc.cli import main
from streamproc.gateway.auth import key_digest


def test_a_created_key_prints_with_its_config_entry_and_is_never_repeated() -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["api-key", "create", "--tenant", "acme", "--expires-in", "90d"])
    second = runner.invoke(main, ["api-key", "create", "--tenant", "acme"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    lines = dict(line.split(": ", 1) for line in first.stdout.splitlines())
    assert lines["sha256"] == key_digest(lines["key"])
    entry = json.loads(lines["gateway.api_keys entry"])
    assert entry["tenant"] == "acme" and entry["sha256"] == lines["sha256"]
    assert entry["expires_at"].endswith("Z") or "+00:00" in entry["expires_at"]
    assert lines["key"] not in second.stdout
    # acme is in no gateway.tenants here: the command says the key would be refused.
    assert "not in gateway.tenants" in first.stderr


def test_bad_options_are_one_line_errors() -> None:
    runner = CliRunner()
    for args in (
        ["api-key", "create", "--tenant", "no spaces"],
        ["api-key", "create", "--tenant", "acme", "--expires-in", "soon"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 1
        assert result.stderr.startswith("streamproc: error: ")
        assert "Traceback" not in result.output
