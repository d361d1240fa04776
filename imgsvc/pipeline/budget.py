"""Bytes in flight: image bodies held in memory, from their download to the end of their
compression, are counted against one limit for the whole process.

A download reserves what its body is likely to weigh before it asks the host, the size
the host announces once it answers, and what it got once it is read. So the number of
downloads in flight follows from the bytes: many while bodies are small or far away,
few while the compress threads have a backlog.

A body whose host has answered gets room before a request not yet sent: it holds a
connection and a turn of its host, and the compress threads need it next, while a
request's bytes are not needed for a round trip yet. Behind the requests, a body that
outgrew the running estimate (about half of them) would wait for every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

from .. import metrics

FIRST_GUESS = 512 * 1024  # bytes a body is expected to weigh before any has been seen
LEARNING = 0.1  # weight of each new body in the running estimate

_Waiter = tuple[int, asyncio.Future[None]]  # bytes wanted, and set once they are held


class ByteBudget:
    """At most `limit` bytes held at once: answered bodies first, then requests, each
    first come, first served."""

    def __init__(self, limit: int, largest: int) -> None:
        """`largest`: the most one body may weigh, at most `limit`."""
        self.limit = limit
        self.used = 0
        # Never above the largest body, so a reservation of it always fits in the end.
        self.estimate = float(min(FIRST_GUESS, largest))
        self._answered: deque[_Waiter] = deque()
        self._requests: deque[_Waiter] = deque()

    def hold(self) -> Held:
        """An empty holding, to be sized with `Held.fit`, given back when its block ends."""
        return Held(self)

    def learn(self, size: int) -> None:
        """A body of `size` bytes was read: the next downloads reserve more like it."""
        self.estimate += LEARNING * (size - self.estimate)

    async def _take(self, size: int, *, answered: bool, returned: int) -> None:
        """Hold `size` more bytes once they fit, after giving back `returned`: both in one
        step, so that whoever waits behind this holder cannot take what it gave back."""
        self.used -= returned
        queued_ahead = bool(self._answered) or (not answered and bool(self._requests))
        if not queued_ahead and self.used + size <= self.limit:
            self.used += size
            metrics.FETCH_BYTES_IN_FLIGHT.set(self.used)
            return
        waiting = self._answered if answered else self._requests
        entry = (size, asyncio.get_running_loop().create_future())
        waiting.append(entry)
        self._wake()
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].cancelled():  # still waiting, unless _wake passed over it since
                with contextlib.suppress(ValueError):
                    waiting.remove(entry)
            else:  # granted, then cancelled before it could be used
                self.used -= size
            self._wake()
            raise

    def _give(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        for waiting in (self._answered, self._requests):
            while waiting and (
                waiting[0][1].cancelled() or self.used + waiting[0][0] <= self.limit
            ):
                size, future = waiting.popleft()
                # A cancelled waiter whose task has not run since is passed over.
                if not future.cancelled():
                    self.used += size
                    future.set_result(None)
            if waiting:  # nobody passes the first who waits for room
                break
        metrics.FETCH_BYTES_IN_FLIGHT.set(self.used)


class Held:
    """Bytes one image holds in a ByteBudget; an async context manager."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.size = 0

    async def fit(self, size: int, *, answered: bool = False) -> None:
        """Hold `size` bytes from now on. Growing waits until they fit, holding nothing
        meanwhile: whoever waits holds nothing, so waiting never deadlocks. `answered`:
        the body is on its way (its host answered), so it goes before requests."""
        if size <= self.size:
            self._budget._give(self.size - size)
        else:
            returned, self.size = self.size, 0
            await self._budget._take(size, answered=answered, returned=returned)
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
