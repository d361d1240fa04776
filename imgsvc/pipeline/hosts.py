"""Politeness towards image hosts: a few connections to each at most, and a host that asked
for a pause (429 or 503 with Retry-After) gets it, all its images waiting together, while
other hosts go on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from yarl import URL

# Seconds an image waits for a paused host at most: two windows of a per-minute rate
# limit. A longer Retry-After asks for hours (a quota spent, a host being moved), which
# waiting would only hide: the host's images fail instead, naming the time it gave.
LONGEST_PAUSE = 120.0

Host = tuple[str, int]  # a URL's host name and port: a server, as far as politeness goes


class HostPaused(Exception):
    """The host asked for a pause longer than an image waits (LONGEST_PAUSE)."""

    def __init__(self, host: Host, seconds: float) -> None:
        moment = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + seconds))
        super().__init__(
            f"{host[0]} asked for no requests until {moment} (Retry-After), longer than "
            f"the {LONGEST_PAUSE:g} s an image waits for its host"
        )


@dataclass
class _HostState:
    slots: asyncio.Semaphore
    resume_at: float = 0.0  # loop time before which nothing is sent to this host
    # Turns held or waited for. The state is dropped when none is left, unless the host is
    # paused: then it stays, one small object per such host, so the pause still holds.
    users: int = 0


class HostGate:
    """Gives turns to talk to a host: `per_host` at once per host, none while it is paused."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._hosts: dict[Host, _HostState] = {}

    @staticmethod
    def host_of(url: URL) -> Host:
        return (url.host or "", url.port or 0)

    @asynccontextmanager
    async def turn(self, url: URL) -> AsyncIterator[None]:
        """Hold one of the connections `url`'s host may have while inside; waits while the
        host is paused or busy, and raises HostPaused if the pause is longer than
        LONGEST_PAUSE."""
        key = self.host_of(url)
        state = self._hosts.get(key)
        if state is None:
            state = self._hosts[key] = _HostState(asyncio.Semaphore(self._per_host))
        state.users += 1
        try:
            await self._wait(key, state)
            try:
                yield
            finally:
                state.slots.release()
        finally:
            state.users -= 1
            if not state.users and state.resume_at <= _now():
                del self._hosts[key]

    def pause(self, url: URL, seconds: float) -> None:
        """Send nothing to `url`'s host for `seconds` (its Retry-After), from now."""
        state = self._hosts.get(self.host_of(url))
        if state is not None:  # always so: the caller holds a turn of this host
            state.resume_at = max(state.resume_at, _now() + seconds)

    async def _wait(self, key: Host, state: _HostState) -> None:
        while True:
            while (left := state.resume_at - _now()) > 0:
                if left > LONGEST_PAUSE:
                    raise HostPaused(key, left)
                await asyncio.sleep(left)
            await state.slots.acquire()
            if state.resume_at <= _now():
                return
            state.slots.release()  # the host was paused while this turn waited for a slot


def _now() -> float:
    return asyncio.get_running_loop().time()
