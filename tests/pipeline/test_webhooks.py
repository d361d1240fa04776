"""Webhooks end to end: the service under uvicorn calls a real aiohttp receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from imgsvc.cli import main as cli_main

from ..conftest import (
    SECRET,
    ImageHost,
    Receiver,
    Service,
    jpeg_bytes,
    running_service,
    settings_for,
    status,
)

pytestmark = pytest.mark.anyio

OLD_SECRET = "whsec_bm90aGluZyB0byBzZWUgaGVyZSwgbW92ZSBvbg=="


def one_image_csv(host: ImageHost) -> str:
    return (
        f"S. No.,Product Name,Input Image Urls\n1,Lamp,{host.add('/a.jpg', jpeg_bytes(80, 60))}\n"
    )


async def submit(service: Service, host: ImageHost, receiver: Receiver) -> str:
    code, answer = await service.upload(one_image_csv(host), webhook_url=receiver.url())
    assert code == 202, answer
    await service.wait(answer["request_id"])
    request_id: str = answer["request_id"]
    return request_id


async def webhook_until(
    service: Service, request_id: str, until: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The details' `webhook` object, once `until` holds for it."""
    async with asyncio.timeout(60):
        while True:
            _, details = await service.get(f"/api/details/{request_id}")
            if until(details["webhook"]):
                found: dict[str, Any] = details["webhook"]
                return found
            await asyncio.sleep(0.05)


async def webhook_state(service: Service, request_id: str, state: str) -> dict[str, Any]:
    """The details' `webhook` object, once it is in `state`."""
    return await webhook_until(service, request_id, lambda w: w["state"] == state)


async def test_signed_with_the_generated_secret(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "data")
    async with running_service(settings) as service:
        request_id = await submit(service, image_host, receiver)
        (call,) = await receiver.wait_calls(1)
        webhook = await webhook_state(service, request_id, "delivered")
        _, status_body = await service.get(f"/api/status/{request_id}")

    # The command reads the secret the service generated and keeps in its database.
    await asyncio.to_thread(cli_main, ["webhook-secret", "--data-dir", str(tmp_path / "data")])
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("whsec_")

    payload = Webhook(secret).verify(call.body, call.headers)
    assert call.headers["Content-Type"] == "application/json"
    assert payload["type"] == "job.completed"
    assert payload["data"] == status_body | {
        "download_url": f"{service.url}/api/download/{request_id}",
        "details_url": f"{service.url}/api/details/{request_id}",
    }
    assert webhook["url"] == receiver.url()
    assert webhook["id"] == call.headers["webhook-id"]
    assert webhook["next_attempt_at"] is None
    (attempt,) = webhook["attempts"]
    assert (attempt["number"], attempt["status_code"], attempt["error"]) == (1, 200, None)


async def test_every_configured_secret_signs(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    settings = settings_for(tmp_path / "data", webhook_secret=f"{SECRET} {OLD_SECRET}")
    async with running_service(settings) as service:
        await submit(service, image_host, receiver)
        (call,) = await receiver.wait_calls(1)
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OLD_SECRET):
        assert Webhook(secret).verify(call.body, call.headers)["type"] == "job.completed"


async def test_a_secret_generated_before_the_database_kept_it_stays_the_secret(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    """Data folders made by earlier versions kept the generated secret in a file."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "webhook-secret").write_text(OLD_SECRET + "\n")
    async with running_service(settings_for(tmp_path / "data")) as service:
        await submit(service, image_host, receiver)
        (call,) = await receiver.wait_calls(1)
    assert Webhook(OLD_SECRET).verify(call.body, call.headers)["type"] == "job.completed"


async def attempt_counts(service: Service) -> dict[str, float]:
    """/metrics' webhook attempts by outcome (the registry is the process's: compare)."""
    async with service.client.get(f"{service.url}/metrics") as response:
        text = await response.text()
    found = re.findall(r'^imgsvc_webhook_attempts_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {outcome: float(value) for outcome, value in found}


async def test_retries_keep_the_id_until_success(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    receiver.script = [status(500), status(502), status(503, {"Retry-After": "2"})]
    settings = settings_for(
        tmp_path / "data", webhook_secret=SECRET, webhook_retry_schedule=(1.1, 1.1, 1.1, 1.1)
    )
    async with running_service(settings) as service:
        before = await attempt_counts(service)
        request_id = await submit(service, image_host, receiver)
        calls = await receiver.wait_calls(4)
        webhook = await webhook_state(service, request_id, "delivered")
        after = await attempt_counts(service)

    assert {k: after[k] - before.get(k, 0) for k in after} == {"failed": 3, "delivered": 1}
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    stamps = [int(c.headers["webhook-timestamp"]) for c in calls]
    assert stamps == sorted(set(stamps)), "timestamps must increase"
    for call in calls:
        Webhook(SECRET).verify(call.body, call.headers)
    assert calls[3].arrived - calls[2].arrived >= 1.9, "Retry-After: 2 was not honoured"
    assert [a["status_code"] for a in webhook["attempts"]] == [500, 502, 503, 200]
    assert webhook["attempts"][0]["error"]["code"] == "http_error"
    assert "answered 500" in webhook["attempts"][0]["error"]["message"]


async def test_cookies_a_receiver_sets_are_never_sent(
    service: Service, image_host: ImageHost, receiver: Receiver
) -> None:
    async def set_cookie(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="thanks")
        response.set_cookie("session", "of-this-receiver", path="/")
        return response

    receiver.script = [set_cookie]
    # By name: aiohttp's default jar ignores cookies from IP addresses anyway.
    hook = receiver.url().replace("127.0.0.1", "localhost")
    for _ in range(2):
        code, answer = await service.upload(one_image_csv(image_host), webhook_url=hook)
        assert code == 202, answer
        await service.wait(answer["request_id"])
    calls = await receiver.wait_calls(2)
    assert [c.headers.get("Cookie") for c in calls] == [None, None]


async def test_gone_stops_and_redeliver_sends_the_same_id(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    receiver.script = [status(410)]
    settings = settings_for(tmp_path / "data", webhook_retry_schedule=(0.1, 0.1))
    async with running_service(settings) as service:
        request_id = await submit(service, image_host, receiver)
        webhook = await webhook_state(service, request_id, "failed")
        assert len(receiver.calls) == 1
        assert webhook["next_attempt_at"] is None
        assert "no more attempts" in webhook["attempts"][0]["error"]["message"]

        async with service.client.post(
            f"{service.url}/api/webhook/{request_id}/redeliver"
        ) as response:
            assert response.status == 202
            assert (await response.json())["state"] == "pending"
        first, again = await receiver.wait_calls(2)
        webhook = await webhook_state(service, request_id, "delivered")
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert [a["status_code"] for a in webhook["attempts"]] == [410, 200]


async def test_redeliver_refusals(service: Service, image_host: ImageHost) -> None:
    async with service.client.post(f"{service.url}/api/webhook/nope/redeliver") as response:
        assert response.status == 404
    _, answer = await service.upload(one_image_csv(image_host))
    await service.wait(answer["request_id"])
    path = f"/api/webhook/{answer['request_id']}/redeliver"
    async with service.client.post(service.url + path) as response:
        assert response.status == 409
        assert (await response.json())["code"] == "no_webhook"
    _, details = await service.get(f"/api/details/{answer['request_id']}")
    assert details["webhook"] == {
        "url": None, "state": "none", "id": None, "attempts": [], "next_attempt_at": None
    }  # fmt: skip


async def test_a_redirect_is_a_failure_never_followed(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    moved = status(302, {"Location": receiver.url("/elsewhere")})
    receiver.script = [moved, moved]
    settings = settings_for(tmp_path / "data", webhook_retry_schedule=(0.1,))
    async with running_service(settings) as service:
        request_id = await submit(service, image_host, receiver)
        webhook = await webhook_state(service, request_id, "failed")
    assert [c.path for c in receiver.calls] == ["/hook", "/hook"]
    assert [a["status_code"] for a in webhook["attempts"]] == [302, 302]
    assert "do not follow redirects" in webhook["attempts"][0]["error"]["message"]


async def test_a_hanging_receiver_is_cut_at_the_timeout(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    receiver.script = [receiver.hang]
    settings = settings_for(tmp_path / "data", webhook_timeout=0.5, webhook_retry_schedule=(0.1,))
    async with running_service(settings) as service:
        request_id = await submit(service, image_host, receiver)
        webhook = await webhook_state(service, request_id, "delivered")
    first, second = webhook["attempts"]
    assert first["status_code"] is None
    assert first["error"] == {"code": "timeout", "message": "no answer within 0.5 s"}
    assert second["status_code"] == 200


async def test_a_restart_mid_schedule_still_delivers(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    receiver.script = [status(500)]
    settings = settings_for(tmp_path / "data", webhook_retry_schedule=(3.0,))
    async with running_service(settings) as service:
        request_id = await submit(service, image_host, receiver)
        webhook = await webhook_until(service, request_id, lambda w: bool(w["attempts"]))
        assert webhook["state"] == "pending"
        assert webhook["next_attempt_at"] is not None
    assert len(receiver.calls) == 1, "the retry was meant to fall due after the restart"

    async with running_service(settings) as service:
        first, again = await receiver.wait_calls(2)
        webhook = await webhook_state(service, request_id, "delivered")
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert [a["status_code"] for a in webhook["attempts"]] == [500, 200]


async def test_an_attempt_cut_by_shutdown_is_made_again(
    tmp_path: Path, image_host: ImageHost, receiver: Receiver
) -> None:
    receiver.script = [receiver.hang]
    settings = settings_for(tmp_path / "data")
    async with running_service(settings) as service:
        request_id = await submit(service, image_host, receiver)
        await receiver.wait_calls(1)

    async with running_service(settings) as service:
        first, again = await receiver.wait_calls(2)
        webhook = await webhook_state(service, request_id, "delivered")
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert [a["status_code"] for a in webhook["attempts"]] == [200]


async def test_a_refused_webhook_address_is_reported(tmp_path: Path, receiver: Receiver) -> None:
    settings = settings_for(tmp_path / "data", allow_private_urls=False)
    csv_text = "S. No.,Product Name,Input Image Urls\n1,Lamp,http://localhost:9/a.jpg\n"
    async with running_service(settings) as service:
        code, body = await service.upload(csv_text, webhook_url=receiver.url())
        assert code == 400
        assert body["code"] == "blocked_address"
        assert "webhook_url" in body["detail"]

        port = receiver.server.port
        code, answer = await service.upload(csv_text, webhook_url=f"http://localhost:{port}/h")
        assert code == 202
        final = await service.wait(answer["request_id"])
        webhook = await webhook_state(service, answer["request_id"], "failed")
    assert final["status"] == "failed"
    (attempt,) = webhook["attempts"]
    assert attempt["status_code"] is None
    assert attempt["error"]["code"] == "blocked_address"
    assert "loopback" in attempt["error"]["message"]
    assert receiver.calls == []
