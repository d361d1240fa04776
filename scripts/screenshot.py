"""Take docs/screenshot.png: the page after a finished upload, in headless Chromium.

Needs a running service and a CSV whose images it can fetch, e.g. from `make demo`'s
pieces: scripts/sample_host.py and `IMGSVC_ALLOW_PRIVATE_URLS=1 imgsvc serve`.

    python scripts/screenshot.py --server http://127.0.0.1:8000 --csv products.csv
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from playwright.async_api import async_playwright, expect

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


async def shoot(server: str, csv_path: Path, out: Path, width: int) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = await browser.new_page(viewport={"width": width, "height": 900})
        await page.goto(server + "/")
        await page.set_input_files("#file", str(csv_path))
        await page.click("#submit")
        await expect(page.locator("#job-state")).to_have_text("completed", timeout=120_000)
        await page.wait_for_load_state("networkidle")
        await page.screenshot(path=str(out), full_page=True)
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args()
    asyncio.run(shoot(args.server.rstrip("/"), args.csv, args.out, args.width))


if __name__ == "__main__":
    main()
