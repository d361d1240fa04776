"""An SQLite file written before a migration that rebuilds a table opens with every job and
image it held, and the service keeps working on them."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imgsvc.db.sqlite import FILE_NAME, SqliteDatabase
from imgsvc.db.sqlite.schema import MIGRATIONS
from imgsvc.models import ImageStatus

from ..conftest import batches
from .test_contract import new_job, products_with

pytestmark = pytest.mark.anyio

# The migration that numbers jobs and rebuilds the images table under that number.
NUMBERING = next(n for n, script in enumerate(MIGRATIONS) if "numbered_images" in script)


def earlier_file(path: Path) -> None:
    """A file at the schema before the numbering: a finished job and one still running."""
    with closing(sqlite3.connect(path)) as db:
        for script in MIGRATIONS[:NUMBERING]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {NUMBERING}")
        for job_id, status in (("old", "completed"), ("running", "processing")):
            db.execute(
                "INSERT INTO jobs (id, status, message, created_at, updated_at, completed_at, "
                "base_url, quality, format, header, total_products, total_images) "
                "VALUES (?, ?, '', '2025-01-01T00:00:00.000Z', "
                "'2025-01-01T00:00:00.000Z', '2025-01-01T00:00:01.000Z', 'http://127.0.0.1', "
                "50, 'jpeg', '[]', 1, 2)",
                (job_id, status),
            )
            db.execute(
                "INSERT INTO products VALUES (?, 0, 2, '1', 'SKU1', '[]')",
                (job_id,),
            )
        db.executemany(
            "INSERT INTO images (job_id, product_seq, position, url, status, output_name, slice) "
            "VALUES (?, 0, ?, ?, ?, ?, 0)",
            [
                ("old", 0, "http://h/a.jpg", "succeeded", "a.jpg"),
                ("old", 1, "http://h/b.jpg", "failed", None),
                ("running", 0, "http://h/a.jpg", "succeeded", "c.jpg"),
                ("running", 1, "http://h/d.jpg", "pending", None),
            ],
        )
        db.execute("INSERT INTO work (job_id, kind, slice) VALUES ('running', 'slice', 0)")
        db.commit()


async def test_images_stored_before_jobs_were_numbered_stay_with_their_jobs(
    tmp_path: Path,
) -> None:
    earlier_file(tmp_path / FILE_NAME)
    database = await SqliteDatabase.open(tmp_path)
    try:
        (old,) = await database.products("old", 0, 10)
        assert [(i.url, i.status, i.output_name) for i in old.images] == [
            ("http://h/a.jpg", ImageStatus.SUCCEEDED, "a.jpg"),
            ("http://h/b.jpg", ImageStatus.FAILED, None),
        ]
        assert await database.slice_urls("running", 0, "", 10) == ["http://h/d.jpg"]
        # A job stored afterwards takes a number of its own.
        new = await database.create_job(new_job([]), batches(products_with(("http://h/a.jpg",))))
        assert await database.slice_urls(new.id, 0, "", 10) == ["http://h/a.jpg"]
        assert await database.delete_job("old", datetime.now(UTC))
        assert await database.products("old", 0, 10) == []
        (running,) = await database.products("running", 0, 10)
        assert [i.status for i in running.images] == [ImageStatus.SUCCEEDED, ImageStatus.PENDING]
    finally:
        await database.close()
    with closing(sqlite3.connect(tmp_path / FILE_NAME)) as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone() == (3,)
