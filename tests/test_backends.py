"""The many-process mode's servers answer: a broken PostgreSQL or S3 setup fails here, loudly."""

from __future__ import annotations

import obstore
import psycopg
import pytest
from obstore.store import S3Store

from .backends import PostgresServer, S3Bucket

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


async def test_s3_keeps_an_object_in_the_test_bucket(s3_bucket: S3Bucket) -> None:
    server = s3_bucket.server
    store = S3Store(
        s3_bucket.name,
        endpoint=server.endpoint,
        virtual_hosted_style_request=False,  # path-style, as with IMGSVC_S3_ENDPOINT
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        client_options={"allow_http": True},
    )
    await obstore.put_async(store, "images/a.jpg", b"an image")
    assert await (await obstore.get_async(store, "images/a.jpg")).bytes_async() == b"an image"
    listed = await obstore.list(store).collect_async()
    assert [entry["path"] for entry in listed] == ["images/a.jpg"]
