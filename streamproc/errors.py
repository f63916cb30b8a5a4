"""The one exception tree of streamproc.

::

    StreamprocError
    ├── ConfigError              settings or flags that cannot work together
    │   └── ReplayRangeError     a replay range that cannot be resolved (bad bound, partition)
    ├── InvalidEventError        bytes that are not a valid prompt event (dead-lettered)
    ├── GenerationError          the pipeline failed for a batch or an event
    │   └── DeadlineExceeded     an event's deadline passed before it could run
    ├── StorageError             the object store did not keep a video (transient: retried)
    └── TransportError           a source or sink lost its connection (transient: retried)

Every error that reaches a user says what went wrong in one line; the CLI prints that line
instead of a traceback.
"""

from __future__ import annotations


class StreamprocError(Exception):
    """Root of every error raised on purpose by streamproc."""


class ConfigError(StreamprocError):
    """Settings, a config file or CLI flags that cannot work (raised before any event is read)."""


class ReplayRangeError(ConfigError):
    """A replay bound or partition list that cannot work; ``option`` names the CLI flag."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class InvalidEventError(StreamprocError):
    """An input record that cannot become a ``PromptEvent``; it goes to the dead letters.

    ``reason`` is one of :class:`streamproc.events.DeadLetterReason`.
    """

    def __init__(self, reason: str, detail: str, error_class: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.error_class = error_class or type(self).__name__


class GenerationError(StreamprocError):
    """The video pipeline raised for a batch or a single event."""


class DeadlineExceeded(GenerationError):
    """The event's ``deadline`` passed while it waited for the GPU."""


class StorageError(StreamprocError):
    """The object store could not keep or address a video; the event stays unfinished."""


class TransportError(StreamprocError):
    """A source or sink could not read, publish or commit; the event stays unfinished."""
