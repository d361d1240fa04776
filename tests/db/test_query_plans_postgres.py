"""On PostgreSQL too, every statement a job runs per image or per page finds its rows
through an index, so work per image stays flat however many images the database holds.
The statements are the ones the service ran for a job of 2,000 URLs; their plans are read
with the values they ran with, after ANALYZE, in a database that holds other jobs too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ..conftest import ImageHost, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio

URLS = 2000  # distinct URLs, four slices; most of them missing, which is quick
DATA_STATEMENTS = ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")
OTHER_JOBS = 9
OTHER_OWNERS = 5000  # the earlier outputs of other owners: far more than a job's own
# Copies of a table's rows under other job ids: the jobs that ran before this one, half of
# them still running (their images pending, as most of a running job's are). A job that is
# the whole table would make reading all of it the planner's right choice.
COPY_ROWS = sql.SQL("""
INSERT INTO {table} SELECT (jsonb_populate_record(t, jsonb_build_object(
    {key_name}, t.{key} || '-' || n, 'idempotency_key', NULL,
    'status', CASE WHEN n % 2 = 0 THEN 'pending' ELSE to_jsonb(t) ->> 'status' END))).*
FROM {table} AS t, generate_series(1, {copies}) AS n
""")


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every statement sent through psycopg from now on, with its values (an executemany's
    first ones)."""
    seen: list[tuple[str, Any]] = []
    execute, executemany = psycopg.AsyncCursor.execute, psycopg.AsyncCursor.executemany

    async def traced(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        seen.append((str(query), params))
        return await execute(cursor, query, params, **kwargs)

    async def traced_many(cursor: Any, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        params_seq = list(params_seq)
        seen.extend((str(query), params) for params in params_seq[:1])
        return await executemany(cursor, query, params_seq, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", traced)
    monkeypatch.setattr(psycopg.AsyncCursor, "executemany", traced_many)
    return seen


async def run_a_job(data: Path, url: str, host: ImageHost) -> None:
    """A job of two images a product over 2,000 URLs, every per-job read, and a retry."""
    good = host.add("/good.jpg", jpeg_bytes(40, 30))
    urls = [good, *(host.url(f"/missing/{n}.jpg") for n in range(URLS - 1))]
    rows = [f"{n},SKU{n},{urls[n]},{urls[(n * 7 + 1) % URLS]}" for n in range(URLS)]
    async with running_service(settings_for(data, database_url=url)) as service:
        _, answer = await service.upload("S. No.,Product Name,Input Image Urls\n" + "\n".join(rows))
        job = answer["request_id"]
        assert (await service.wait(job))["status"] == "completed"
        for path in (f"/api/details/{job}", f"/api/download/{job}", "/api/jobs"):
            assert (await service.get(path))[0] == 200
        assert (await service.post(f"/api/retry/{job}"))[0] == 202
        assert (await service.wait(job))["progress"]["failed_images"] == 2 * URLS - 2


def scans(plan: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """Each (node type, table, index or "") of a JSON plan that reads a table."""
    if "Relation Name" in plan and plan["Node Type"] != "ModifyTable":  # writes what was read
        yield plan["Node Type"], plan["Relation Name"], plan.get("Index Name", "")
    for child in plan.get("Plans", ()):
        yield from scans(child)


def plans(url: str, statements: list[tuple[str, Any]]) -> dict[str, list[tuple[str, str, str]]]:
    """The planner's scans for each distinct data statement, with the values it ran with."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as db:
        for table, key, copies in (
            ("jobs", "id", OTHER_JOBS),
            ("products", "job_id", OTHER_JOBS),
            ("images", "job_id", OTHER_JOBS),
            ("earlier_outputs", "owner", OTHER_OWNERS),
        ):
            db.execute(
                COPY_ROWS.format(
                    table=sql.Identifier(table),
                    key=sql.Identifier(key),
                    key_name=sql.Literal(key),
                    copies=sql.Literal(copies),
                )
            )
        db.execute("ANALYZE")
        for query, params in statements:
            if query.split(None, 1)[0].upper() in DATA_STATEMENTS and query not in found:
                row = db.execute(f"EXPLAIN (FORMAT JSON) {query}", params).fetchone()
                assert row is not None
                document = json.loads(row[0]) if isinstance(row[0], str) else row[0]
                found[query] = list(scans(document[0]["Plan"]))
    return found


async def test_a_jobs_rows_are_found_through_indexes(
    tmp_path: Path, image_host: ImageHost, postgres_url: str, statements: list[tuple[str, Any]]
) -> None:
    await run_a_job(tmp_path / "data", postgres_url, image_host)
    found = plans(postgres_url, statements)
    # Images and products grow with every job: no statement the job ran reads all of them.
    on_rows = [
        (query, step)
        for query, steps in found.items()
        for step in steps
        if step[1] in ("images", "products")
    ]
    assert len(on_rows) >= 6
    for query, (node, table, _) in on_rows:
        assert node != "Seq Scan", (query, table)
    # An outcome is stored for every occurrence of its URL: one index search per URL. The
    # index of pending images would visit every pending image of the job for each URL.
    by_url = [(query, step) for query, step in on_rows if " url = " in query]
    assert by_url
    for query, (node, _, index) in by_url:
        assert index == "images_by_url", (query, node, index)
    # Earlier outputs grow with every owner's jobs: a slice's page of URLs is one search of
    # their key (the owner is read from the job's own row, by its primary key).
    reuse = [
        (q, step) for q, steps in found.items() for step in steps if step[1] == "earlier_outputs"
    ]
    assert reuse
    for query, (node, _, index) in reuse:
        assert node != "Seq Scan", (query, index)
