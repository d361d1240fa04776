"""The database: one interface the pipeline and the routes use, and the backends behind it.

`interface.py` says what is asked of a database; `sqlite/` is the embedded default (one
file in the data folder), `postgres/` the database many processes share
(IMGSVC_DATABASE_URL). Every SQL statement lives under this package.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from ..config import Settings
from ..models import ImageStatus, ProductRecord
from .interface import Database, KeyTaken

__all__ = ["Database", "KeyTaken", "open_database", "products_from_thread", "url_pages"]


async def open_database(settings: Settings, *, serving: bool = True) -> Database:
    """The backend the settings name, opened and migrated; `serving` for the service itself,
    not a command that only reads or sets something beside it."""
    if settings.database_url is not None:
        # Imported only here: psycopg is needed only when a database URL is set.
        from .postgres import PostgresDatabase

        listen = serving and settings.database_listen
        return await PostgresDatabase.open(settings.database_url, listen=listen)
    from .sqlite import SqliteDatabase

    return await SqliteDatabase.open(settings.data_dir, serving=serving)


async def url_pages(
    db: Database, job_id: str, status: ImageStatus | None = None, page_size: int = 1000
) -> AsyncIterator[list[str]]:
    """A job's distinct URLs (with `status` only), a sorted page at a time."""
    after = ""
    while urls := await db.job_urls(job_id, after, page_size, status):
        yield urls
        after = urls[-1]


def products_from_thread(
    db: Database, job_id: str, loop: asyncio.AbstractEventLoop, page_size: int = 500
) -> Iterator[ProductRecord]:
    """Every product of a job in input order, for code running in a worker thread: each
    page is read on `loop` (which owns the connections) while the thread waits."""
    offset = 0
    while page := asyncio.run_coroutine_threadsafe(
        db.products(job_id, offset, page_size), loop
    ).result():
        yield from page
        offset = page[-1].seq + 1
