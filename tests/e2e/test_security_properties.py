"""Properties of the running service, checked with hypothesis: whatever products a user
writes with Python's csv module come back in order, and no upload makes it fail (5xx).

Hypothesis drives plain functions, so the service and an image host run in an event loop
on another thread (an anyio blocking portal) for the whole module.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st

from imgsvc.pipeline import netguard

from ..conftest import (
    CheckedLoop,
    Service,
    jpeg_bytes,
    loopback_server,
    running_service,
    settings_for,
    sockets_left_open,
)
from ..pipeline.test_security_ssrf import ScriptedDns

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@asynccontextmanager
async def any_path_host() -> AsyncIterator[str]:
    """An image host on 127.0.0.1 answering every path with a small JPEG; its base URL."""
    body = jpeg_bytes(16, 12)

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/jpeg")

    async with loopback_server(handle) as server:
        yield str(server.make_url("")).rstrip("/")


@dataclass
class Live:
    portal: BlockingPortal
    service: Service
    host: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings_ = settings_for(tmp_path_factory.mktemp("properties"))
    with (
        pytest.MonkeyPatch.context() as patch,
        start_blocking_portal("asyncio", {"loop_factory": CheckedLoop}) as portal,
    ):
        # No generated URL may reach a real DNS server: every name fails to resolve.
        patch.setattr(netguard, "DefaultResolver", lambda: ScriptedDns({}))
        with (
            portal.wrap_async_context_manager(any_path_host()) as host,
            portal.wrap_async_context_manager(running_service(settings_)) as service,
        ):
            yield Live(portal, service, host)
    assert not (left_open := sockets_left_open()), f"sockets left open: {left_open}"


cells = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=24)
products = st.lists(
    st.tuples(
        cells.filter(str.strip),
        cells.filter(str.strip),
        st.lists(st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True), min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=6,
)


def formula_safe(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def results_of(live: Live, csv_text: str) -> tuple[list[list[str]], dict[str, Any]]:
    """Upload, wait for the end, and return the results CSV's rows and the details."""
    status, answer = live.portal.call(live.service.upload, csv_text)
    assert status == 202, answer
    request_id = answer["request_id"]
    live.portal.call(live.service.wait, request_id)
    _, body = live.portal.call(live.service.get, f"/api/download/{request_id}")
    _, details = live.portal.call(live.service.get, f"/api/details/{request_id}")
    return list(csv.reader(io.StringIO(body.decode()))), details


@settings(max_examples=30, deadline=None)
@given(products=products)
def test_products_come_back_in_order(
    live: Live, products: list[tuple[str, str, list[str]]]
) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["S. No.", "Product Name", "Input Image Urls"])
    rows_in = []
    for serial, name, paths in products:
        urls = [f"{live.host}/{path}.jpg" for path in paths]
        writer.writerow([serial, name, ",".join(urls)])
        rows_in.append((serial, name, urls))

    rows, details = results_of(live, out.getvalue())
    assert len(rows) == len(rows_in) + 1
    outputs_by_input: dict[str, str] = {}
    for (serial, name, urls), row, product in zip(
        rows_in, rows[1:], details["products"], strict=True
    ):
        assert row[:3] == [formula_safe(serial), formula_safe(name), ",".join(urls)]
        assert (product["serial_number"], product["product_name"]) == (serial.strip(), name.strip())
        assert product["input_image_urls"] == urls
        outputs = row[3].split(",")
        assert outputs == product["output_image_urls"]
        for url, output in zip(urls, outputs, strict=True):
            assert output.startswith(f"{live.service.url}/api/image/")
            assert outputs_by_input.setdefault(url, output) == output
    assert len(set(outputs_by_input.values())) == len(outputs_by_input)


csv_like = st.lists(
    st.sampled_from(["S. No.", "Product Name", "Input Image Urls", ",", '"', "\n", "\r",
                     "http://x.example/a.jpg", "1", " ", "\ufeff", "\xff", "\x00", "é"]),
    max_size=40,
).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=3000) | csv_like)
def test_no_upload_makes_the_service_fail(live: Live, data: bytes) -> None:
    async def post() -> tuple[int, Any]:
        async with live.service.client.post(
            f"{live.service.url}/api/upload", data=data, headers={"Content-Type": "text/csv"}
        ) as response:
            return response.status, await response.json()

    status, body = live.portal.call(post)
    assert status in (202, 400), body
    if status == 400:
        assert body["code"] == "invalid_csv"
        assert isinstance(body["detail"], str)
        assert body["detail"]
