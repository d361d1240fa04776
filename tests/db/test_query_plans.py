"""Every statement a job runs finds its rows through an index, so work per image stays flat
however many images a job has. Without statistics SQLite may pick a worse index; this
test reads the plans SQLite chooses for the statements the service actually ran."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ImageHost, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement (values filled in) run by the connections opened from now on."""
    seen: list[str] = []
    connect: Callable[..., sqlite3.Connection] = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        connection.set_trace_callback(seen.append)
        return connection

    monkeypatch.setattr(sqlite3, "connect", traced)
    return seen


async def run_a_job(data: Path, host: ImageHost) -> None:
    """A job through the API: repeated and failing URLs, then every per-job read and a retry."""
    good = [host.add(f"/{n}.jpg", jpeg_bytes(40, 30)) for n in range(3)]
    missing = host.url("/missing.jpg")
    rows = [f"{n},SKU{n},{good[n % 3]},{good[(n + 1) % 3]},{missing}" for n in range(1, 7)]
    async with running_service(settings_for(data)) as service:
        _, answer = await service.upload("S. No.,Product Name,Input Image Urls\n" + "\n".join(rows))
        job = answer["request_id"]
        assert (await service.wait(job))["status"] == "completed"
        for path in (f"/api/details/{job}", f"/api/download/{job}", "/api/jobs"):
            assert (await service.get(path))[0] == 200
        assert (await service.post(f"/api/retry/{job}"))[0] == 202
        assert (await service.wait(job))["progress"]["failed_images"] == 6


def plans(database: Path, statements: list[str]) -> dict[str, list[str]]:
    """SQLite's query plan for each distinct data statement, read on the job's database."""
    connection = sqlite3.connect(database)
    try:
        found = {}
        for statement in dict.fromkeys(statements):
            if statement.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "INSERT"):
                try:
                    rows = connection.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
                except sqlite3.OperationalError as exc:
                    # A migration's copy into a table that a later step of it renamed.
                    if "no such table" not in str(exc):
                        raise
                    continue
                found[statement] = [row[-1] for row in rows]
        return found
    finally:
        connection.close()


async def test_a_jobs_rows_are_found_through_indexes(
    tmp_path: Path, image_host: ImageHost, statements: list[str]
) -> None:
    await run_a_job(tmp_path / "data", image_host)
    found = plans(tmp_path / "data" / "imgsvc.db", statements)
    # Images and products grow with a job: each step on them searches by the job at least.
    steps = [(sql, step) for sql, plan in found.items() for step in plan]
    on_rows = [(sql, s) for sql, s in steps if s.split()[1:2] in (["images"], ["products"])]
    assert len(on_rows) > 10
    for sql, step in on_rows:
        assert step.startswith("SEARCH"), (sql, step)
        assert "job_id=?" in step or "job_number=?" in step, (sql, step)
    # An outcome is stored for every occurrence of its URL: one index search per URL. The
    # primary key's job_id prefix, which SQLite picks when left to itself, visits every
    # image of the job for each URL: 12 ms a URL at 100,000 images, 20 minutes in all.
    by_url = [(sql, s) for sql, s in on_rows if " url = " in sql]
    assert len(by_url) >= 4  # three images that succeeded, one that failed
    for sql, step in by_url:
        assert "USING INDEX images_by_url (job_number=? AND url=?)" in step, (sql, step)
    # Earlier outputs grow with every job of an owner: a slice's page of URLs is looked up
    # by the whole key, the owner through the job's own row.
    reuse = [(sql, s) for sql, s in steps if "earlier_outputs" in sql]
    assert any(" earlier_outputs " in s for _, s in reuse)
    for sql, step in reuse:
        assert step.startswith(("SEARCH", "SCALAR SUBQUERY", "LIST SUBQUERY")), (sql, step)
