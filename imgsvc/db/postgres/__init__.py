"""The many-process backend: a PostgreSQL database that any number of processes share.

Connections come from a pool (psycopg 3, async). Nothing is owned by one process: leases
are kept by the database's clock and run out on their own when a process dies, so opening
frees nothing. Migrations run under an advisory lock, so processes may start together.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from .claims import ClaimQueries
from .images import ImageQueries
from .jobs import JobQueries
from .schema import migrate
from .webhooks import WebhookQueries

__all__ = ["PostgresDatabase"]

POOL_SIZE = 10  # connections per process: the engine's workers, its renewals and the API
OPEN_TIMEOUT = 30.0  # seconds to reach the database at start before giving up


class PostgresDatabase(JobQueries, ImageQueries, ClaimQueries, WebhookQueries):
    """A PostgreSQL database shared by every imgsvc process that names it."""

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:
        """Connect (migrating the schema if needed) to the database at `url`."""
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
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()
