"""URLs refused before any download fail fast, each as its download would have failed."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imgsvc.pipeline.fetch import Fetcher, FetchError, FetchLimits
from imgsvc.pipeline.netguard import AddressPolicy
from imgsvc.pipeline.parse import BATCH_URLS
from imgsvc.pipeline.refusals import Refusals

from ..conftest import running_service
from ..security_support import Listener, allowed_image_host, guarded_settings, refused_listener

pytestmark = pytest.mark.anyio

URLS_PER_ROW = 50
ROWS = BATCH_URLS // URLS_PER_ROW + 40  # past the first batch the upload is stored in


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with refused_listener() as running:
        yield running


def refused(n: int, port: int) -> str:
    """A distinct URL of one of the kinds that fail without a connection."""
    return (
        f"http://127.0.0.1:{port}/loopback/{n}.jpg",
        f"http://2130706433:{port}/decimal/{n}.jpg",
        f"http://a\\b/invalid/{n}.jpg",
        f"http://[::1]:{port}/v6/{n}.jpg",
    )[n % 4]


def failed_counts(exposition: bytes) -> Counter[str]:
    """imgsvc_images_total of failed images in a /metrics body, by error code."""
    found = re.findall(
        r'^imgsvc_images_total\{code="(\w*)",status="failed"\} (\S+)$', exposition.decode(), re.M
    )
    return Counter({code: int(float(count)) for code, count in found})


async def download_error(fetcher: Fetcher, url: str) -> tuple[str, str]:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    return caught.value.code, caught.value.message


async def test_a_job_of_refused_urls_fails_each_image_as_its_download_would(
    tmp_path: Path, listener: Listener
) -> None:
    urls = [refused(n, listener.port) for n in range(ROWS * URLS_PER_ROW)]
    # Every row also repeats a URL of a row far before it: its outcome is the same.
    rows = [[*urls[r * URLS_PER_ROW : (r + 1) * URLS_PER_ROW], urls[r // 2]] for r in range(ROWS)]
    lines = [f"{r + 1},P{r + 1},{' '.join(row)}" for r, row in enumerate(rows)]
    data = ("S. No.,Product Name,Input Image Urls\n" + "\n".join(lines) + "\n").encode()
    settings = guarded_settings(tmp_path)
    async with running_service(settings) as service:
        _, counted_before = await service.get("/metrics")
        status, answer = await service.post(
            "/api/upload", data=io.BytesIO(data), headers={"Content-Type": "text/csv"}
        )
        assert (status, answer["total_images"]) == (202, ROWS * (URLS_PER_ROW + 1))
        final = await service.wait(answer["request_id"])
        assert final["status"] == "failed"
        assert final["progress"]["failed_images"] == ROWS * (URLS_PER_ROW + 1)
        _, details = await service.get(f"/api/details/{answer['request_id']}?limit={ROWS}")
        _, results = await service.get(f"/api/download/{answer['request_id']}")
        _, counted_after = await service.get("/metrics")
    assert listener.connections == 0
    failed = failed_counts(counted_after)
    failed.subtract(failed_counts(counted_before))
    assert set(+failed) == {"blocked_address", "invalid_url"}
    assert failed.total() == len(urls), "each refused URL counted once"

    limits = FetchLimits(max_bytes=1000, timeout=5, max_redirects=0, retries=0)
    fetcher = Fetcher(
        settings.address_policy, limits, concurrency=5, per_host=5, bytes_in_flight=1000
    )
    try:
        expected = {url: await download_error(fetcher, url) for url in urls[:10]}
    finally:
        await fetcher.close()
    assert {code for code, _ in expected.values()} == {"blocked_address", "invalid_url"}
    images = [image for product in details["products"] for image in product["images"]]
    assert [i["input_url"] for i in images] == [url for row in rows for url in row]
    for image in images:
        assert image["status"] == "failed"
        assert image["output_url"] is None
        if image["input_url"] in expected:
            error = image["error"]
            assert (error["code"], error["message"]) == expected[image["input_url"]]

    table = list(csv.reader(io.StringIO(results.decode())))
    assert table[0] == ["S. No.", "Product Name", "Input Image Urls", "Output Image Urls"]
    assert [r[:2] for r in table[1:]] == [[str(n), f"P{n}"] for n in range(1, ROWS + 1)]
    assert {r[3] for r in table[1:]} == {"," * URLS_PER_ROW}  # every place empty


async def test_a_url_that_passes_is_downloaded_beside_refused_ones(
    tmp_path: Path, listener: Listener
) -> None:
    async with allowed_image_host() as host:
        good = host.add("/good.jpg", b"not an image")
        bad = f"http://127.0.0.1:{listener.port}/x.jpg"
        csv_text = f"S. No.,Product Name,Input Image Urls\n1,A,{good} {bad}\n"
        async with running_service(guarded_settings(tmp_path)) as service:
            _, answer = await service.upload(csv_text)
            await service.wait(answer["request_id"])
            _, details = await service.get(f"/api/details/{answer['request_id']}")
        assert host.hits["/good.jpg"] == 1
    images = details["products"][0]["images"]
    assert [i["error"]["code"] for i in images] == ["not_an_image", "blocked_address"]
    assert listener.connections == 0


def test_a_verdict_holds_for_the_urls_of_one_origin_and_no_other() -> None:
    refusals = Refusals(AddressPolicy())
    loopback = refusals.refusal("http://127.0.0.1/a.jpg")
    assert loopback is not None
    assert loopback.code == "blocked_address"
    assert refusals.refusal("http://127.0.0.1/b c.jpg?size=2#top") is loopback
    assert refusals.refusal("http://example.com/a.jpg") is None
    assert refusals.refusal("http://127.0.0.1.example.com/a.jpg") is None  # a name
    for other in ("http://example.com:99999/a.jpg", "ftp://example.com/a.jpg", "/a.jpg"):
        refused = refusals.refusal(other)
        assert refused is not None
        assert refused.code == "invalid_url"
    on_port = refusals.refusal("HTTP://127.0.0.1:8080/a.jpg")
    assert on_port is not None
    assert on_port.code == "blocked_address"
