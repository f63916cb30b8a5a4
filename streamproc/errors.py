"""The one exception tree of streamproc.

::

    StreamprocError
    ├── ConfigError              settings or flags that cannot work together
    │   └── ReplayRangeError     a replay range that cannot be resolved (bad bound, partition)
    ├── InvalidEventError        bytes that are not a valid prompt event (dead-lettered)
    ├── EventRefused             a valid event this worker will not run: expired, or over its
    │                            tenant's quota (dead-lettered with the reason)
    ├── EventCancelled           withdrawn by a control event (answered 'cancelled')
    ├── GenerationError          the pipeline failed for a batch or an event
    │   └── DeadlineExceeded     an event's deadline passed before it could run
    ├── GeneratorLost            the generator can run nothing more (a context-parallel rank
    │                            died): the worker stops, its batches stay unfinished
    ├── TransientError           an outage: retried with backoff, the record stays unfinished
    │   ├── StorageError         the object store did not keep or address a video
    │   └── TransportError       a source or sink lost its connection
    └── PermanentError           retrying cannot help; never retried as an outage
        ├── RecordRejected       this one record cannot be kept (too large): it dead-letters
        └── ServiceRefused       the service refuses all work (credentials, missing bucket or
                                 topic): at start the worker exits, while running it faults

Errors are classified once, at the seam where they enter (``storage/s3faults.py``,
``bus/kafka.py``, the Redis store); the rest of the code sees only this tree. One retry policy
acts on :class:`TransientError`; a :class:`PermanentError` is never retried as an outage.

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


class EventRefused(StreamprocError):
    """A valid event this worker will not run; it dead-letters with ``reason`` (``expired``,
    ``quota_exceeded``), a :class:`streamproc.events.DeadLetterReason` value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EventCancelled(StreamprocError):
    """The event was withdrawn by a control event; its outcome is a 'cancelled' result.

    ``stage`` says where the cancel found it (admission, queued, generating, generated)."""

    def __init__(self, reason: str | None, stage: str) -> None:
        super().__init__(f"cancelled at {stage}" + (f": {reason}" if reason else ""))
        self.reason = reason
        self.stage = stage


class GenerationError(StreamprocError):
    """The video pipeline raised for a batch or a single event."""


class DeadlineExceeded(GenerationError):
    """The event's ``deadline`` passed while it waited for the GPU."""


class GeneratorLost(StreamprocError):
    """The generator cannot run any batch again: a rank of a context-parallel worker died,
    or a parallel call failed and left the ranks out of step.

    Not a fault of the records: the batch in flight is abandoned (uncommitted, delivered again
    to the partition's next owner), never dead-lettered; the worker stops (exit status 5).
    """


class TransientError(StreamprocError):
    """An outage that may heal: retried with backoff; the record stays unfinished meanwhile."""


class StorageError(TransientError):
    """The object store could not keep or address a video; the event stays unfinished."""


class TransportError(TransientError):
    """A source or sink could not read, publish or commit; the event stays unfinished."""


class PermanentError(StreamprocError):
    """A fault that retrying cannot mend. ``component`` names the part that met it
    (``store``, ``sink``, ``source``, ``cache``, ``encoder``)."""

    def __init__(self, message: str, *, component: str) -> None:
        super().__init__(message)
        self.component = component


class RecordRejected(PermanentError):
    """This one record's output cannot be kept (e.g. larger than the sink accepts).

    The record ends as a dead letter; other records are unaffected.
    """


class ServiceRefused(PermanentError):
    """A service refuses every request of this worker: denied credentials, a missing bucket or
    topic, an authorisation failure.

    At start the worker exits non-zero with this line; while running the worker *faults*:
    readiness fails naming the cause, consumption pauses, the records that met it stay
    unfinished (delivered again) and the worker exits non-zero after ``faults.exit_after_s``.
    """
