"""Real PostgreSQL and S3 servers for the many-process mode, each started once per session.

Both live only on this machine: PostgreSQL listens on a Unix socket in a temporary folder
(no TCP at all), the S3 API (moto's server) on 127.0.0.1. Neither starts unless a test asks.
scripts/bench_processes.py starts them the same way, so nothing here depends on pytest.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import obstore
import psycopg
from obstore.store import S3Store
from psycopg import sql
from psycopg.rows import TupleRow

POSTGRES_INSTALL = "apt-get install -y postgresql"  # what scripts/test-deps.sh runs as root

# A throwaway cluster: durability off, nothing but the socket in its own folder.
POSTGRES_CONF = """
listen_addresses = ''
unix_socket_directories = '{folder}'
fsync = off
synchronous_commit = off
full_page_writes = off
"""

Prepare = Callable[[str], Awaitable[None]]  # fills the database at this URL (migrations)


def postgres_programs() -> Path:
    """The folder of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path:  # perhaps a link to the real folder, where pg_ctl and postgres are too
        return Path(on_path).resolve().parent
    debian = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    newest = max(debian, key=lambda initdb: int(initdb.parts[-3]), default=None)
    if newest is None:
        raise RuntimeError(
            f"PostgreSQL is not installed: run  {POSTGRES_INSTALL}  (as root, make test and "
            "make bench do)"
        )
    return newest.parent


@dataclass
class PostgresServer:
    """A running cluster; `database()` gives each test its own database, copied from a template."""

    folder: Path  # holds the data, the log and the socket
    admin: psycopg.Connection[TupleRow]  # autocommit, to create and drop databases
    templates: dict[Prepare, str] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        """The URL psycopg takes for a database over the Unix socket."""
        return f"postgresql://postgres@/{database}?host={self.folder}"

    async def template(self, prepare: Prepare) -> str:
        """The name of a template database `prepare(url)` has filled, made on first use.

        `prepare` must close its connections: a database being copied must have none.
        """
        if prepare not in self.templates:
            name = f"template_{next(self.numbers)}"
            self.execute("CREATE DATABASE {}", name)
            await prepare(self.url(name))
            self.execute("ALTER DATABASE {} WITH IS_TEMPLATE true", name)
            self.templates[prepare] = name
        return self.templates[prepare]

    def database(self, template: str = "template1") -> str:
        """The name of a new database copied from `template` (the empty default, else one
        from `template()`); copying is a file copy, far quicker than migrating again."""
        name = f"test_{next(self.numbers)}"
        self.execute("CREATE DATABASE {} TEMPLATE {}", name, template)
        return name

    def drop(self, name: str) -> None:
        """Drop a database, ending whatever connections a test left open to it."""
        self.execute("DROP DATABASE {} WITH (FORCE)", name)

    def execute(self, statement: str, *names: str) -> None:
        self.admin.execute(sql.SQL(statement).format(*map(sql.Identifier, names)))


@contextmanager
def postgres_server(conf: str = "") -> Iterator[PostgresServer]:
    """initdb in a new temporary folder, start it with pg_ctl, stop and remove it at the end;
    `conf` is more lines for its postgresql.conf."""
    programs = postgres_programs()
    folder = Path(tempfile.mkdtemp(prefix="imgsvc-pg-"))
    as_owner = _as_postgres_user(folder)
    data, log = folder / "data", folder / "server.log"
    initdb = [str(programs / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    _run([*as_owner, *initdb, "--no-sync", "--no-locale", "--encoding=UTF8"])
    with (data / "postgresql.conf").open("a") as settings:
        settings.write(POSTGRES_CONF.format(folder=folder) + conf)
    pg_ctl = [*as_owner, str(programs / "pg_ctl"), "-D", str(data), "-l", str(log)]
    try:
        _run([*pg_ctl, "-w", "start"], log)
        with psycopg.connect(f"postgresql://postgres@/postgres?host={folder}") as admin:
            admin.autocommit = True
            yield PostgresServer(folder, admin)
    finally:
        _run([*pg_ctl, "-m", "immediate", "stop"], log, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _as_postgres_user(folder: Path) -> list[str]:
    """The prefix that runs initdb and pg_ctl: root must hand them to the postgres user."""
    if os.geteuid() != 0:
        return []
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        message = f"no postgres user to run PostgreSQL as root: run  {POSTGRES_INSTALL}"
        raise RuntimeError(message) from None
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def _run(command: list[str], log: Path | None = None, check: bool = True) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        server_log = log.read_text() if log and log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{server_log}")


@dataclass(frozen=True)
class S3Server:
    """An S3 API on 127.0.0.1; it takes any credentials, these are the ones the tests give."""

    endpoint: str
    pid: int  # the server's process
    access_key_id: str = "imgsvc-test"
    secret_access_key: str = "imgsvc-test-secret"  # moto checks no signature
    region: str = "us-east-1"
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def bucket(self) -> S3Bucket:
        """A new, empty bucket."""
        name = f"test-{next(self.numbers)}"
        # moto takes unsigned requests: no S3 client needed to set up. No proxy, whatever
        # the environment says: the server is on this machine.
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(request, timeout=10) as answer:
            assert answer.status == 200
        return S3Bucket(self, name)


@dataclass(frozen=True)
class S3Bucket:
    """One test's bucket on the S3 server."""

    server: S3Server
    name: str

    def environ(self) -> dict[str, str]:
        """The variables that point imgsvc at this bucket."""
        return {
            "IMGSVC_STORAGE_URL": f"s3://{self.name}",
            "IMGSVC_S3_ENDPOINT": self.server.endpoint,
            "AWS_ACCESS_KEY_ID": self.server.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.server.secret_access_key,
            "AWS_REGION": self.server.region,
        }

    def objects(self) -> dict[str, bytes]:
        """Every object in the bucket and its bytes, as another S3 client sees them."""
        store = S3Store(
            self.name,
            endpoint=self.server.endpoint,
            # Credentials given, so the client never looks for a cloud's instance metadata.
            access_key_id=self.server.access_key_id,
            secret_access_key=self.server.secret_access_key,
            region=self.server.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
        keys = [entry["path"] for batch in obstore.list(store) for entry in batch]
        return {key: bytes(obstore.get(store, key).bytes()) for key in keys}


LISTENING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server in a subprocess on a free port, until the block ends."""
    with tempfile.TemporaryDirectory(prefix="imgsvc-s3-") as folder:
        log = Path(folder) / "server.log"
        with log.open("w") as out:
            # The log goes to a file: a pipe nobody reads would stall the server once full.
            server = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            yield S3Server(_wait_listening(server, log), server.pid)
        finally:
            server.terminate()
            server.wait(timeout=10)


def _wait_listening(server: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        if found := LISTENING.search(log.read_text()):
            return found.group(1)
        time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"the S3 server did not start:\n{log.read_text()}")
