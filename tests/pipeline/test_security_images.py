"""Hostile images: through the running service, and the memory a bomb costs, measured.

tests/test_images.py checks imgsvc.images directly; here the same inputs go through an
upload, and each must fail (or succeed) as its own image while the job goes on.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ..conftest import ImageHost, Service, jpeg_bytes
from ..security_support import image_outcomes, one_per_row
from .test_compress import (
    camera_metadata,
    cmyk_image,
    cmyk_profile,
    encode,
    gif_with_frames,
    halves,
    palette_alpha,
    png_header_only,
)

MIB = 1024 * 1024


async def outcomes_of(service: Service, urls: list[str]) -> dict[str, dict[str, Any]]:
    status, answer = await service.upload(one_per_row(urls))
    assert status == 202
    return await image_outcomes(service, answer["request_id"])


async def fetch_output(service: Service, url: str) -> bytes:
    async with service.client.get(url) as response:
        assert response.status == 200
        return await response.read()


@pytest.mark.anyio
async def test_bombs_and_broken_files_fail_their_own_image(
    service: Service, image_host: ImageHost
) -> None:
    good = jpeg_bytes(200, 150)
    png = encode(halves("RGB", (10, 20, 30), (200, 100, 50)), "PNG")
    corrupt_png = png[:40] + bytes(b ^ 0x5A for b in png[40:-12]) + png[-12:]
    urls = {
        "good": image_host.add("/good.jpg", good),
        "png_bomb": image_host.add("/bomb.png", png_header_only(30_000, 30_000), "image/png"),
        "gif_frames": image_host.add("/frames.gif", gif_with_frames(10_000), "image/gif"),
        "truncated": image_host.add("/truncated.jpg", good[: len(good) // 3]),
        "corrupt": image_host.add("/corrupt.png", corrupt_png, "image/png"),
        "header_only": image_host.add("/header.jpg", good[:20]),
    }
    outcomes = await outcomes_of(service, list(urls.values()))
    got = {name: (outcomes[u]["error"] or {}).get("code") for name, u in urls.items()}
    assert got == {
        "good": None,
        "png_bomb": "too_many_pixels",
        "gif_frames": "too_many_pixels",
        "truncated": "decode_error",
        "corrupt": "decode_error",
        "header_only": "decode_error",
    }
    assert "50,000,000" in outcomes[urls["png_bomb"]]["error"]["message"]
    assert outcomes[urls["good"]]["status"] == "succeeded"


def mode_samples() -> dict[str, bytes]:
    """One small file per Pillow mode the issue names, each saved in a format that keeps it."""
    transparent_p = Image.new("P", (64, 32), 0)
    transparent_p.putpalette([255, 0, 0, 0, 0, 255])
    transparent_p.paste(1, (32, 0, 64, 32))
    return {
        "1": encode(halves("1", 0, 1), "PNG"),
        "L": encode(halves("L", 30, 220), "PNG"),
        "LA": encode(halves("LA", (60, 255), (0, 0)), "PNG"),
        "P": encode(transparent_p, "PNG", transparency=1),
        "PA": encode(palette_alpha(), "TIFF"),
        "RGBA": encode(halves("RGBA", (255, 0, 0, 255), (0, 0, 255, 0)), "PNG"),
        "CMYK": encode(cmyk_image(), "JPEG", quality=95),
        "CMYK+ICC": encode(cmyk_image(), "JPEG", quality=95, icc_profile=cmyk_profile()),
        "I;16": encode(halves("I;16", 0, 65535), "PNG"),
    }


@pytest.mark.anyio
async def test_every_mode_comes_out_as_a_plain_srgb_jpeg(
    service: Service, image_host: ImageHost
) -> None:
    samples = mode_samples()
    urls = {
        mode: image_host.add(f"/{n}.img", data) for n, (mode, data) in enumerate(samples.items())
    }
    outcomes = await outcomes_of(service, list(urls.values()))
    for mode, url in urls.items():
        outcome = outcomes[url]
        assert outcome["status"] == "succeeded", (mode, outcome["error"])
        output = Image.open(io.BytesIO(await fetch_output(service, outcome["output_url"])))
        # RGB with no embedded profile is how sRGB is written: every viewer assumes it.
        assert (output.format, output.mode) == ("JPEG", "RGB"), mode
        assert output.size == Image.open(io.BytesIO(samples[mode])).size, mode
        assert "icc_profile" not in output.info, mode
    transparent = Image.open(
        io.BytesIO(await fetch_output(service, outcomes[urls["P"]]["output_url"]))
    )
    assert transparent.getpixel((48, 16)) == pytest.approx((255, 255, 255), abs=8)  # on white


@pytest.mark.anyio
async def test_exif_and_gps_never_reach_an_output(service: Service, image_host: ImageHost) -> None:
    metadata = camera_metadata(with_icc=True)
    photo = Image.new("RGB", (64, 48), (90, 120, 150))
    urls = [
        image_host.add("/camera.jpg", encode(photo, "JPEG", **metadata)),
        image_host.add("/camera.png", encode(photo, "PNG", exif=metadata["exif"])),
        image_host.add("/camera.webp", encode(photo, "WEBP", exif=metadata["exif"])),
    ]
    outcomes = await outcomes_of(service, urls)
    for url in urls:
        raw = await fetch_output(service, outcomes[url]["output_url"])
        output = Image.open(io.BytesIO(raw))
        assert len(output.getexif()) == 0, url
        for secret in (b"Exif", b"Acme", b"Jane", b"secret location", b"GPS", b"ICC_PROFILE"):
            assert secret not in raw, (url, secret)


# The child measures its own peak resident memory (VmHWM) around one compress call, after
# a warm-up call has loaded Pillow's plugins. Not ru_maxrss: Linux carries that over from
# the parent (pytest, far bigger) across exec, which would hide any growth.
MEASURE = """
import io, json, sys, tempfile
from pathlib import Path
from imgsvc.pipeline.compress import EncodeOptions, ImageError, compress
from PIL import Image

def peak():
    status = Path("/proc/self/status").read_text()
    line = next(l for l in status.splitlines() if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

def run(data, max_pixels):
    with tempfile.TemporaryFile() as out:
        try:
            compress(data, out, EncodeOptions(), max_pixels)
            return "ok"
        except ImageError as exc:
            return exc.code

for fmt in ("PNG", "GIF", "JPEG"):
    warm = io.BytesIO()
    Image.new("RGB", (8, 8)).save(warm, fmt)
    run(warm.getvalue(), 50_000_000)
data = Path(sys.argv[1]).read_bytes()
before = peak()
outcome = run(data, int(sys.argv[2]))
print(json.dumps({"outcome": outcome, "grew": peak() - before}))
"""


def peak_growth(tmp_path: Path, data: bytes, max_pixels: int = 50_000_000) -> tuple[str, int]:
    """(outcome, bytes the child's peak memory grew by) for compressing `data`."""
    source = tmp_path / "input.bin"
    source.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(source), str(max_pixels)],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    result = json.loads(done.stdout)
    return result["outcome"], result["grew"]


@pytest.mark.parametrize(
    "bomb",
    [png_header_only(30_000, 30_000), gif_with_frames(10_000), gif_with_frames(200_000, 300)],
    ids=["png-30000x30000", "gif-10000-frames", "gif-200000-frames"],
)
def test_a_bomb_does_not_make_memory_jump(tmp_path: Path, bomb: bytes) -> None:
    outcome, grew = peak_growth(tmp_path, bomb)
    assert outcome == "too_many_pixels"
    # Decoding the PNG would take 2.7 GB, the GIFs 100 MB and more; the refusal takes
    # next to nothing (the control below shows the probe does see a real decode).
    assert grew < 16 * MIB, f"peak memory grew by {grew / MIB:.1f} MiB"


def test_the_memory_probe_sees_a_real_decode(tmp_path: Path) -> None:
    large = encode(Image.new("RGB", (5000, 4000), (10, 20, 30)), "PNG")  # 60 MB of pixels
    outcome, grew = peak_growth(tmp_path, large)
    assert outcome == "ok"
    assert grew > 40 * MIB
