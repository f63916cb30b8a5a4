"""streamproc: turn prompt events into short videos, at least once, with a semantic cache."""

__version__ = "0.1.0"
