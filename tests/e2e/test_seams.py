"""Where the pieces meet, through the running service: cancel and its webhook, API keys on
every per-job route, and Idempotency-Key under API keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ..conftest import (
    SECRET,
    ImageHost,
    Receiver,
    Service,
    jpeg_bytes,
    running_service,
    settings_for,
)

pytestmark = pytest.mark.anyio

ALICE = "alice-0123456789abcdef"
BOB = "bob-fedcba9876543210"


def csv_of(*urls: str) -> str:
    rows = "".join(f"{n},SKU{n},{url}\n" for n, url in enumerate(urls, 1))
    return "S. No.,Product Name,Input Image Urls\n" + rows


@pytest.fixture
async def held(image_host: ImageHost) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A URL whose image is sent only once the event is set: a job held in `processing`."""
    url, release = image_host.held("/held.jpg", jpeg_bytes(60, 40))
    yield url, release
    release.set()  # never leave the image host's answer hanging


async def test_a_cancelled_job_sends_a_signed_job_cancelled_webhook(
    tmp_path: Path, receiver: Receiver, held: tuple[str, asyncio.Event]
) -> None:
    url, gate = held
    settings = settings_for(tmp_path / "data", webhook_secret=SECRET)
    async with running_service(settings) as service:
        text = csv_of(url)
        status, answer = await service.upload(text, webhook_url=receiver.url())
        assert status == 202
        job_id = answer["request_id"]
        await service.wait(job_id, lambda s: s["status"] == "processing")
        status, cancelled = await service.post(f"/api/cancel/{job_id}")
        assert (status, cancelled["status"]) == (200, "cancelled")
        (call,) = await receiver.wait_calls(1)
        gate.set()
        _, details = await service.get(f"/api/details/{job_id}")

    payload = Webhook(SECRET).verify(call.body, call.headers)
    assert payload["type"] == "job.cancelled"
    assert payload["data"]["request_id"] == job_id
    assert payload["data"]["status"] == "cancelled"
    assert payload["data"]["download_url"].endswith(f"/api/download/{job_id}")
    assert details["webhook"]["id"] == call.headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_bm90aGluZyB0byBzZWUgaGVyZSwgbW92ZSBvbg==").verify(call.body, call.headers)


# Every route that names a job, as another key would call it.
PER_JOB = [
    ("POST", "/api/cancel/{id}"),
    ("POST", "/api/retry/{id}"),
    ("POST", "/api/webhook/{id}/redeliver"),
    ("GET", "/api/status/{id}"),
    ("GET", "/api/details/{id}"),
    ("GET", "/api/events/{id}"),
    ("GET", "/api/archive/{id}"),
    ("GET", "/api/download/{id}"),
]


async def refused_to(other: Service, job_id: str) -> None:
    """Each per-job route answers `other` as if the job did not exist."""
    for method, path in PER_JOB:
        status, body = await other.call(method, path.format(id=job_id))
        assert (status, body["code"]) == (404, "not_found"), (method, path)
        assert job_id not in json.dumps(body)


async def test_another_key_gets_404_on_every_route_of_a_job(
    tmp_path: Path,
    image_host: ImageHost,
    receiver: Receiver,
    held: tuple[str, asyncio.Event],
) -> None:
    url, gate = held
    settings = settings_for(tmp_path / "data", api_keys=(ALICE, BOB))
    async with running_service(settings) as service:
        alice, bob = service.with_key(ALICE), service.with_key(BOB)
        missing = image_host.url("/missing.jpg")
        text = csv_of(url, missing)
        _, answer = await alice.upload(text, webhook_url=receiver.url())
        job_id = answer["request_id"]
        await alice.wait(job_id, lambda s: s["status"] == "processing")
        await refused_to(bob, job_id)  # while it runs: Bob cannot cancel it
        gate.set()
        final = await alice.wait(job_id)
        assert (final["status"], final["progress"]["failed_images"]) == ("completed", 1)
        await refused_to(bob, job_id)  # once ended: nor retry, redeliver or download it

        # Alice, its owner, is answered on the same routes.
        assert (await alice.get(f"/api/download/{job_id}"))[0] == 200
        assert (await alice.get(f"/api/archive/{job_id}"))[0] == 200
        assert (await alice.get(f"/api/events/{job_id}"))[0] == 200
        await receiver.wait_calls(1)
        assert (await alice.post(f"/api/webhook/{job_id}/redeliver"))[0] == 202
        status, retried = await alice.post(f"/api/retry/{job_id}")
        assert (status, retried["retried_images"]) == (202, 1)


async def test_the_same_idempotency_key_under_two_api_keys_makes_two_jobs(
    tmp_path: Path, image_host: ImageHost
) -> None:
    url = image_host.add("/a.jpg", jpeg_bytes(40, 30))
    first, second = csv_of(url), csv_of(url, url)
    settings = settings_for(tmp_path / "data", api_keys=(ALICE, BOB))
    async with running_service(settings) as service:
        key = {"Idempotency-Key": "order-42"}
        alice = service.with_key(ALICE).with_headers(key)
        bob = service.with_key(BOB).with_headers(key)

        status, of_alice = await alice.upload(first)
        assert status == 202
        status, of_bob = await bob.upload(first)  # the same key, the same file: not a replay
        assert status == 202
        assert of_bob["request_id"] != of_alice["request_id"]
        assert await alice.upload(first) == (200, of_alice)  # each key replays its own
        assert await bob.upload(first) == (200, of_bob)

        status, reused = await bob.upload(second)  # 409 names Bob's own job, never Alice's
        assert (status, reused["code"]) == (409, "idempotency_key_reused")
        assert of_bob["request_id"] in reused["detail"]
        assert of_alice["request_id"] not in reused["detail"]

        other = {"Idempotency-Key": "order-43"}
        status, _ = await service.with_key(ALICE).with_headers(other).upload(first)
        assert status == 202
        status, answer = await service.with_key(BOB).with_headers(other).upload(second)
        assert status == 202, answer  # Alice's use of the key is nothing to Bob
        for who, count in ((alice, 2), (bob, 2)):
            assert (await who.get("/api/jobs"))[1]["total"] == count
