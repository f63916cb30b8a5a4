"""The lifecycle every long-lived component shares (STYLE rule 3).

An :class:`AsyncResource` opens its connections in ``start`` and closes them in ``stop``
(idempotent), and is an async context manager over the two, so the app composes components
with one ``AsyncExitStack``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self


class Resource(Protocol):
    """What every long-lived component offers: ``start``/``stop`` and ``async with``."""

    async def start(self) -> None:
        """Open connections; called once before use."""
        ...

    async def stop(self) -> None:
        """Close connections; safe to call more than once."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AsyncResource:
    """``start``/``stop`` plus the async-context-manager protocol; ``stop`` is idempotent."""

    async def start(self) -> None:
        """Open connections; called once before use."""

    async def stop(self) -> None:
        """Close connections; safe to call more than once."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
