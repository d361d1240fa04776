"""Output formats and encodings through the live service: what a caller gets back."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from PIL import Image

from ..conftest import ImageHost, Service, jpeg_bytes

pytestmark = pytest.mark.anyio

HEADER = "S. No.,Product Name,Input Image Urls\n"
BASELINE, EXTENDED, PROGRESSIVE = 0xC0, 0xC1, 0xC2  # JPEG start-of-frame markers


def frame_marker(jpeg: bytes) -> int:
    """The JPEG's start-of-frame marker, found by walking its segments."""
    at = 2
    while at + 4 <= len(jpeg):
        marker = jpeg[at + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        at += 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
    raise AssertionError("no start-of-frame marker")


def small_noisy_jpeg(seed: int) -> bytes:
    """A tiny JPEG saved at a low quality: a new encoding at quality 50 is larger than it."""
    pixels = random.Random(seed).randbytes(64 * 64 * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (64, 64), pixels).save(out, "JPEG", quality=20)
    return out.getvalue()


async def finished(service: Service, csv_text: str, **fields: str) -> dict[str, Any]:
    """Upload, wait for the job to end; its details."""
    status, answer = await service.upload(csv_text, **fields)
    assert status == 202, answer
    assert (await service.wait(answer["request_id"]))["status"] == "completed"
    _, details = await service.get(f"/api/details/{answer['request_id']}")
    return dict(details)


async def served_image(service: Service, url: str) -> tuple[str, bytes]:
    async with service.client.get(url) as response:
        assert response.status == 200
        return response.content_type, await response.read()


@pytest.mark.parametrize(
    ("fmt", "pillow_name", "extension"),
    [("jpeg", "JPEG", ".jpg"), ("webp", "WEBP", ".webp"), ("avif", "AVIF", ".avif")],
)
async def test_each_format_is_served_as_itself(
    service: Service, image_host: ImageHost, fmt: str, pillow_name: str, extension: str
) -> None:
    url = image_host.add("/big.jpg", jpeg_bytes(900, 600))
    details = await finished(service, f"{HEADER}1,A,{url}\n", format=fmt, max_dimension="450")
    assert details["options"] == {
        "quality": 50, "max_dimension": 450, "format": fmt, "progressive": False, "sizes": [],
        "reuse": True,
    }  # fmt: skip
    image = details["products"][0]["images"][0]
    assert image["output_url"].endswith(extension)
    assert (image["width"], image["height"], image["kept_input"]) == (450, 300, False)
    content_type, body = await served_image(service, image["output_url"])
    assert content_type == f"image/{fmt}"
    assert len(body) == image["bytes_out"]
    decoded = Image.open(io.BytesIO(body))
    assert (decoded.format, decoded.size) == (pillow_name, (450, 300))


async def test_progressive_true_gives_progressive_jpegs(
    service: Service, image_host: ImageHost
) -> None:
    big = image_host.add("/big.jpg", jpeg_bytes(800, 600))
    small = image_host.add("/small.jpg", small_noisy_jpeg(1))  # kept: re-packed progressive
    csv_text = f"{HEADER}1,A,{big}\n2,B,{small}\n"
    details = await finished(service, csv_text, progressive="yes")
    assert details["options"]["progressive"] is True
    images = [p["images"][0] for p in details["products"]]
    assert [i["kept_input"] for i in images] == [False, True]
    for image in images:
        _, body = await served_image(service, image["output_url"])
        assert frame_marker(body) == PROGRESSIVE

    plain = await finished(service, f"{HEADER}1,A,{big}\n")
    _, body = await served_image(service, plain["products"][0]["images"][0]["output_url"])
    assert frame_marker(body) in (BASELINE, EXTENDED)


async def test_a_small_low_quality_jpeg_comes_back_no_larger(
    service: Service, image_host: ImageHost
) -> None:
    original = small_noisy_jpeg(2)
    url = image_host.add("/tiny.jpg", original)
    details = await finished(service, f"{HEADER}1,A,{url}\n")
    image = details["products"][0]["images"][0]
    assert image["kept_input"] is True
    assert image["bytes_in"] == len(original)
    assert image["bytes_out"] <= len(original)
    _, body = await served_image(service, image["output_url"])
    assert len(body) == image["bytes_out"]
    # The same picture: the pixels decode exactly as the input's.
    kept, source = Image.open(io.BytesIO(body)), Image.open(io.BytesIO(original))
    assert kept.tobytes() == source.tobytes()


async def test_a_bad_progressive_value_is_a_400_naming_the_field(service: Service) -> None:
    csv_text = f"{HEADER}1,A,http://a.example/x.jpg\n"
    status, body = await service.upload(csv_text, progressive="maybe")
    assert (status, body["code"]) == (400, "invalid_field")
    assert body["detail"].startswith("progressive: 'maybe' is not one of")
    # The same check for a raw text/csv body with the option as a query parameter.
    status, body = await service.post(
        "/api/upload?progressive=2", data=csv_text, headers={"Content-Type": "text/csv"}
    )
    assert (status, body["code"]) == (400, "invalid_field")
    assert body["detail"].startswith("progressive:")


@pytest.mark.parametrize("value", ["true", "1", "YES", "false", "0", "no"])
async def test_progressive_spellings_in_the_query(
    service: Service, image_host: ImageHost, value: str
) -> None:
    async with service.client.post(
        f"{service.url}/api/upload?progressive={value}",
        data=f"{HEADER}1,A,{image_host.url('/a.jpg')}\n",
        headers={"Content-Type": "text/csv"},
    ) as response:
        assert response.status == 202
        request_id = (await response.json())["request_id"]
    await service.wait(request_id)
    _, details = await service.get(f"/api/details/{request_id}")
    assert details["options"]["progressive"] is (value.lower() in ("true", "1", "yes"))


async def test_idempotency_key_with_another_progressive_is_a_conflict(
    service: Service, image_host: ImageHost
) -> None:
    csv_text = f"{HEADER}1,A,{image_host.url('/a.jpg')}\n"
    keyed = service.with_headers({"Idempotency-Key": "order-7"})
    status, first = await keyed.upload(csv_text)
    assert status == 202
    status, other = await keyed.upload(csv_text, progressive="true")
    assert (status, other["code"]) == (409, "idempotency_key_reused")
    # `progressive=false` is the same upload as leaving it out.
    assert await keyed.upload(csv_text, progressive="false") == (200, first)
    await service.wait(first["request_id"])


async def test_a_failed_image_has_no_kept_input(service: Service, image_host: ImageHost) -> None:
    status, answer = await service.upload(f"{HEADER}1,A,{image_host.url('/missing.jpg')}\n")
    assert status == 202
    await service.wait(answer["request_id"])
    _, details = await service.get(f"/api/details/{answer['request_id']}")
    image = details["products"][0]["images"][0]
    assert (image["status"], image["kept_input"]) == ("failed", None)
