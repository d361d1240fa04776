"""The many-process mode's PostgreSQL answers: a broken setup fails here, loudly."""

from __future__ import annotations

import psycopg
import pytest

from .backends import PostgresServer

pytestmark = pytest.mark.anyio


async def test_postgres_answers_on_its_socket_only(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url) as connection:
        assert await (await connection.execute("SELECT 1")).fetchone() == (1,)
        listening = await (await connection.execute("SHOW listen_addresses")).fetchone()
    assert listening == ("",)


async def test_each_database_is_a_separate_copy_of_its_template(
    postgres_server: PostgresServer,
) -> None:
    async def prepare(url: str) -> None:
        async with await psycopg.AsyncConnection.connect(url) as connection:
            await connection.execute("CREATE TABLE jobs (id text PRIMARY KEY)")
            await connection.execute("INSERT INTO jobs VALUES ('from the template')")

    template = await postgres_server.template(prepare)
    first, second = postgres_server.database(template), postgres_server.database(template)
    async with await psycopg.AsyncConnection.connect(postgres_server.url(first)) as connection:
        await connection.execute("INSERT INTO jobs VALUES ('only in the first')")
    async with await psycopg.AsyncConnection.connect(postgres_server.url(second)) as connection:
        rows = await (await connection.execute("SELECT id FROM jobs")).fetchall()
    assert rows == [("from the template",)]
    assert await postgres_server.template(prepare) == template  # prepared once
