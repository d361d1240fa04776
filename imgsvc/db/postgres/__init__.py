"""The many-process backend: a PostgreSQL database that any number of processes share.

Connections come from a pool (psycopg 3, async). Nothing is owned by one process: leases
are kept by the database's clock and run out on their own when a process dies, so opening
frees nothing. Migrations run under an advisory lock, so processes may start together.
"""

from __future__ import annotations

import asyncio

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from .claims import ClaimQueries
from .images import ImageQueries
from .jobs import JobQueries
from .listen import OUTBOX, WORK, stop
from .listen import listen as listening
from .schema import migrate
from .webhooks import WebhookQueries

__all__ = ["PostgresDatabase"]

POOL_SIZE = 10  # connections per process: the engine's workers, its renewals and the API
OPEN_TIMEOUT = 30.0  # seconds to reach the database at start before giving up


class PostgresDatabase(JobQueries, ImageQueries, ClaimQueries, WebhookQueries):
    """A PostgreSQL database shared by every imgsvc process that names it."""

    _listener: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, listen: bool = False) -> PostgresDatabase:
        """Connect (migrating the schema if needed) to the database at `url`; with
        `listen`, wake up when other processes announce work (listen.py)."""
        async with await AsyncConnection.connect(url) as db:
            await migrate(db)
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            open=False,
            name="imgsvc",
        )
        await pool.open(wait=True, timeout=OPEN_TIMEOUT)
        database = cls(pool)
        if listen:
            events = {WORK: database.work_written, OUTBOX: database.outbox_written}
            database._listener = asyncio.create_task(listening(url, events))
        return database

    async def close(self) -> None:
        await stop(self._listener)
        await self._pool.close()
