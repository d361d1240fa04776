"""Several `imgsvc serve` processes on one PostgreSQL database and one bucket, each with its
own data folder, started, killed and restarted one by one."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from .backends import S3Bucket
from .served import Served, kill_9, served, service_env


def replica_env(database_url: str, bucket: S3Bucket, **extra: str) -> dict[str, str]:
    """The environment of one replica: the shared database and bucket, short leases (a
    killed process's work is taken over within seconds)."""
    shared = {"IMGSVC_DATABASE_URL": database_url, "IMGSVC_LEASE_SECONDS": "2"}
    return service_env(**shared, **bucket.environ(), **extra)


@dataclass
class Replicas:
    """`count` replicas in folders under `root`, each running in its own exit stack."""

    root: Path
    env: dict[str, str]
    count: int = 3
    running: list[Served] = field(default_factory=list)
    stacks: list[AsyncExitStack] = field(default_factory=list)

    async def __aenter__(self) -> Replicas:
        for number in range(self.count):
            self.stacks.append(AsyncExitStack())
            self.running.append(await self._start(number))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stack in self.stacks:
            await stack.aclose()

    def folder(self, number: int) -> Path:
        return self.root / f"replica-{number}"

    async def kill_and_restart(self, number: int) -> None:
        """kill -9 one replica, then start it again on the same folder."""
        victim = self.running[number]
        kill_9(victim)
        await victim.exit_code()
        await self.stacks[number].aclose()
        self.running[number] = await self._start(number)

    async def _start(self, number: int) -> Served:
        return await self.stacks[number].enter_async_context(served(self.folder(number), self.env))


def postgres_rows(url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the shared database directly, as an operator would."""
    with psycopg.connect(url) as db:
        return db.execute(statement, args).fetchall()
