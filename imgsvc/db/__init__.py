"""Every SQL statement of the service: schema, migrations and small async queries.

Two connections: one writer, whose transactions are serialised by a lock, and one reader
for the API, which WAL lets run while the writer commits, so polling never waits on work.
"""

from __future__ import annotations

from pathlib import Path

from .images import ImageQueries
from .jobs import JobQueries
from .rows import KeyTaken, in_seconds, now
from .schema import connect, migrate
from .webhooks import WebhookQueries

__all__ = ["Database", "KeyTaken", "in_seconds", "now"]

WRITER_CACHE_KIB = 32 * 1024


class Database(JobQueries, ImageQueries, WebhookQueries):
    """The service's one SQLite file."""

    @classmethod
    async def open(cls, path: Path) -> Database:
        writer = await connect(path)
        await writer.execute("PRAGMA journal_mode = WAL")
        await writer.execute("PRAGMA synchronous = FULL")
        # A 100,000-row upload builds three indexes in one transaction; with SQLite's 2 MiB
        # default cache it spills to the OS on every page (measured: 2.7 s to insert, 1.7 s
        # with 32 MiB).
        await writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        await migrate(writer)
        reader = await connect(path)
        await reader.execute("PRAGMA query_only = ON")
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()
