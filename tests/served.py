"""`imgsvc serve` as a real subprocess on a temporary data folder, and what tests check on it."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import response_body

ENDED = ("completed", "failed", "cancelled")
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@dataclass
class Served:
    """A running `imgsvc serve` process, its log so far, and a client to call it."""

    process: asyncio.subprocess.Process
    data_dir: Path
    client: aiohttp.ClientSession
    url: str = ""
    log: list[str] = field(default_factory=list)

    @property
    def log_text(self) -> str:
        return "".join(self.log)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.client.get(self.url + path) as response:
            return response.status, await response_body(response)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.client.post(self.url + path, **kwargs) as response:
            return response.status, await response_body(response)

    async def upload(self, csv_text: str, headers: dict[str, str] | None = None,
                     **fields: str) -> tuple[int, Any]:  # fmt: skip
        form = aiohttp.FormData()
        form.add_field("file", csv_text.encode(), filename="products.csv", content_type="text/csv")
        for name, value in fields.items():
            form.add_field(name, value)
        return await self.post("/api/upload", data=form, headers=headers or {})

    async def wait(
        self, request_id: str, until: Callable[[dict[str, Any]], bool] | None = None,
        limit: float = 120,
    ) -> dict[str, Any]:  # fmt: skip
        """Poll the status until `until` holds (by default: the job has ended)."""
        done = until or (lambda body: body["status"] in ENDED)
        async with asyncio.timeout(limit):
            while not done(body := (await self.get(f"/api/status/{request_id}"))[1]):
                await asyncio.sleep(0.1)
        return dict(body)

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def exit_code(self, limit: float = 60) -> int:
        async with asyncio.timeout(limit):
            return await self.process.wait()


def serve_command(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "imgsvc", "serve", "--port", "0", "--data-dir", str(data_dir)]


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSVC_")}
    return env | {"IMGSVC_ALLOW_PRIVATE_URLS": "1", "IMGSVC_CPU_WORKERS": "2"} | extra


@asynccontextmanager
async def served(
    data_dir: Path, env: dict[str, str] | None = None, **popen: Any
) -> AsyncIterator[Served]:
    """Start `imgsvc serve` on a free port; the block gets it once it listens. At the end the
    process is killed if it is still running (tests stop it their own way first)."""
    process = await asyncio.create_subprocess_exec(
        *serve_command(data_dir), env=env or service_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, **popen,
    )  # fmt: skip
    async with aiohttp.ClientSession() as client:
        running = Served(process, data_dir, client)
        listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(_read_log(running, listening))
        try:
            async with asyncio.timeout(60):
                running.url = await listening
            yield running
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            await reader


async def _read_log(running: Served, listening: asyncio.Future[str]) -> None:
    assert running.process.stderr is not None
    while line := (await running.process.stderr.readline()).decode(errors="replace"):
        running.log.append(line)
        if not listening.done() and (match := LISTENING.search(line)):
            listening.set_result(match.group(1))
    if not listening.done():
        listening.set_exception(RuntimeError(f"imgsvc serve exited:\n{running.log_text}"))


def kill_9(running: Served) -> None:
    running.process.send_signal(signal.SIGKILL)


def query(data_dir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the service's SQLite file directly (while no service runs, or read-only)."""
    with closing(sqlite3.connect(data_dir / "imgsvc.db")) as db:
        return db.execute(sql, args).fetchall()


def results_rows(data_dir: Path, job_id: str) -> list[list[str]]:
    text = (data_dir / "results" / f"{job_id}.csv").read_text(encoding="utf-8")
    return list(csv.reader(io.StringIO(text)))


def image_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "images").glob("*/*"))
