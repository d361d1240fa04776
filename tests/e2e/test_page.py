"""The web page in a real headless Chromium: upload, live progress, results, downloads.

Debian's `chromium` is required (`make test` installs it); without it this test fails, so a
missing browser can never pass as a green run.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Request, async_playwright, expect

from ..conftest import ImageHost, Service, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 60_000
KEY = "page-key-0123456789abcdef"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


def products_csv(host: ImageHost, tmp_path: Path) -> Path:
    urls = [host.add(f"/p{n}.jpg", jpeg_bytes(600, 400, (40 * n, 90, 160))) for n in range(3)]
    path = tmp_path / "products.csv"
    path.write_text(
        "S. No.,Product Name,Input Image Urls\n"
        f'1,Oak chair,"{urls[0]},{urls[1]}"\n2,Desk lamp,{urls[2]}\n'
    )
    return path


async def upload(
    page: Page,
    service: Service,
    path: Path,
    fmt: str = "jpeg",
    *,
    progressive: bool = False,
    no_reuse: bool = False,
) -> None:
    await page.goto(service.url + "/")
    await page.set_input_files("#file", str(path))
    await page.fill("#quality", "60")
    await page.select_option("#format", fmt)
    await page.set_checked("#progressive", progressive)
    await page.set_checked("#no-reuse", no_reuse)
    await page.click("#submit")


async def completed_with_results_and_downloads(page: Page) -> str:
    """Wait for the job to complete, check the table and both downloads; the request id."""
    await expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT_MS)
    assert await page.locator("#progress").get_attribute("value") == "100"
    rows = page.locator("#results tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("Oak chair")
    await expect(rows.nth(1)).to_contain_text("Desk lamp")
    await expect(rows.nth(0).locator(".pair")).to_have_count(2)
    await expect(page.locator(".saving").first).to_contain_text("saved")
    outputs = page.locator('.pair img[alt="output"]')
    await expect(outputs).to_have_count(3)
    for n in range(3):  # each output image really loaded in the browser
        width = await outputs.nth(n).evaluate("img => img.complete && img.naturalWidth")
        assert width == 600

    async with page.expect_download() as info:
        await page.click("#download-csv")
    download = await info.value
    rows_csv = list(csv.reader(io.StringIO(Path(await download.path()).read_text())))
    assert rows_csv[0][-1] == "Output Image Urls"
    assert [r[1] for r in rows_csv[1:]] == ["Oak chair", "Desk lamp"]

    async with page.expect_download() as info:
        await page.click("#download-zip")
    archive = zipfile.ZipFile(await (await info.value).path())
    assert len([n for n in archive.namelist() if n.startswith("images/")]) == 3

    recent = page.locator("#recent li")
    await expect(recent.first).to_contain_text("completed")
    return (await page.locator("#job-id").text_content()) or ""


async def test_upload_progress_results_and_download(
    browser: Browser, service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    page = await browser.new_page(accept_downloads=True)
    await upload(page, service, products_csv(image_host, tmp_path), "avif")
    # The outputs are checked to load in the browser: Chromium decodes the AVIF files.
    request_id = await completed_with_results_and_downloads(page)
    _, details = await service.get(f"/api/details/{request_id}")
    assert details["options"] == {
        "quality": 60, "max_dimension": None, "format": "avif", "progressive": False,
        "sizes": [], "reuse": True,
    }  # fmt: skip
    assert details["products"][0]["output_image_urls"][0].endswith(".avif")
    assert await page.locator("#key-form").is_hidden()  # no keys: never asked for one


async def test_sizes_are_asked_on_the_form_and_picked_in_the_results(
    browser: Browser, service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    page = await browser.new_page(accept_downloads=True)
    await page.goto(service.url + "/")
    await page.set_input_files("#file", str(products_csv(image_host, tmp_path)))
    await page.fill("#sizes", "300, 150")
    await page.click("#submit")
    await expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT_MS)
    picker = page.locator("#size-pick")
    await expect(picker).to_be_visible()
    await expect(picker.locator("option")).to_have_text(["main output", "300 px", "150 px"])
    outputs = page.locator('.pair img[alt="output"]')
    for choice, width in (("300", 300), ("150", 150), ("", 600)):
        await picker.select_option(choice)
        await expect(outputs).to_have_count(3)
        for n in range(3):  # the picked size's image really loaded in the browser
            await expect(outputs.nth(n)).to_have_js_property("naturalWidth", width)
        await expect(page.locator(".pair figcaption").nth(1)).to_contain_text(f"{width}\u00d7")

    async with page.expect_download() as info:
        await page.click("#download-csv")
    header = next(csv.reader(io.StringIO(Path(await (await info.value).path()).read_text())))
    assert header[-3:] == ["Output Image Urls", "Output Image Urls 300", "Output Image Urls 150"]


async def test_a_job_without_sizes_offers_no_size_picker(
    browser: Browser, service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    page = await browser.new_page()
    await upload(page, service, products_csv(image_host, tmp_path))
    await expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT_MS)
    await expect(page.locator("#results tbody tr")).to_have_count(2)
    assert await page.locator("#size-picker").is_hidden()


async def test_with_api_keys_the_page_asks_for_a_key_and_sends_it(
    browser: Browser, image_host: ImageHost, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path / "data", api_keys=(KEY,))
    async with running_service(settings) as service:
        page = await browser.new_page(accept_downloads=True)
        api_calls: list[Request] = []
        page.on("request", lambda r: api_calls.append(r) if "/api/" in r.url else None)
        await page.goto(service.url + "/")
        form = page.locator("#key-form")
        await expect(form).to_be_visible(timeout=WAIT_MS)  # the job list answered 401
        await expect(page.locator("#key-message")).to_contain_text("needs an API key")
        await page.fill("#api-key", "not-the-key-0123456789")
        await page.click("#save-key")
        await expect(page.locator("#key-message")).to_contain_text("the API key is not valid")

        await page.fill("#api-key", KEY)
        await page.click("#save-key")
        await expect(form).to_be_hidden()
        assert await page.evaluate("localStorage.getItem('imgsvc.apiKey')") == KEY
        api_calls.clear()
        await upload(page, service, products_csv(image_host, tmp_path), progressive=True)
        request_id = await completed_with_results_and_downloads(page)

        routes = [urlsplit(r.url).path.split("/")[2] for r in api_calls]
        assert {"upload", "events", "details", "download", "archive", "jobs"} <= set(routes)
        for route, call in zip(routes, api_calls, strict=True):
            if route != "image":  # images stay open: <img> tags cannot send a header
                sent = await call.all_headers()
                assert sent.get("authorization") == f"Bearer {KEY}", call.url
        _, details = await service.with_key(KEY).get(f"/api/details/{request_id}")
        assert details["status"] == "completed"
        assert details["options"]["progressive"] is True

        await page.reload()  # the key is remembered: the recent jobs load without asking
        await expect(page.locator("#recent li").first).to_contain_text("completed")
        assert await form.is_hidden()


async def test_the_page_can_ask_to_make_every_image_again(
    browser: Browser, service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    path = products_csv(image_host, tmp_path)
    page = await browser.new_page()
    reused = []
    for no_reuse in (False, True, False):
        await upload(page, service, path, no_reuse=no_reuse)
        await expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT_MS)
        request_id = (await page.locator("#job-id").text_content()) or ""
        reused.append(
            (await service.get(f"/api/status/{request_id}"))[1]["progress"]["reused_images"]
        )
    assert reused == [0, 0, 3]


async def test_validation_errors_are_listed_by_line(
    browser: Browser, service: Service, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "S. No.,Product Name,Input Image Urls\n1,,https://example.com/a.jpg\n2,Lamp,ftp://x/y\n"
    )
    page = await browser.new_page()
    await upload(page, service, path)
    problems = page.locator("#problems li")
    await expect(problems).to_have_count(2, timeout=WAIT_MS)
    await expect(problems.nth(0)).to_contain_text("Line 2")
    await expect(problems.nth(1)).to_contain_text("Line 3")
    assert await page.locator("#job").is_hidden()


async def test_phone_width_has_no_sideways_scroll(
    browser: Browser, service: Service, image_host: ImageHost, tmp_path: Path
) -> None:
    page = await browser.new_page(viewport={"width": 375, "height": 740})
    await upload(page, service, products_csv(image_host, tmp_path))
    await expect(page.locator("#job-state")).to_have_text("completed", timeout=WAIT_MS)
    await expect(page.locator("#results tbody tr")).to_have_count(2)
    overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0
