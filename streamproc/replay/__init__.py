"""``streamproc replay``: re-run a range of the prompts topic beside the live workers.

:mod:`~streamproc.replay.bounds` parses ``--from``/``--to``, :mod:`~streamproc.replay.checkpoint`
keeps the resumable progress, :mod:`~streamproc.replay.rate` paces the input,
:mod:`streamproc.bus.kafka_replay` reads the range, :mod:`~streamproc.replay.run` runs it
through the live worker's processor (or counts it, ``--dry-run``). See ``docs/replay.md``.
"""
