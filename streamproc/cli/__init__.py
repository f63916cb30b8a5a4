"""The ``streamproc`` command.

Settings are read here, once: flags override ``STREAMPROC_*`` environment variables, which
override the ``--config`` file, which overrides the defaults. The flags of ``run``, ``replay``
and the other commands that take settings are generated from the settings model
(:mod:`streamproc.cli.options`); each command module holds only that command's own logic.
Errors are printed as one line (exit status 1), never as a traceback.
"""

from __future__ import annotations

import click

from streamproc import __version__
from streamproc.cli.common import CONTEXT
from streamproc.cli.gateway import api_key, gateway
from streamproc.cli.replay import replay
from streamproc.cli.run import run, summary_line
from streamproc.cli.tools import config, produce, schemas, storage, topics

__all__ = ["main", "summary_line"]


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="streamproc")
def main() -> None:
    """Turn prompt events into short videos.

    Reads prompt events (JSON lines), answers repeats from a cache, batches the rest for a
    resident diffusers Wan2.2 pipeline, stores each MP4 and writes one result event per
    prompt (or a dead letter for input it cannot use).

    Start with:  streamproc produce --count 20 > prompts.jsonl && streamproc run -i prompts.jsonl
    """


for command in (run, produce, topics, schemas, config, storage, replay, gateway, api_key):
    main.add_command(command)
