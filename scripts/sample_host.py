"""A local image host for the demo, the benchmark and the README walkthrough.

Serves photo-like JPEGs made by Pillow at /images/<n>.jpg (every number works; the
pictures repeat every few numbers) and writes a products CSV that points at them.

    python scripts/sample_host.py --port 8001 --products 3 --csv products.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from functools import cache
from pathlib import Path

from aiohttp import web
from PIL import Image, ImageDraw, ImageFilter

DISTINCT = 8


@cache
def photo(seed: int, size: int) -> bytes:
    """A JPEG that compresses like a photo: gradients, shapes, soft edges and grain."""
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    tint = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    image = Image.blend(base, tint, 0.6)
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(size), rng.randrange(size)
        r = rng.randrange(size // 40, size // 6)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(size / 300))
    grain = Image.effect_noise((size, size), 24).convert("RGB")
    image = Image.blend(image, grain, 0.15)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def make_app(size: int) -> web.Application:
    async def serve(request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        return web.Response(body=photo(number % DISTINCT, size), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get(r"/images/{number:\d+}.jpg", serve)
    return app


def products_csv(base: str, products: int, per_product: int, distinct: int | None = None) -> str:
    """A products CSV whose image URLs point at this host (repeating every `distinct`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["S. No.", "Product Name", "Input Image Urls"])
    for n in range(products):
        numbers = [n * per_product + i for i in range(per_product)]
        if distinct:
            numbers = [x % distinct for x in numbers]
        writer.writerow([n + 1, f"SKU{n + 1}", ",".join(f"{base}/images/{x}.jpg" for x in numbers)])
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--size", type=int, default=1200, help="width and height in pixels")
    parser.add_argument("--csv", type=Path, help="write a products CSV here")
    parser.add_argument("--products", type=int, default=3)
    parser.add_argument("--per-product", type=int, default=2)
    args = parser.parse_args()
    if args.csv:
        base = f"http://{args.host}:{args.port}"
        args.csv.write_text(
            products_csv(base, args.products, args.per_product), encoding="utf-8", newline=""
        )
        print(f"wrote {args.csv}: {args.products} products pointing at {base}/images/")
    web.run_app(make_app(args.size), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
