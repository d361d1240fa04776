"""processes: the many-process mode (PostgreSQL and a bucket) against the default (SQLite
and a folder), on this machine.

In rounds, the same job as the service section's (`--images` photos from the bench's
host) runs on SQLite and a folder with one `imgsvc serve`, then on a new PostgreSQL
database and a new bucket shared by 1, 2 and 3 processes, each with its own data folder:
uploaded to the first, its status polled there until completed. PostgreSQL counts every
statement it runs (pg_stat_statements), so the statements per image of each run are
exact. Last, the large upload (`--rows`) on PostgreSQL and a bucket.

The bench's own PostgreSQL (on a Unix socket) and S3 API (moto, on 127.0.0.1) start as the
tests' do, from tests/backends.py, on the same cores as imgsvc.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/
from benchkit import Bench, Row, Server, free_port, large_upload, poll, upload
from sample_host import products_csv

from tests.backends import PostgresServer, S3Server, postgres_server, s3_server

PROCESSES = ("1", "2", "3")
COUNTING = "shared_preload_libraries = 'pg_stat_statements'\n"
# Top-level statements, BEGIN and COMMIT included. The outcomes of a batch of images are
# one UPDATE each, pipelined (executemany): one round trip for the batch, whose UPDATE of
# the job's counters follows in the same transaction.
STATEMENTS = """
SELECT SUM(calls), SUM(calls) FILTER (WHERE query = 'BEGIN'),
    SUM(calls) FILTER (WHERE query LIKE 'UPDATE images SET status = $1, output_name%%'),
    SUM(calls) FILTER (WHERE query LIKE 'UPDATE jobs SET processed_images%%')
FROM pg_stat_statements JOIN pg_database ON pg_database.oid = dbid WHERE datname = %s
"""
COUNTED = ("statements", "transactions", "outcomes", "batches")

Run = dict[str, float]  # one job's figures, per image but for the rate


@dataclass
class Shared:
    """The bench's PostgreSQL and S3 API."""

    postgres: PostgresServer
    s3: S3Server

    def environ(self, database: str) -> dict[str, str]:
        """What points imgsvc at `database` and at a new, empty bucket."""
        env = self.s3.bucket().environ()
        env["IMGSVC_STORAGE_URL"] += "/bench"  # a prefix, as a shared bucket would need
        return env | {"IMGSVC_DATABASE_URL": self.postgres.url(database)}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time the PostgreSQL and the S3 server have used so far."""
        postmaster = (self.postgres.folder / "data" / "postmaster.pid").read_text().split()[0]
        return {
            "pg_cpu": tree_cpu_seconds(int(postmaster)),
            "s3_cpu": tree_cpu_seconds(self.s3.pid),
        }

    def counted(self, database: str) -> dict[str, float]:
        """What COUNTED names, run in `database` since the last reset."""
        found = self.postgres.admin.execute(STATEMENTS, (database,)).fetchone()
        assert found is not None
        return {name: float(value or 0) for name, value in zip(COUNTED, found, strict=True)}


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, of its children that ended and of those running."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:  # it ended meanwhile: its parent counts it now
        return 0
    own = sum(int(ticks) for ticks in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu_seconds(int(child)) for child in children)


async def job(bench: Bench, folder: Path, count: int, shared: Shared | None = None) -> Run:
    """The job with `count` processes: on SQLite and folders without `shared`, else on a
    new database and bucket of it."""
    images = bench.args.images
    database = shared.postgres.database() if shared else ""
    env = shared.environ(database) if shared else None
    servers = [Server(folder / f"process{n}", free_port(), env) for n in range(count)]

    def cpu() -> dict[str, float]:
        found = {"cpu": sum(server.cpu_seconds()[0] for server in servers)}
        return found | (shared.cpu_seconds() if shared else {})

    try:
        async with aiohttp.ClientSession() as client:
            for server in servers:
                await server.ready(client)
            data = products_csv(bench.host, images // 2, 2).encode()
            if shared:
                shared.postgres.admin.execute("SELECT pg_stat_statements_reset()")
            before, start = cpu(), time.perf_counter()
            answer = await upload(client, servers[0].url, data)
            polls: list[float] = []
            final = await poll(client, answer["status_url"], polls)
            elapsed, after = time.perf_counter() - start, cpu()
            counted = shared.counted(database) if shared else {}
    finally:
        for server in servers:
            server.stop()
        if shared:
            shared.postgres.drop(database)
    assert final["progress"]["succeeded_images"] == images, final
    run = {"rate": images / elapsed, "polls": len(polls) / images}
    run |= {name: 1000 * (after[name] - before[name]) / images for name in after}
    run |= {name: value / images for name, value in counted.items()}
    if shared:  # every other statement is a round trip of its own
        run["round_trips"] = run["statements"] - run["outcomes"] + run["batches"]
        run["others"] = run["statements"] - run["outcomes"] - run["polls"]
    return run


async def processes(bench: Bench) -> list[Row]:
    """SQLite against PostgreSQL with 1, 2 and 3 processes, in rounds (the medians)."""
    rounds: list[dict[str, Run]] = []
    with postgres_server(COUNTING) as postgres, s3_server() as s3:
        postgres.execute("CREATE EXTENSION pg_stat_statements")
        shared = Shared(postgres, s3)
        for n in range(bench.args.rounds):
            runs = {"sqlite": await job(bench, bench.folder / f"{n}-sqlite", 1)}
            for count in PROCESSES:
                folder = bench.folder / f"{n}-{count}"
                runs[count] = await job(bench, folder, int(count), shared)
            rounds.append(runs)
        large = await large_upload(bench, shared.environ(postgres.database()))

    def median(key: str, figure: str) -> float:
        return statistics.median(runs[key][figure] for runs in rounds)

    def ratio(top: str, bottom: str) -> str:
        each = [runs[top]["rate"] / runs[bottom]["rate"] for runs in rounds]
        return f"{statistics.median(each):.2f} ({', '.join(f'{x:.2f}' for x in each)})"

    def each(figure: str, digits: int = 1) -> str:
        return " / ".join(f"{median(count, figure):.{digits}f}" for count in PROCESSES)

    return [
        ("SQLite and a folder, 1 process: upload to completed",
         f"{median('sqlite', 'rate'):.1f} images/s"),
        ("PostgreSQL and a bucket, 1 / 2 / 3 processes: upload to completed",
         f"{each('rate')} images/s"),
        ("PostgreSQL and a bucket / SQLite and a folder, 1 process (each round)",
         ratio("1", "sqlite")),
        ("2 processes / 1 (each round)", ratio("2", "1")),
        ("3 processes / 1 (each round)", ratio("3", "1")),
        ("imgsvc CPU ms per image: SQLite / PostgreSQL 1 / 2 / 3 processes",
         f"{median('sqlite', 'cpu'):.1f} / {each('cpu')}"),
        ("PostgreSQL's CPU ms per image, 1 / 2 / 3 processes", each("pg_cpu")),
        ("S3 server's (moto) CPU ms per image, 1 / 2 / 3 processes", each("s3_cpu")),
        ("PostgreSQL statements per image, 1 / 2 / 3 processes", each("statements", 2)),
        ("of them each image's outcome (an UPDATE, sent in batches)", each("outcomes", 2)),
        ("of them the bench's status polls (one each, every 50 ms)", each("polls", 2)),
        ("of them the rest: claims, lease renewals, the job's counters, BEGIN, COMMIT",
         each("others", 2)),
        ("PostgreSQL transactions (BEGIN ... COMMIT) per image, 1 / 2 / 3 processes",
         each("transactions", 2)),
        ("round trips per image (a batch of outcomes is one), 1 / 2 / 3 processes",
         each("round_trips", 2)),
        *((f"PostgreSQL and a bucket: {measure}", value) for measure, value in large),
    ]  # fmt: skip
