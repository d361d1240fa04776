"""The embedded backend: one SQLite file in the data folder, owned by one process.

Two connections: one writer, whose transactions are serialised by a lock, and one reader
for the API, which WAL lets run while the writer commits, so polling never waits on work.
"""

from __future__ import annotations

from pathlib import Path

from .claims import ClaimQueries
from .images import ImageQueries
from .jobs import JobQueries
from .schema import connect, migrate
from .webhooks import WebhookQueries

__all__ = ["SqliteDatabase"]

FILE_NAME = "imgsvc.db"
# The file that held the generated webhook secret before the database did.
LEGACY_SECRET_FILE = "webhook-secret"  # noqa: S105 (a file name)
WRITER_CACHE_KIB = 32 * 1024


class SqliteDatabase(JobQueries, ImageQueries, ClaimQueries, WebhookQueries):
    """The service's one SQLite file."""

    @classmethod
    async def open(cls, data_dir: Path, *, serving: bool = True) -> SqliteDatabase:
        """Open (creating and migrating) the data folder's database; `serving`: as the one
        process that owns the folder, which frees the leases a process that died held."""
        path = data_dir / FILE_NAME
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
        database = cls(writer, reader)
        if serving:
            await database.forget_leases()
        legacy = data_dir / LEGACY_SECRET_FILE
        if legacy.is_file():  # receivers already trust it: it stays the secret
            await database.webhook_secret(lambda: legacy.read_text(encoding="ascii").strip())
        return database

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()
