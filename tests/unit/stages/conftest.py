"""Shared parts for the stage tests: real settings and admitted requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from streamproc.bus.base import Partition, Record
from streamproc.events import utcnow
from streamproc.settings import Settings
from streamproc.stages.admit import Admit
from streamproc.stages.base import Admitted, Flight, Trace
from tests.conftest import MakeSettings
from tests.helpers import event

PARTITION = Partition("prompts", 0)

#: Builds the admitted request of an event (fields as for ``tests.helpers.event``).
Request = Callable[..., Admitted]


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@pytest.fixture
def admitted(settings: Settings) -> Request:
    admit = Admit(settings, model_id="tiny-wan", scheduler="unipc")

    def make(event_id: str, prompt: str = "a red fox in the snow", **fields: Any) -> Admitted:
        value = json.dumps(event(event_id, prompt, **fields)).encode()
        decoded = admit.decode(Record(value, PARTITION, 0), Trace(admitted=0.0))
        return admit.request(decoded, utcnow())

    return make


def flight_of(value: bytes, offset: int = 0, partition: Partition = PARTITION) -> Flight:
    """A flight over a record of ``value``."""
    return Flight(Record(value=value, partition=partition, offset=offset, key=b"k"))
