"""API keys (IMGSVC_API_KEYS) through the running service."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from imgsvc.config import Settings, SettingsError

from ..conftest import ImageHost, Service, jpeg_bytes, running_service, settings_for
from ..security_support import raw_http, status_of

pytestmark = pytest.mark.anyio

ALICE = "alice-0123456789abcdef"
BOB = "bob-fedcba9876543210"
GUARDED = ["/api/status/x", "/api/details/x", "/api/download/x", "/api/jobs", "/api/nowhere"]


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Service]:
    settings = settings_for(tmp_path / "data", api_keys=(ALICE, BOB))
    async with running_service(settings) as service:
        yield service


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload_as(service: Service, key: str, url: str) -> dict[str, Any]:
    csv_text = f"S. No.,Product Name,Input Image Urls\n1,A,{url}\n"
    async with service.client.post(
        f"{service.url}/api/upload",
        data=csv_text.encode(),
        headers={"Content-Type": "text/csv", **bearer(key)},
    ) as response:
        assert response.status == 202
        answer: dict[str, Any] = await response.json()
    return answer


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "this endpoint needs an API key: send `Authorization: Bearer KEY`"),
        ({"Authorization": f"Basic {ALICE}"}, "the Authorization header must be `Bearer KEY`"),
        ({"Authorization": "Bearer"}, "the Authorization header must be `Bearer KEY`"),
        (bearer("wrong-key-0123456789"), "the API key is not valid"),
        (bearer(ALICE[:-1]), "the API key is not valid"),
        (bearer(ALICE + "x"), "the API key is not valid"),
        (bearer(ALICE.upper()), "the API key is not valid"),
    ],
)
async def test_every_api_route_needs_a_valid_key(
    keyed: Service, headers: dict[str, str], detail: str
) -> None:
    for path in GUARDED:
        async with keyed.client.get(keyed.url + path, headers=headers) as response:
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="imgsvc"'
            assert await response.json() == {"detail": detail, "code": "unauthorized"}
    async with keyed.client.post(
        f"{keyed.url}/api/upload", data=b"S. No.,Product Name,Input Image Urls\n", headers=headers
    ) as response:
        assert response.status == 401


async def test_an_unauthorised_upload_is_refused_before_its_body(keyed: Service) -> None:
    request = (
        b"POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    assert status_of(await raw_http(keyed, request)) == 401


async def details_when_done(service: Service, key: str, request_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            status, body = await service.get(f"/api/details/{request_id}", headers=bearer(key))
            assert status == 200
            if body["status"] in ("completed", "failed"):
                return dict(body)
            await asyncio.sleep(0.05)


async def test_images_and_health_stay_open(keyed: Service, image_host: ImageHost) -> None:
    answer = await upload_as(keyed, ALICE, image_host.add("/a.jpg", jpeg_bytes(40, 30)))
    details = await details_when_done(keyed, ALICE, answer["request_id"])
    output = details["products"][0]["images"][0]["output_url"]
    async with keyed.client.get(output) as response:  # no key: results CSVs link here
        assert response.status == 200
    assert (await keyed.get("/livez"))[0] == 200
    assert (await keyed.get("/readyz"))[0] == 200
    # A path that starts like an image but climbs out is not an open door.
    answer_bytes = await raw_http(keyed, b"GET /api/image/../jobs HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer_bytes) in (401, 404)
    assert b'"jobs"' not in answer_bytes


async def test_a_job_is_visible_only_to_its_key(keyed: Service, image_host: ImageHost) -> None:
    url = image_host.add("/b.jpg", jpeg_bytes(40, 30))
    mine = await upload_as(keyed, ALICE, url)
    theirs = await upload_as(keyed, BOB, url)
    job_id = mine["request_id"]
    for kind in ("status", "details", "download", "events"):
        path = f"/api/{kind}/{job_id}"
        status, body = await keyed.get(path, headers=bearer(BOB))
        assert (status, body["code"]) == (404, "not_found"), path  # as if it did not exist
    status, body = await keyed.get(f"/api/status/{job_id}", headers=bearer(ALICE))
    assert status == 200
    for key, own in ((ALICE, mine), (BOB, theirs)):
        _, listing = await keyed.get("/api/jobs", headers=bearer(key))
        assert listing["total"] == 1
        assert [j["request_id"] for j in listing["jobs"]] == [own["request_id"]]


async def test_another_key_cannot_join_the_streams_open_on_a_job(
    keyed: Service, image_host: ImageHost
) -> None:
    url, release = image_host.held("/held.jpg", jpeg_bytes(40, 30))
    job_id = (await upload_as(keyed, ALICE, url))["request_id"]
    try:
        async with keyed.client.get(
            f"{keyed.url}/api/events/{job_id}", headers=bearer(ALICE)
        ) as stream:
            assert stream.status == 200
            # Alice watches the running job, so the read a new stream checks is hers.
            status, body = await keyed.get(f"/api/events/{job_id}", headers=bearer(BOB))
            assert (status, body["code"]) == (404, "not_found")
            status, _ = await keyed.get(f"/api/status/{job_id}", headers=bearer(ALICE))
            assert status == 200
    finally:
        release.set()


async def test_the_database_holds_a_hash_of_the_key_never_the_key(
    tmp_path: Path, image_host: ImageHost
) -> None:
    data_dir = tmp_path / "data"
    async with running_service(settings_for(data_dir, api_keys=(ALICE,))) as service:
        answer = await upload_as(service, ALICE, image_host.add("/c.jpg", jpeg_bytes(20, 20)))
    with sqlite3.connect(data_dir / "imgsvc.db") as db:
        [(owner,)] = db.execute(
            "SELECT owner FROM jobs WHERE id = ?", (answer["request_id"],)
        ).fetchall()
    db.close()
    assert owner == hashlib.sha256(ALICE.encode()).hexdigest()
    for file in data_dir.rglob("*"):
        if file.is_file():
            assert ALICE.encode() not in file.read_bytes(), file


async def test_without_keys_the_api_is_open(service: Service) -> None:
    status, body = await service.get("/api/jobs")
    assert (status, body["total"]) == (200, 0)


@pytest.mark.parametrize(
    "keys", ["short", "a" * 15, "has space in it 0123456789", "ключ-0123456789abcdef"]
)
def test_weak_or_odd_keys_are_refused_without_quoting_them(keys: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"IMGSVC_API_KEYS": f"good-key-0123456789, {keys}"})
    assert "IMGSVC_API_KEYS: key 2 must be at least 16" in str(caught.value)
    assert keys not in str(caught.value)


def test_keys_are_read_from_the_environment_and_never_shown() -> None:
    settings = Settings.from_env({"IMGSVC_API_KEYS": f" {ALICE} ,,{BOB},"})
    assert settings.api_keys == (ALICE, BOB)
    assert ALICE not in repr(settings)
