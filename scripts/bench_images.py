"""Bytes, look and encode time of each output format on real photographs, offline.

The photographs are the ones scikit-image ships inside its wheel (nothing is downloaded):
nine in colour, six in grey, 6 megapixels in all. Every encoder is handed each as a BMP,
whose decoding costs next to nothing, so the time is the encode's. The look is
SSIMULACRA2 against the photograph (100 identical, 90 visually lossless, 70 high, 50
medium), as computed by the ssimulacra2 package, a port of libjxl's tool to NumPy.
The baseline is plain Pillow at quality 50, what imgsvc wrote before optimized tables.

    python scripts/bench_images.py [--settings]

--settings adds the runs the encoders' settings in imgsvc.pipeline.encoders were chosen
by (WebP's method, AVIF's speed and subsampling); they take a few minutes more.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

import PIL
import pyjpegli
from PIL import Image
from ssimulacra2 import compute_ssimulacra2

from imgsvc.models import OutputFormat
from imgsvc.pipeline.compress import EncodeOptions, ImageResult, compress

# scikit-image's bundled photographs (its other samples are drawings, scans or textures
# made up, or are fetched from the internet on first use).
PHOTOGRAPHS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
MAX_PIXELS = 50_000_000
# jpegli's quality at which its mean score meets plain Pillow's at 50 on these photographs.
JPEGLI_MATCHED = 56

# Every encoder starts from the same BMP bytes, so each time includes the same decoding.
Encoder = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Photograph:
    name: str
    image: Image.Image  # RGB
    png: bytes  # the reference the look is scored against
    bmp: bytes  # what every encoder is given

    @property
    def megapixels(self) -> float:
        return self.image.width * self.image.height / 1e6


@dataclass(frozen=True)
class Row:
    label: str
    mean_bytes: float
    score: float
    cpu_ms_per_mp: float


def photographs() -> list[Photograph]:
    folder = resources.files("skimage") / "data"
    found = []
    for name in PHOTOGRAPHS:
        with Image.open(io.BytesIO((folder / name).read_bytes())) as source:
            image = source.convert("RGB")
        found.append(Photograph(name, image, saved(image, "PNG"), saved(image, "BMP")))
    return found


def saved(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def by_compress(options: EncodeOptions) -> Encoder:
    """imgsvc's own encode: `compress` into a real file, as the service calls it."""

    def encode(bmp: bytes) -> bytes:
        with tempfile.TemporaryFile() as out:
            compress(bmp, out, options, MAX_PIXELS)
            out.seek(0)
            return out.read()

    return encode


def by_pillow(fmt: str, **params: object) -> Encoder:
    """Pillow's own saver, into memory."""
    return lambda bmp: saved(decoded(bmp), fmt, **params)


def by_jpegli(quality: int) -> Encoder:
    """Google's jpegli encoder through the pyjpegli binding."""

    def encode(bmp: bytes) -> bytes:
        image = decoded(bmp)
        jpeg: bytes = pyjpegli.encode(image.tobytes(), *image.size, quality=quality)
        return jpeg

    return encode


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    image.info = {}  # no resolution or other metadata for the savers to write
    return image


def measure(label: str, encoder: Encoder, photos: list[Photograph]) -> Row:
    sizes, scores, times = [], [], []
    for photo in photos:
        data, cpu = timed(encoder, photo)
        sizes.append(len(data))
        scores.append(compute_ssimulacra2(io.BytesIO(photo.png), io.BytesIO(data)))
        times.append(1000 * cpu / photo.megapixels)
    return Row(label, statistics.mean(sizes), statistics.mean(scores), statistics.median(times))


def timed(encoder: Encoder, photo: Photograph) -> tuple[bytes, float]:
    """The encoding, and the CPU seconds of the fastest of two runs."""
    best = float("inf")
    for _ in range(2):
        start = cpu_seconds()
        data = encoder(photo.bmp)
        best = min(best, cpu_seconds() - start)
    return data, best


def cpu_seconds() -> float:
    """CPU time of this process and the programs it ran (jpegtran), not wall time: the
    machine may be busy with other work."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def markdown(header: list[str], lines: list[list[str]]) -> Iterator[str]:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    rule = ["-" * widths[0]] + ["-" * (width - 1) + ":" for width in widths[1:]]
    for cells in (header, rule, *lines):
        padded = [cell.rjust(width) for cell, width in zip(cells, widths, strict=True)]
        padded[0] = cells[0].ljust(widths[0])
        yield "| " + " | ".join(padded) + " |"


def table(rows: list[Row], baseline: Row) -> Iterator[str]:
    header = ["format and options", "mean bytes", "vs baseline", "SSIMULACRA2", "CPU ms/MP"]
    lines = [
        [
            row.label,
            f"{row.mean_bytes:,.0f}",
            f"{row.mean_bytes / baseline.mean_bytes:.3f}",
            f"{row.score:.2f}",
            f"{row.cpu_ms_per_mp:.1f}",
        ]
        for row in rows
    ]
    return markdown(header, lines)


def goal(name: str, row: Row, baseline: Row, smaller_by: float) -> str:
    saved_share = 1 - row.mean_bytes / baseline.mean_bytes
    met = saved_share >= smaller_by and row.score >= baseline.score
    return (
        f"{name}: {saved_share:.1%} smaller than the baseline (goal {smaller_by:.0%}), "
        f"score {row.score:.2f} against {baseline.score:.2f}: {'met' if met else 'NOT met'}"
    )


def formats(photos: list[Photograph]) -> Iterator[str]:
    baseline = measure(
        "Pillow JPEG q50, plain (the baseline)", by_pillow("JPEG", quality=50), photos
    )
    jpeg = by_compress(EncodeOptions())
    rows = [
        baseline,
        measure("imgsvc JPEG q50 (optimized tables), the default", jpeg, photos),
        measure(
            "imgsvc JPEG q50 progressive", by_compress(EncodeOptions(progressive=True)), photos
        ),
        measure("imgsvc WebP q50", by_compress(EncodeOptions(format=OutputFormat.WEBP)), photos),
        measure("imgsvc AVIF q50", by_compress(EncodeOptions(format=OutputFormat.AVIF)), photos),
        measure("candidate: jpegli q50 (pyjpegli)", by_jpegli(50), photos),
        measure(
            f"candidate: jpegli q{JPEGLI_MATCHED} (pyjpegli)", by_jpegli(JPEGLI_MATCHED), photos
        ),
    ]
    yield from table(rows, baseline)
    yield ""
    yield goal("default JPEG", rows[1], baseline, 0.10)
    yield goal("AVIF", rows[4], baseline, 0.25)
    yield goal(f"jpegli q{JPEGLI_MATCHED} (not used)", rows[6], baseline, 0.10)


def settings(photos: list[Photograph]) -> Iterator[str]:
    """Each encoder at the settings around the chosen one, all through Pillow."""
    pillow: list[tuple[str, str, dict[str, object]]] = [
        ("Pillow JPEG q50, plain (the baseline)", "JPEG", {"quality": 50}),
        ("JPEG q50 optimized tables", "JPEG", {"quality": 50, "optimize": True}),
        ("JPEG q50 progressive", "JPEG", {"quality": 50, "optimize": True, "progressive": True}),
    ]
    pillow += [(f"WebP q50 method {m}", "WEBP", {"quality": 50, "method": m}) for m in (4, 5, 6)]
    avif = [(50, speed, "4:2:0") for speed in (6, 7, 8, 9)]
    avif += [(45, 8, "4:2:0"), (45, 8, "4:4:4"), (50, 8, "4:4:4"), (55, 8, "4:2:0")]
    for quality, speed, subsampling in avif:
        # One thread, as imgsvc encodes: CPU time then matches what one image costs.
        params = {"quality": quality, "speed": speed, "subsampling": subsampling, "max_threads": 1}
        pillow.append((f"AVIF q{quality} speed {speed} {subsampling}", "AVIF", params))
    rows = [measure(label, by_pillow(fmt, **params), photos) for label, fmt, params in pillow]
    yield from table(rows, rows[0])


def never_larger(photos: list[Photograph]) -> Iterator[str]:
    """JPEG in, JPEG out at the default quality 50: how often the input is kept, what the
    output weighs against the input, and how much jpegtran's lossless re-pack (what compress
    runs) could save, which compress only tries when the new encoding is not much smaller."""
    header = ["JPEG input", "mean bytes in", "mean bytes out", "input kept", "out/in at most"]
    header += ["compress CPU ms/MP", "jpegtran saves at most"]
    lines = []
    for quality, optimize in ((30, False), (30, True), (50, False), (85, False), (95, False)):
        ins, outs, kept, times, repacked = [], [], 0, [], []
        for photo in photos:
            data = saved(photo.image, "JPEG", quality=quality, optimize=optimize)
            start = cpu_seconds()
            result, written = compressed(data, EncodeOptions())
            times.append(1000 * (cpu_seconds() - start) / photo.megapixels)
            ins.append(len(data))
            outs.append(written)
            kept += result.kept_input
            repacked.append(len(jpegtran(data)))
        lines.append(
            [
                f"q{quality}" + (", optimized tables" if optimize else ""),
                f"{statistics.mean(ins):,.0f}",
                f"{statistics.mean(outs):,.0f}",
                f"{kept} of {len(photos)}",
                f"{max(o / i for o, i in zip(outs, ins, strict=True)):.3f}",
                f"{statistics.median(times):.1f}",
                f"{max(1 - r / i for r, i in zip(repacked, ins, strict=True)):.1%}",
            ]
        )
    return markdown(header, lines)


def jpegtran(jpeg: bytes) -> bytes:
    """What compress's re-pack makes of a baseline JPEG: the same coefficients, new tables."""
    command = ["jpegtran", "-copy", "none", "-optimize"]
    done = subprocess.run(command, input=jpeg, capture_output=True, check=True)  # noqa: S603
    return done.stdout


def compressed(data: bytes, options: EncodeOptions) -> tuple[ImageResult, int]:
    with tempfile.TemporaryFile() as out:
        return compress(data, out, options, MAX_PIXELS), out.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", action="store_true", help="also the encoder settings runs")
    args = parser.parse_args()
    photos = photographs()
    megapixels = sum(photo.megapixels for photo in photos)
    print(f"{len(photos)} photographs from scikit-image, {megapixels:.1f} MP in all;", end=" ")
    print(f"Pillow {PIL.__version__}\n")
    print("Output formats, quality 50:\n")
    for line in formats(photos):
        print(line, flush=True)
    print("\nNever larger than the input (JPEG in, default options):\n")
    for line in never_larger(photos):
        print(line, flush=True)
    if args.settings:
        print("\nEncoder settings:\n")
        for line in settings(photos):
            print(line, flush=True)


if __name__ == "__main__":
    main()
