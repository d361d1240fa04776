"""Bytes in flight: image bodies held in memory, from their download to the end of their
compression, are counted against one limit for the whole process.

A download reserves what its body is likely to weigh before it asks the host, the size
the host announces once it answers, and what it got once it is read. So the number of
downloads in flight follows from the bytes: many while bodies are small or far away,
few while the compress threads have a backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from .. import metrics

FIRST_GUESS = 512 * 1024  # bytes a body is expected to weigh before any has been seen
LEARNING = 0.1  # weight of each new body in the running estimate


class ByteBudget:
    """At most `limit` bytes held at once, granted first come, first served."""

    def __init__(self, limit: int, largest: int) -> None:
        """`largest`: the most one body may weigh, at most `limit`."""
        self.limit = limit
        self.used = 0
        # Never above the largest body, so a reservation of it always fits in the end.
        self.estimate = float(min(FIRST_GUESS, largest))
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def hold(self) -> Held:
        """An empty holding, to be sized with `Held.fit`, given back when its block ends."""
        return Held(self)

    def learn(self, size: int) -> None:
        """A body of `size` bytes was read: the next downloads reserve more like it."""
        self.estimate += LEARNING * (size - self.estimate)

    async def _take(self, size: int) -> None:
        if not self._waiting and self.used + size <= self.limit:
            self._grant(size)
            return
        entry = (size, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].cancelled():
                self._waiting.remove(entry)
            else:  # granted, then cancelled before it could be used
                self._give(size)
            self._wake()
            raise

    def _give(self, size: int) -> None:
        self.used -= size
        metrics.FETCH_BYTES_IN_FLIGHT.set(self.used)
        self._wake()

    def _grant(self, size: int) -> None:
        self.used += size
        metrics.FETCH_BYTES_IN_FLIGHT.set(self.used)

    def _wake(self) -> None:
        while self._waiting and self.used + self._waiting[0][0] <= self.limit:
            size, future = self._waiting.popleft()
            self._grant(size)
            future.set_result(None)


class Held:
    """Bytes one image holds in a ByteBudget; an async context manager."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.size = 0

    async def fit(self, size: int) -> None:
        """Hold `size` bytes from now on. Growing waits until they fit, holding nothing
        meanwhile: whoever waits holds nothing, so waiting never deadlocks."""
        if size <= self.size:
            self._budget._give(self.size - size)
        else:
            self.release()
            await self._budget._take(size)
        self.size = size

    def release(self) -> None:
        """Hold nothing (the body was dropped)."""
        self._budget._give(self.size)
        self.size = 0

    async def __aenter__(self) -> Held:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
