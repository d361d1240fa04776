"""Large uploads: the `--rows` CSV on each database, the largest the limits allow, and how
fast images refused before any download fail.

`upload`: the `--rows` CSV (benchkit.large_upload) on SQLite and a folder, then on
PostgreSQL and a bucket (started as the tests start theirs, tests/backends.py).

`largest`: a CSV just under IMGSVC_MAX_UPLOAD_BYTES (50 MiB), 100 URLs a row, each distinct
and each refused without a download: IPv4 and IPv6 loopback addresses (private URLs not
allowed), IPv4 in a numeric spelling, and hosts yarl cannot read. It measures
the time to the 202, the service's peak memory, other requests' latency meanwhile, and the
rate at which the images are recorded as failed until the job is terminal.

    python scripts/bench.py --only upload,largest
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from benchkit import (
    Bench,
    Row,
    Server,
    free_port,
    large_upload,
    percentile,
    poll,
    upload_watched,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/
from tests.backends import postgres_server, s3_server

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
URLS_PER_ROW = 100


def refused_url(n: int) -> str:
    """A distinct URL that fails without a connection, of four kinds in turn."""
    kind = n % 4
    if kind == 0:
        return f"http://127.0.0.1/i/{n}.jpg"  # loopback: blocked_address
    if kind == 1:
        return f"http://[::1]/i/{n}.jpg"  # IPv6 loopback: blocked_address
    if kind == 2:
        return f"http://2130706433/i/{n}.jpg"  # 127.0.0.1 spelled as one number
    return f"http://a\\b/i/{n}.jpg"  # yarl refuses it: invalid_url


def largest_csv(limit: int) -> tuple[bytes, int]:
    """Rows of 100 refused URLs while the file stays within `limit` bytes; and its rows."""
    lines = ["S. No.,Product Name,Input Image Urls"]
    size, rows, n = len(lines[0]) + 1, 0, 0
    while True:
        urls = " ".join(refused_url(n + i) for i in range(URLS_PER_ROW))
        line = f'{rows + 1},SKU{rows + 1},"{urls}"'
        if size + len(line) + 1 > limit:
            break
        lines.append(line)
        size, rows, n = size + len(line) + 1, rows + 1, n + URLS_PER_ROW
    return ("\n".join(lines) + "\n").encode(), rows


async def uploads(bench: Bench) -> list[Row]:
    """The `--rows` upload on SQLite and a folder, then on PostgreSQL and a bucket."""
    on_sqlite = await large_upload(replace(bench, folder=bench.folder / "sqlite"))
    with postgres_server() as postgres, s3_server() as s3:
        env = s3.bucket().environ() | {"IMGSVC_DATABASE_URL": postgres.url(postgres.database())}
        on_postgres = await large_upload(replace(bench, folder=bench.folder / "postgres"), env)
    return [
        (f"{measure}, SQLite / PostgreSQL", f"{sqlite} / {postgres}")
        for (measure, sqlite), (_, postgres) in zip(on_sqlite, on_postgres, strict=True)
    ]


async def largest(bench: Bench) -> list[Row]:
    """The largest upload: time to 202, memory, others' latency, then the failure rate."""
    data, rows = largest_csv(MAX_UPLOAD_BYTES)
    images = rows * URLS_PER_ROW
    server = Server(bench.folder / "largest", free_port(), {"IMGSVC_ALLOW_PRIVATE_URLS": "0"})
    try:
        async with aiohttp.ClientSession() as client:
            await server.ready(client)
            start = time.perf_counter()
            answer, accepted, other = await upload_watched(client, server.url, data)
            memory = server.peak_memory_mb()
            final = await poll(client, answer["status_url"], [])
            ended = time.perf_counter() - start
        assert final["status"] == "failed", final
        assert final["progress"]["failed_images"] == images, final
    finally:
        server.stop()
    return [
        (f"{rows:,} rows x {URLS_PER_ROW} refused URLs ({len(data) / 2**20:.1f} MiB): "
         "time to 202", f"{accepted:.2f} s"),
        ("service peak memory to the 202", f"{memory:.0f} MB"),
        ("other requests during that upload, p50 / p99",
         f"{percentile(other, 0.5):.1f} / {percentile(other, 0.99):.1f} ms"),
        (f"its {images:,} images recorded as failed, upload to terminal",
         f"{images / ended:,.0f} images/s ({ended:.0f} s)"),
    ]  # fmt: skip
