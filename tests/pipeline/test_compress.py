"""The compress step: real images made by Pillow, compressed into files, reopened and checked."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import itertools
import random
import resource
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageCms, ImageStat, JpegImagePlugin

from imgsvc.models import OutputFormat
from imgsvc.pipeline import jpeg, repack
from imgsvc.pipeline.compress import (
    EncodeOptions,
    ImageError,
    ImageResult,
    compress,
    compress_sizes,
)

MAX_PIXELS = 50_000_000
RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
Colour = tuple[int, ...]


# --- helpers ---------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    """The bytes a web server would serve for `image` saved as `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def run(
    tmp_path: Path,
    data: bytes,
    options: EncodeOptions | None = None,
    max_pixels: int = MAX_PIXELS,
) -> tuple[ImageResult, Image.Image, bytes]:
    """Compress into a real file as the service does; return the result and the output."""
    path = tmp_path / "out.img"
    with path.open("wb") as out:
        result = compress(data, out, options or EncodeOptions(), max_pixels)
    with Image.open(path) as output:
        output.load()
    return result, output, path.read_bytes()


def fails(tmp_path: Path, data: bytes, max_pixels: int = MAX_PIXELS) -> ImageError:
    with pytest.raises(ImageError) as caught:
        run(tmp_path, data, max_pixels=max_pixels)
    return caught.value


def pixel(image: Image.Image, xy: tuple[int, int]) -> Colour:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def near(actual: Colour, expected: Colour, tolerance: int = 6) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)
    )


def halves(mode: str, left: Any, right: Any, size: tuple[int, int] = (64, 32)) -> Image.Image:
    """An image whose left half is `left` and right half is `right`."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def left_right(output: Image.Image) -> tuple[Colour, Colour]:
    """The colours in the middle of each half, away from JPEG's blurring at the edge."""
    width, height = output.size
    return pixel(output, (width // 4, height // 2)), pixel(output, (3 * width // 4, height // 2))


def s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)


def desc_tag(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">IIHB", 0, 0, 0, 0)
        + b"\0" * 67
    )


D50 = (0.9642, 1.0, 0.8249)


def icc_profile(device_class: bytes, space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    """A version 2 ICC profile, assembled by hand so the tests need no profile files."""
    body, entries = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for signature, data in tags.items():
        padded = data + b"\0" * (-len(data) % 4)
        entries += struct.pack(">4sII", signature, start + len(body), len(data))
        body += padded
    header = struct.pack(
        ">I4sI4s4s4s12s4s4sI4s4s8sI12s4s44s",
        start + len(body),
        b"",
        0x02100000,
        device_class,
        space,
        pcs,
        b"",
        b"acsp",
        b"",
        0,
        b"",
        b"",
        b"",
        0,
        s15(D50[0]) + s15(D50[1]) + s15(D50[2]),
        b"",
        b"",
    )
    return header + struct.pack(">I", len(tags)) + entries + body


# Adobe RGB (1998): primaries adapted to D50 as in Adobe's own profile, gamma 563/256.
ADOBE_PRIMARIES = (
    (0.60974, 0.31111, 0.01947),
    (0.20528, 0.62567, 0.06087),
    (0.14919, 0.06322, 0.74457),
)
SRGB_PRIMARIES = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))


def adobe_rgb_profile() -> bytes:
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, 563)
    red, green, blue = ADOBE_PRIMARIES
    return icc_profile(
        b"mntr",
        b"RGB ",
        b"XYZ ",
        {
            b"desc": desc_tag("Adobe RGB (1998) test copy"),
            b"wtpt": xyz_tag(*D50),
            b"rXYZ": xyz_tag(*red),
            b"gXYZ": xyz_tag(*green),
            b"bXYZ": xyz_tag(*blue),
            b"rTRC": gamma,
            b"gTRC": gamma,
            b"bTRC": gamma,
        },
    )


# On the test press, black ink alone prints dark grey (linear 0.05, about sRGB 63); every
# other ink corner prints what the naive formula says. A naive conversion gives K as black.
K_ONLY_GREY = 63


def cmyk_profile() -> bytes:
    """An input CMYK profile: a 2x2x2x2 lookup table from ink corners to XYZ."""
    clut = b""
    for c, m, y, k in itertools.product((0, 1), repeat=4):
        linear: list[float] = [(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)]
        if (c, m, y, k) == (0, 0, 0, 1):
            linear = [0.05, 0.05, 0.05]
        xyz = [sum(linear[i] * SRGB_PRIMARIES[i][axis] for i in range(3)) for axis in range(3)]
        clut += struct.pack(">3H", *(round(v * 32768) for v in xyz))
    identity = s15(1) + s15(0) + s15(0) + s15(0) + s15(1) + s15(0) + s15(0) + s15(0) + s15(1)
    ramp = struct.pack(">2H", 0, 65535)  # straight-through input and output curves
    lut = b"mft2\0\0\0\0" + bytes((4, 3, 2, 0)) + identity + struct.pack(">HH", 2, 2)
    lut += ramp * 4 + clut + ramp * 3
    return icc_profile(
        b"scnr",
        b"CMYK",
        b"XYZ ",
        {b"desc": desc_tag("test CMYK"), b"wtpt": xyz_tag(*D50), b"A2B0": lut},
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size but whose pixel data would not even fill one row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 30))
        + png_chunk(b"IEND", b"")
    )


def gif_with_frames(frames: int, screen: int = 100) -> bytes:
    """A GIF of `frames` frames, each one black pixel, on a `screen` x `screen` canvas."""
    header = b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0x80, 0, 0) + bytes(6)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame * frames + b";"


# --- format sniffing and refusals ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"<!DOCTYPE html><html><body>Not found</body></html>",
            "the response is HTML, not an image",
        ),
        (b"\n  <html><head>", "the response is HTML, not an image"),
        (b"<?xml version='1.0'?><svg/>", "the response is XML, not an image"),
        (b'{"error": "forbidden"}', "the response is JSON, not an image"),
        (b"", "the response is empty, not an image"),
        (
            random.Random(1).randbytes(2000),
            "the data is not a JPEG, PNG, GIF, WebP, BMP or TIFF image",
        ),
    ],
)
def test_not_an_image(tmp_path: Path, data: bytes, message: str) -> None:
    error = fails(tmp_path, data)
    assert (error.code, error.message, str(error)) == ("not_an_image", message, message)


def jpeg_bytes() -> bytes:
    return encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")


def png_bytes() -> bytes:
    return encode(Image.effect_noise((64, 64), 50), "PNG")


@pytest.mark.parametrize(
    ("make", "cut", "label"),
    [
        (jpeg_bytes, 0.5, "JPEG"),
        (png_bytes, 0.5, "PNG"),
        (jpeg_bytes, 0.02, "JPEG"),
        (png_bytes, 0.1, "PNG"),
    ],
)
def test_truncated_data_is_a_decode_error(
    tmp_path: Path, make: Any, cut: float, label: str
) -> None:
    data: bytes = make()
    error = fails(tmp_path, data[: int(len(data) * cut)])
    assert error.code == "decode_error"
    assert f"the {label} " in error.message
    assert not (tmp_path / "out.img").read_bytes()  # nothing half-written


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_damaged_bytes_only_ever_raise_image_error(tmp_path: Path, fmt: str) -> None:
    image = halves("RGB", RED, BLUE, (48, 40))
    image.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    params = {"exif": exif.tobytes()} if fmt != "GIF" else {}
    good = encode(image, fmt, **params)
    rng = random.Random(fmt)
    codes: list[str] = []
    for _ in range(60):
        damaged = bytearray(good[: rng.randrange(8, len(good) + 1)])
        for _ in range(rng.randrange(4)):
            damaged[rng.randrange(2, len(damaged))] = rng.randrange(256)
        try:
            run(tmp_path, bytes(damaged), max_pixels=1_000_000)
        except ImageError as error:
            codes.append(error.code)
    assert codes  # the damage did reach the error paths
    assert set(codes) <= {"decode_error", "too_many_pixels", "not_an_image"}


# --- pixel limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"),
    [(30_000, 30_000), (10_000, 10_000), (10_000, 6_000)],  # Pillow's error, its warning, ours
)
def test_too_many_pixels_fails_before_decoding(tmp_path: Path, width: int, height: int) -> None:
    started = time.perf_counter()
    error = fails(tmp_path, png_header_only(width, height))
    assert error.code == "too_many_pixels"
    # Decoding even one of these would take seconds and gigabytes, so this is a fast fail.
    assert time.perf_counter() - started < 1


def test_too_many_pixels_names_the_size_and_limit(tmp_path: Path) -> None:
    error = fails(tmp_path, encode(Image.new("RGB", (300, 200)), "PNG"), max_pixels=50_000)
    assert error.code == "too_many_pixels"
    assert "300x200" in error.message
    assert "50,000" in error.message


def test_just_under_the_pixel_limit_is_fine(tmp_path: Path) -> None:
    result, _, _ = run(tmp_path, encode(Image.new("RGB", (300, 200)), "PNG"), max_pixels=60_000)
    assert (result.width, result.height) == (300, 200)


def test_gif_frames_count_towards_the_limit(tmp_path: Path) -> None:
    # 100 x 100 x 6000 frames = 60 MP
    error = fails(tmp_path, gif_with_frames(6000))
    assert error.code == "too_many_pixels"
    assert "100x100 pixels x 5001 or more frames" in error.message


def test_gif_with_a_million_frames_is_refused_fast(tmp_path: Path) -> None:
    data = gif_with_frames(1_000_000)
    started = time.perf_counter()
    error = fails(tmp_path, data)
    assert error.code == "too_many_pixels"
    assert time.perf_counter() - started < 1


def test_gif_with_many_frames_under_the_limit_is_compressed(tmp_path: Path) -> None:
    result, output, _ = run(tmp_path, gif_with_frames(4000))
    assert (result.source_format, output.size) == ("gif", (100, 100))


@pytest.mark.parametrize("big_tiff", [False, True])
def test_tiff_pages_count_towards_the_limit(tmp_path: Path, big_tiff: bool) -> None:
    pages = [Image.new("RGB", (10, 10), colour) for colour in (RED, GREEN, BLUE, BLACK, WHITE)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:], big_tiff=big_tiff)
    error = fails(tmp_path, data, max_pixels=499)
    assert (error.code, error.message) == (
        "too_many_pixels",
        "the image is 10x10 pixels x 5 or more frames, more than the limit of 499 pixels",
    )
    _, output, _ = run(tmp_path, data, max_pixels=500)
    assert near(pixel(output, (5, 5)), RED)


def test_animated_webp_frames_count_towards_the_limit(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert fails(tmp_path, data, max_pixels=299).code == "too_many_pixels"
    _, output, _ = run(tmp_path, data, max_pixels=300)
    assert near(pixel(output, (5, 5)), RED)


# --- formats and colour ----------------------------------------------------------------


def test_rgb_jpeg(tmp_path: Path) -> None:
    colour = (200, 30, 60)
    result, output, _ = run(tmp_path, encode(Image.new("RGB", (64, 48), colour), "JPEG"))
    assert result == ImageResult("jpeg", 64, 48)
    assert (output.format, output.mode, output.size) == ("JPEG", "RGB", (64, 48))
    assert near(pixel(output, (32, 24)), colour)


def test_rgba_png_transparency_becomes_white(tmp_path: Path) -> None:
    image = halves("RGBA", (0, 0, 0, 0), (255, 0, 0, 255))
    image.paste((0, 0, 0, 128), (0, 0, 16, 32))  # half-transparent black: mid grey on white
    result, output, _ = run(tmp_path, encode(image, "PNG"))
    assert (result.source_format, output.mode) == ("png", "RGB")
    assert near(pixel(output, (24, 16)), WHITE)
    assert near(pixel(output, (48, 16)), RED)
    assert near(pixel(output, (8, 16)), (127, 127, 127))


def test_palette_gif(tmp_path: Path) -> None:
    image = halves("RGB", (0, 128, 255), (250, 200, 0)).quantize(4)
    assert image.mode == "P"
    result, output, _ = run(tmp_path, encode(image, "GIF"))
    assert result.source_format == "gif"
    left, right = left_right(output)
    assert near(left, (0, 128, 255))
    assert near(right, (250, 200, 0))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(tmp_path: Path, fmt: str) -> None:
    image = Image.new("P", (64, 32), 0)
    image.putpalette([0, 0, 255, 0, 200, 0] + [0] * 762)
    image.paste(1, (32, 0, 64, 32))
    result, output, _ = run(tmp_path, encode(image, fmt, transparency=0))
    assert result.source_format == fmt.lower()
    left, right = left_right(output)
    assert near(left, WHITE)
    assert near(right, (0, 200, 0))


def test_animated_gif_keeps_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3
    result, output, _ = run(tmp_path, data)
    assert (result.width, result.height) == (40, 30)
    assert near(pixel(output, (20, 15)), RED)


def test_animated_png_keeps_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in (BLUE, RED)]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2  # an APNG indeed
    _, output, _ = run(tmp_path, data)
    assert near(pixel(output, (20, 15)), BLUE)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_other_input_formats(tmp_path: Path, fmt: str) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    result, output, _ = run(
        tmp_path, encode(halves("RGB", (20, 90, 200), (240, 240, 20)), fmt, **params)
    )
    assert result == ImageResult(fmt.lower(), 64, 32)
    left, right = left_right(output)
    assert near(left, (20, 90, 200))
    assert near(right, (240, 240, 20))


def cmyk_image() -> Image.Image:
    """Red, white and black-ink-only stripes, in CMYK."""
    image = Image.new("CMYK", (96, 32), (0, 255, 255, 0))
    image.paste((0, 0, 0, 0), (32, 0, 64, 32))
    image.paste((0, 0, 0, 255), (64, 0, 96, 32))
    return image


def stripes(output: Image.Image) -> list[Colour]:
    return [pixel(output, (x, 16)) for x in (16, 48, 80)]


def test_cmyk_jpeg_without_a_profile(tmp_path: Path) -> None:
    _, output, _ = run(tmp_path, encode(cmyk_image(), "JPEG", quality=95))
    red, white, black = stripes(output)
    assert output.mode == "RGB"
    assert near(red, RED, 8)
    assert near(white, WHITE, 8)
    assert near(black, BLACK, 8)


def test_cmyk_jpeg_with_a_profile_goes_through_the_profile(tmp_path: Path) -> None:
    data = encode(cmyk_image(), "JPEG", quality=95, icc_profile=cmyk_profile())
    _, output, _ = run(tmp_path, data)
    red, white, k_only = stripes(output)
    assert near(red, RED, 8)
    assert near(white, WHITE, 8)
    # The profile says black ink alone is dark grey; a naive conversion would say black.
    assert near(k_only, (K_ONLY_GREY,) * 3, 8)


# Adobe RGB values and the sRGB values they mean (computed from both primaries and curves).
ADOBE_TO_SRGB = [
    ((255, 255, 255), (255, 255, 255)),
    ((128, 128, 128), (129, 129, 129)),
    ((150, 100, 80), (167, 100, 78)),
    ((60, 160, 90), (0, 161, 85)),
    ((200, 50, 50), (232, 46, 46)),
]


def test_adobe_rgb_is_converted_to_srgb(tmp_path: Path) -> None:
    image = Image.new("RGB", (32 * len(ADOBE_TO_SRGB), 32))
    for index, (adobe, _) in enumerate(ADOBE_TO_SRGB):
        image.paste(adobe, (32 * index, 0, 32 * index + 32, 32))
    data = encode(image, "PNG", icc_profile=adobe_rgb_profile())
    _, output, raw = run(tmp_path, data)
    for index, (_, srgb) in enumerate(ADOBE_TO_SRGB):
        assert near(pixel(output, (32 * index + 16, 16)), srgb), (index, srgb)
    assert b"Adobe" not in raw


def test_a_lab_image_is_converted_like_imagecms_does(tmp_path: Path) -> None:
    image = Image.new("LAB", (32, 32), (140, 170, 100))  # L 55, a +42, b -28: a mauve
    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    expected = ImageCms.profileToProfile(image, lab, srgb, outputMode="RGB")
    assert expected is not None
    _, output, _ = run(tmp_path, encode(image, "TIFF"))
    assert near(pixel(output, (16, 16)), pixel(expected, (16, 16)), 4)
    assert not near(pixel(output, (16, 16)), (140, 170, 100), 10)


@pytest.mark.parametrize("icc", [b"not a profile at all", cmyk_profile()])
def test_a_broken_or_mismatched_profile_is_ignored(tmp_path: Path, icc: bytes) -> None:
    data = encode(Image.new("RGB", (32, 32), (10, 100, 200)), "PNG", icc_profile=icc)
    _, output, _ = run(tmp_path, data)
    assert near(pixel(output, (16, 16)), (10, 100, 200))


# --- modes -----------------------------------------------------------------------------


def grey_gradient(mode: str, top: float) -> Image.Image:
    """256 columns running from 0 to `top`."""
    image = Image.new(mode, (256, 8))
    for x in range(256):
        image.paste(x * top / 255 if mode == "F" else round(x * top / 255), (x, 0, x + 1, 8))
    return image


def premultiplied_la_tiff() -> bytes:
    """A TIFF in mode La (alpha already multiplied in), which Pillow reads but cannot write."""
    data = encode(halves("LA", (60, 255), (0, 0)), "TIFF")
    unassociated = struct.pack("<HHIHH", 338, 3, 1, 2, 0)  # ExtraSamples: 2 = plain alpha
    assert data.count(unassociated) == 1
    return data.replace(unassociated, struct.pack("<HHIHH", 338, 3, 1, 1, 0))


def palette_grey() -> Image.Image:
    image = halves("P", 0, 1)
    image.putpalette([40, 40, 40, 200, 200, 200])
    return image


def palette_alpha() -> Image.Image:
    image = Image.new("PA", (64, 32), (0, 255))
    image.putpalette([80, 80, 80] + [0] * 765)
    image.paste((0, 0), (32, 0, 64, 32))
    return image


MODE_CASES = [
    # (mode, a 64x32 image in that mode, grey in the left half, grey in the right half)
    ("1", encode(halves("1", 0, 1), "PNG"), 0, 255),
    ("L", encode(halves("L", 30, 220), "PNG"), 30, 220),
    ("LA", encode(halves("LA", (60, 255), (0, 0)), "PNG"), 60, 255),
    ("La", premultiplied_la_tiff(), 60, 255),
    ("PA", encode(palette_alpha(), "TIFF"), 80, 255),
    ("P", encode(palette_grey(), "BMP"), 40, 200),
    ("I;16", encode(halves("I;16", 0, 65535), "PNG"), 0, 255),
    ("I", encode(halves("I", 0, 32768), "TIFF"), 0, 128),
    ("I", encode(halves("I", -1000, 1_000_000), "TIFF"), 0, 255),
    ("F", encode(halves("F", 0.0, 0.5), "TIFF"), 0, 128),
    ("F", encode(halves("F", -3.0, 7.0), "TIFF"), 0, 255),
]


@pytest.mark.parametrize(
    ("mode", "data", "left", "right"),
    MODE_CASES,
    ids=[f"{case[0]}-{index}" for index, case in enumerate(MODE_CASES)],
)
def test_every_mode_gives_an_rgb_jpeg(
    tmp_path: Path, mode: str, data: bytes, left: int, right: int
) -> None:
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == mode  # the file really is in that mode
    _, output, _ = run(tmp_path, data)
    assert (output.format, output.mode, output.size) == ("JPEG", "RGB", (64, 32))
    left_colour, right_colour = left_right(output)
    assert [*left_colour, *right_colour] == pytest.approx([left] * 3 + [right] * 3, abs=6)


@pytest.mark.parametrize(
    ("mode", "container", "top"),
    [("I;16", "PNG", 65535), ("I;16", "TIFF", 65535), ("I", "TIFF", 65535), ("F", "TIFF", 1.0)],
)
def test_deep_gradients_keep_their_gradient(
    tmp_path: Path, mode: str, container: str, top: float
) -> None:
    data = encode(grey_gradient(mode, top), container)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == mode
    _, output, _ = run(tmp_path, data)
    for x in (10, 64, 128, 200, 250):
        value = pixel(output, (x, 4))
        assert near(value, (x, x, x), 6), (x, value)


# --- orientation and metadata ----------------------------------------------------------


def with_red_corner() -> Image.Image:
    """40x20, white, with a 10x10 red square in the top-left corner as stored."""
    image = Image.new("RGB", (40, 20), WHITE)
    image.paste(RED, (0, 0, 10, 10))
    return image


def exif_with(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# EXIF orientation -> displayed size and which corner the stored top-left lands in.
ORIENTATIONS = [
    (1, (40, 20), "top-left"),
    (2, (40, 20), "top-right"),
    (3, (40, 20), "bottom-right"),
    (4, (40, 20), "bottom-left"),
    (5, (20, 40), "top-left"),
    (6, (20, 40), "top-right"),
    (7, (20, 40), "bottom-right"),
    (8, (20, 40), "bottom-left"),
]


def corners(image: Image.Image) -> dict[str, Colour]:
    width, height = image.size
    return {
        "top-left": pixel(image, (4, 4)),
        "top-right": pixel(image, (width - 5, 4)),
        "bottom-left": pixel(image, (4, height - 5)),
        "bottom-right": pixel(image, (width - 5, height - 5)),
    }


def red_corner(image: Image.Image) -> list[str]:
    return [name for name, colour in corners(image).items() if near(colour, RED, 40)]


@pytest.mark.parametrize(("orientation", "size", "corner"), ORIENTATIONS)
def test_exif_orientation_is_applied(
    tmp_path: Path, orientation: int, size: tuple[int, int], corner: str
) -> None:
    data = encode(with_red_corner(), "JPEG", quality=95, exif=exif_with(orientation).tobytes())
    result, output, _ = run(tmp_path, data)
    assert (result.width, result.height) == size == output.size
    assert red_corner(output) == [corner]
    assert 0x0112 not in output.getexif()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_exif_orientation_in_other_formats(tmp_path: Path, fmt: str) -> None:
    params: dict[str, Any] = {"exif": exif_with(6).tobytes()}
    if fmt == "WEBP":
        params["lossless"] = True
    _, output, _ = run(tmp_path, encode(with_red_corner(), fmt, **params))
    assert output.size == (20, 40)
    assert red_corner(output) == ["top-right"]


def test_orientation_and_shrinking_together(tmp_path: Path) -> None:
    image = with_red_corner().resize((400, 200))
    data = encode(image, "JPEG", quality=95, exif=exif_with(8).tobytes())
    _, output, _ = run(tmp_path, data, EncodeOptions(max_dimension=100))
    assert output.size == (50, 100)
    assert red_corner(output) == ["bottom-left"]


def camera_metadata(with_icc: bool) -> dict[str, Any]:
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "Acme Camera Co"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return {
        "exif": exif.tobytes(),
        "comment": b"shot by Jane Doe",
        "xmp": b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret location</x:xmpmeta>',
    } | ({"icc_profile": srgb} if with_icc else {})


@pytest.mark.parametrize("with_icc", [True, False])
@pytest.mark.parametrize("output_format", list(OutputFormat))
def test_metadata_is_stripped(tmp_path: Path, output_format: OutputFormat, with_icc: bool) -> None:
    metadata = camera_metadata(with_icc)
    data = encode(Image.new("RGB", (64, 48), (90, 120, 150)), "JPEG", **metadata)
    with Image.open(io.BytesIO(data)) as check:  # the input really carries all of it
        assert check.getexif().get_ifd(0x8825)[1] == "N"
        assert {"exif", "comment", "xmp"} | {"icc_profile"} & set(metadata) <= set(check.info)
    _, output, raw = run(tmp_path, data, EncodeOptions(format=output_format))
    assert len(output.getexif()) == 0
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(output.info)
    for secret in (b"Acme", b"Jane", b"secret location", b"Exif", b"ICC_PROFILE", b"ICCP"):
        assert secret not in raw


# --- encoding options ------------------------------------------------------------------


def photo(size: tuple[int, int] = (128, 96)) -> Image.Image:
    return Image.radial_gradient("L").resize(size).convert("RGB")


def quantization(image: Image.Image) -> Any:
    """The JPEG quantization tables, which are what `quality` chooses."""
    return getattr(image, "quantization", None)


@pytest.mark.parametrize(("quality", "same_as_reference"), [(50, True), (90, False)])
def test_jpeg_quality_sets_the_quantization_tables(
    tmp_path: Path, quality: int, same_as_reference: bool
) -> None:
    tables = quantization(Image.open(io.BytesIO(encode(photo(), "JPEG", quality=50))))
    _, output, _ = run(tmp_path, encode(photo(), "PNG"), EncodeOptions(quality=quality))
    assert tables
    assert (quantization(output) == tables) is same_as_reference


def test_default_quality_is_50_baseline_jpeg(tmp_path: Path) -> None:
    tables = quantization(Image.open(io.BytesIO(encode(photo(), "JPEG", quality=50))))
    _, output, _ = run(tmp_path, encode(photo(), "PNG"))
    assert quantization(output) == tables
    assert "progressive" not in output.info
    assert "progression" not in output.info


@pytest.mark.parametrize(
    ("size", "max_dimension", "expected"),
    [
        ((1200, 800), 600, (600, 400)),
        ((800, 1200), 600, (400, 600)),
        ((1200, 800), 500, (500, 333)),
        ((1200, 800), None, (1200, 800)),
        ((300, 200), 600, (300, 200)),  # never enlarged
        ((600, 400), 600, (600, 400)),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_max_dimension_only_shrinks(
    tmp_path: Path,
    fmt: str,
    size: tuple[int, int],
    max_dimension: int | None,
    expected: tuple[int, int],
) -> None:
    image = photo(size)
    image.paste(RED, (0, 0, size[0] // 2, size[1] // 2))
    result, output, _ = run(
        tmp_path, encode(image, fmt), EncodeOptions(max_dimension=max_dimension)
    )
    assert (result.width, result.height) == expected == output.size
    assert near(pixel(output, (expected[0] // 4, expected[1] // 4)), RED, 10)


def test_big_jpegs_are_decoded_at_reduced_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drafts: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: Any) -> Any:
        result = original(self, mode, size)
        drafts.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    data = encode(photo((2400, 1600)), "JPEG")
    result, _, _ = run(tmp_path, data, EncodeOptions(max_dimension=500))
    # libjpeg scales by 1/2, 1/4 or 1/8 while decoding: 1/4 is the smallest still >= 500x333
    assert drafts == [(600, 400)]
    assert (result.width, result.height) == (500, 333)


def test_webp_output(tmp_path: Path) -> None:
    data = encode(halves("RGBA", (0, 0, 0, 0), (0, 0, 255, 255)), "PNG")
    result, output, _ = run(tmp_path, data, EncodeOptions(format=OutputFormat.WEBP, quality=80))
    assert result == ImageResult("png", 64, 32)
    assert (output.format, output.mode) == ("WEBP", "RGB")
    left, right = left_right(output)
    assert near(left, WHITE)
    assert near(right, BLUE, 10)


def test_webp_quality_changes_the_size(tmp_path: Path) -> None:
    data = encode(Image.effect_noise((128, 128), 60).convert("RGB"), "PNG")
    sizes = [
        len(run(tmp_path, data, EncodeOptions(format=OutputFormat.WEBP, quality=q))[2])
        for q in (10, 90)
    ]
    assert sizes[0] < sizes[1]


def test_output_format_names_extensions_and_content_types() -> None:
    assert [(f.value, f.extension, f.content_type) for f in OutputFormat] == [
        ("jpeg", "jpg", "image/jpeg"),
        ("webp", "webp", "image/webp"),
        ("avif", "avif", "image/avif"),
    ]
    assert OutputFormat("avif") is OutputFormat.AVIF


@functools.cache
def grain(size: tuple[int, int]) -> bytes:
    """Film grain the same in every run: Pillow's effect_noise differs each call."""
    rng = random.Random(size[0])
    return bytes(min(255, max(0, round(rng.gauss(128, 40)))) for _ in range(size[0] * size[1]))


def textured() -> Image.Image:
    """Smooth areas, fine detail and grain, like a photograph: what Huffman tables code."""
    size = (256, 192)
    channels = (
        Image.radial_gradient("L").resize(size),
        Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 100),
        Image.frombytes("L", size, grain(size)),
    )
    return Image.merge("RGB", channels)


def test_jpeg_has_the_same_pixels_as_plain_libjpeg_in_fewer_bytes(tmp_path: Path) -> None:
    image = textured()
    plain = encode(image, "JPEG", quality=50, optimize=False)
    _, output, raw = run(tmp_path, encode(image, "PNG"))
    assert output.tobytes() == Image.open(io.BytesIO(plain)).tobytes()
    assert len(raw) < 0.95 * len(plain)


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("JPEG", "RGB"), ("JPEG", "L")])
def test_jpeg_is_the_file_pillow_writes_with_optimized_tables(
    tmp_path: Path, fmt: str, mode: str
) -> None:
    """A JPEG that needs only a new encoding skips Pillow, into the very same file."""
    data = encode(textured().convert(mode), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(data)) as source:
        expected = encode(source.convert("RGB"), "JPEG", quality=50, optimize=True)
    result, _, raw = run(tmp_path, data)
    assert raw == expected
    assert not result.kept_input
    assert (result.width, result.height) == (256, 192)


def test_a_jpeg_libjpeg_only_warns_about_is_compressed(tmp_path: Path) -> None:
    data = encode(textured(), "JPEG", quality=95)
    # Extraneous bytes before the end-of-image marker: libjpeg warns and decodes the rest.
    warned = data[:-2] + b"\0\0" + data[-2:]
    _, output, _ = run(tmp_path, warned)
    _, clean, _ = run(tmp_path, data)
    assert output.tobytes() == clean.tobytes()


def scans(raw: bytes) -> int:
    """How many start-of-scan markers a JPEG has; coded data never holds one (0xFF is
    followed by 0x00 there)."""
    return raw.count(b"\xff\xda")


@pytest.mark.parametrize("progressive", [False, True])
def test_progressive_jpeg(tmp_path: Path, progressive: bool) -> None:
    data = encode(textured(), "PNG")
    _, output, raw = run(tmp_path, data, EncodeOptions(progressive=progressive))
    # A progressive JPEG is one SOF2 frame sent in several scans, coarse to fine.
    assert bool(output.info.get("progressive")) is progressive
    assert (b"\xff\xc2" in raw) is progressive
    assert (scans(raw) > 1) is progressive
    _, baseline, _ = run(tmp_path, data)
    assert output.tobytes() == baseline.tobytes()  # the same picture, in another order


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_jpeg_cut_short_by_a_full_disk_is_an_error(tmp_path: Path, fmt: str) -> None:
    """RLIMIT_FSIZE makes the kernel write only part of a large write, as a full disk does."""
    data = encode(
        Image.frombytes("RGB", (600, 600), random.Random(1).randbytes(600 * 600 * 3)),
        fmt,
        quality=95,
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    try:
        with pytest.raises(OSError, match="File too large") as caught:
            run(tmp_path, data, EncodeOptions(quality=95))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert caught.value.errno == errno.EFBIG


def nclx(raw: bytes) -> tuple[int, int]:
    """The colour primaries and transfer curve an AVIF file declares in its colr box."""
    at = raw.index(b"colrnclx") + 8
    primaries, transfer = struct.unpack_from(">HH", raw, at)
    return primaries, transfer


@pytest.mark.parametrize("output_format", list(OutputFormat))
def test_every_format_decodes_at_its_size_in_srgb(
    tmp_path: Path, output_format: OutputFormat
) -> None:
    image = Image.new("RGB", (64 * len(ADOBE_TO_SRGB), 64))
    for index, (adobe, _) in enumerate(ADOBE_TO_SRGB):
        image.paste(adobe, (64 * index, 0, 64 * index + 64, 64))
    data = encode(image, "PNG", icc_profile=adobe_rgb_profile())
    options = EncodeOptions(quality=90, max_dimension=160, format=output_format)
    result, output, raw = run(tmp_path, data, options)
    assert (result.width, result.height) == output.size == (160, 32)
    assert (output.format, output.mode) == (output_format.name, "RGB")
    assert "icc_profile" not in output.info  # untagged: the web reads it as sRGB
    for index, (_, srgb) in enumerate(ADOBE_TO_SRGB):
        assert near(pixel(output, (32 * index + 16, 16)), srgb, 8), (index, srgb)
    if output_format is OutputFormat.AVIF:
        assert nclx(raw) == (1, 13)  # BT.709 primaries and the sRGB curve: sRGB


@pytest.mark.parametrize(("quality", "max_dimension"), [(0, None), (101, None), (50, 0)])
def test_encode_options_refuse_nonsense(quality: int, max_dimension: int | None) -> None:
    with pytest.raises(ValueError, match="must be"):
        EncodeOptions(quality=quality, max_dimension=max_dimension)


# --- never larger than the input -------------------------------------------------------


def small_poor_jpeg(optimize: bool = True, **params: Any) -> bytes:
    """A thumbnail a shop already squeezed to quality 30 (with tables made for it)."""
    image = textured().resize((96, 72))
    return encode(image, "JPEG", quality=30, optimize=optimize, **params)


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return image


def test_a_small_poor_jpeg_never_comes_out_larger(tmp_path: Path) -> None:
    data = small_poor_jpeg()
    # A new encoding at the default quality 50 would be larger: what keeping the input is for.
    assert len(encode(decoded(data), "JPEG", quality=50, optimize=True)) > len(data)
    result, output, raw = run(tmp_path, data)
    assert result == ImageResult("jpeg", 96, 72, kept_input=True)
    assert len(raw) <= len(data)
    assert output.tobytes() == decoded(data).tobytes()  # the input's own picture


def test_the_kept_input_has_no_metadata(tmp_path: Path) -> None:
    metadata = camera_metadata(with_icc=False)
    with_metadata, without = small_poor_jpeg(**metadata), small_poor_jpeg()
    result, output, raw = run(tmp_path, with_metadata)
    assert result.kept_input
    assert len(raw) <= len(without) < len(with_metadata)
    assert len(output.getexif()) == 0
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(output.info)
    for secret in (b"Acme", b"Jane", b"secret location", b"Exif"):
        assert secret not in raw
    assert output.tobytes() == decoded(with_metadata).tobytes()


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_with_plain_tables_is_repacked_losslessly(tmp_path: Path, progressive: bool) -> None:
    data = small_poor_jpeg(optimize=False)  # libjpeg's stock Huffman tables
    options = EncodeOptions(quality=80, progressive=progressive)
    result, output, raw = run(tmp_path, data, options)
    assert result.kept_input
    assert len(raw) < 0.9 * len(data)
    assert output.tobytes() == decoded(data).tobytes()
    assert (scans(raw) > 1) is progressive


def test_without_jpegtran_the_input_is_still_kept_without_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without libjpeg-turbo's programs
    repack._jpegtran.cache_clear()
    try:
        data = small_poor_jpeg(optimize=False, **camera_metadata(with_icc=False))
        result, output, raw = run(tmp_path, data, EncodeOptions(quality=95))
    finally:
        repack._jpegtran.cache_clear()
    assert result.kept_input
    assert len(raw) == len(small_poor_jpeg(optimize=False))  # stripped, not re-packed
    assert b"Acme" not in raw
    assert output.tobytes() == decoded(data).tobytes()


def test_a_new_encoding_that_is_smaller_is_kept(tmp_path: Path) -> None:
    image = textured()
    data = encode(image, "JPEG", quality=95)
    result, output, raw = run(tmp_path, data)
    assert not result.kept_input
    assert len(raw) < len(data) / 2
    assert quantization(output) == quantization(decoded(encode(image, "JPEG", quality=50)))


@pytest.mark.parametrize(
    ("data", "options"),
    [
        (small_poor_jpeg(), EncodeOptions(max_dimension=48)),  # resized
        (small_poor_jpeg(exif=exif_with(6).tobytes()), EncodeOptions()),  # turned upright
        (small_poor_jpeg(icc_profile=adobe_rgb_profile()), EncodeOptions()),  # other colours
        (small_poor_jpeg(), EncodeOptions(format=OutputFormat.WEBP)),  # another format
        (encode(decoded(small_poor_jpeg()), "PNG"), EncodeOptions()),  # not a JPEG
    ],
    ids=["resized", "turned", "converted", "webp", "png"],
)
def test_the_input_is_kept_only_when_nothing_but_the_encoding_changes(
    tmp_path: Path, data: bytes, options: EncodeOptions
) -> None:
    result, _, _ = run(tmp_path, data, options)
    assert not result.kept_input


@pytest.mark.parametrize("jpegtran", [True, False])
def test_an_mpo_keeps_its_first_picture_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jpegtran: bool
) -> None:
    first, second = textured().resize((96, 72)), Image.new("RGB", (96, 72), RED)
    data = encode(first, "MPO", quality=30, optimize=True, save_all=True, append_images=[second])
    assert decoded(data).format == "MPO"
    if not jpegtran:
        monkeypatch.setenv("PATH", str(tmp_path))  # only the stripped input can be kept
    repack._jpegtran.cache_clear()
    try:
        result, output, raw = run(tmp_path, data)
    finally:
        repack._jpegtran.cache_clear()
    assert result.kept_input
    assert raw.count(b"\xff\xd8") == 1  # one picture, not two
    assert output.tobytes() == decoded(data).tobytes()


def test_damaged_jpegs_that_could_be_kept_only_ever_raise_image_error(tmp_path: Path) -> None:
    good = small_poor_jpeg(optimize=False)
    rng = random.Random(3)
    outcomes: list[str] = []
    for _ in range(60):
        damaged = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            damaged[rng.randrange(2, len(damaged))] = rng.randrange(256)
        try:
            result, _, _ = run(tmp_path, bytes(damaged), EncodeOptions(quality=95))
        except ImageError as error:
            outcomes.append(error.code)
        else:
            outcomes.append("kept" if result.kept_input else "encoded")
    assert "kept" in outcomes  # the damage did reach the re-pack
    assert set(outcomes) <= {"kept", "encoded", "decode_error"}


def test_the_kept_input_replaces_all_of_the_new_encoding(tmp_path: Path) -> None:
    path = tmp_path / "out.jpg"
    with path.open("wb") as out:
        out.write(b"header")  # the caller's own bytes before the image stay
        result = compress(small_poor_jpeg(), out, EncodeOptions(quality=95), MAX_PIXELS)
    raw = path.read_bytes()
    assert result.kept_input
    assert raw.startswith(b"header\xff\xd8")
    assert raw.endswith(b"\xff\xd9")
    assert decoded(raw[len(b"header") :]).size == (96, 72)


# --- several sizes from one decode -------------------------------------------------------


def run_sizes(
    tmp_path: Path, data: bytes, sizes: tuple[int, ...], options: EncodeOptions | None = None
) -> tuple[list[ImageResult], list[Image.Image]]:
    """compress_sizes into real files; the results and the outputs, main first."""
    paths = [tmp_path / f"out-{n}.img" for n in range(1 + len(sizes))]
    with contextlib.ExitStack() as files:
        outs = [files.enter_context(path.open("w+b")) for path in paths]
        results = compress_sizes(data, outs, options or EncodeOptions(), sizes, MAX_PIXELS)
    outputs: list[Image.Image] = []
    for path in paths:
        with Image.open(path) as output:
            output.load()
            outputs.append(output)
    return results, outputs


def test_each_size_is_one_more_output_in_the_order_asked(tmp_path: Path) -> None:
    data = encode(gradient_picture(1200, 900), "JPEG", quality=90)
    results, outputs = run_sizes(tmp_path, data, (300, 1600, 800))
    expected = [(1200, 900), (300, 225), (1200, 900), (800, 600)]  # never enlarged
    assert [(r.width, r.height) for r in results] == expected
    assert [o.size for o in outputs] == expected
    assert not any(r.kept_input for r in results[1:])


def test_sizes_with_max_dimension_decode_small_and_still_look_right(tmp_path: Path) -> None:
    # Every output is at most 600 px: the JPEG is decoded at a quarter of its 2400 px,
    # and each smaller output is made from the one before it.
    picture = gradient_picture(2400, 1600)
    data = encode(picture, "JPEG", quality=95)
    options = EncodeOptions(quality=90, max_dimension=600)
    _, outputs = run_sizes(tmp_path, data, (150, 300), options)
    assert [o.size for o in outputs] == [(600, 400), (150, 100), (300, 200)]
    for output in outputs:
        reference = picture.resize(output.size, Image.Resampling.LANCZOS)
        difference = ImageStat.Stat(ImageChops.difference(output.convert("RGB"), reference))
        assert max(difference.mean) < 3, output.size


def test_a_bad_image_with_sizes_is_one_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        run_sizes(tmp_path, b"<html>nope</html>", (100,))
    assert caught.value.code == "not_an_image"


def gradient_picture(width: int, height: int) -> Image.Image:
    """A smooth picture with some shapes: JPEG keeps it close, so looks can be compared."""
    red = Image.linear_gradient("L").resize((width, height))
    green = red.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    return Image.merge("RGB", (red, green, blue))


@pytest.mark.skipif(not jpeg.can_resize(), reason="cykooz-resizer has no wheel here")
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_sizes_of_a_jpeg_that_needs_only_encoding_skip_pillow(tmp_path: Path, mode: str) -> None:
    """Renditions resampled in libjpeg's arrays: exact sizes, Pillow's look, and the main
    output still the very file Pillow writes."""
    data = encode(textured().convert(mode), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as source:
        picture = source.convert("RGB")
    results, outputs = run_sizes(tmp_path, data, (100, 1000, 64))
    expected = [(256, 192), (100, 75), (256, 192), (64, 48)]
    assert [(r.width, r.height) for r in results] == expected
    assert [(o.size, o.mode) for o in outputs] == [(size, "RGB") for size in expected]
    main = (tmp_path / "out-0.img").read_bytes()
    assert main == encode(picture, "JPEG", quality=50, optimize=True)
    assert (tmp_path / "out-2.img").read_bytes() == main  # never enlarged: the same file
    pixels = jpeg.decode(data)
    assert pixels is not None
    larger, smaller = jpeg.resize_down(pixels, [(100, 75), (64, 48)])  # each from the one before
    for n, resized in ((1, larger), (3, smaller)):
        assert (tmp_path / f"out-{n}.img").read_bytes() == jpeg.encode(resized, 50)
        # Pillow's bicubic filter, to within rounding.
        pillow = picture.resize(resized.shape[1::-1], Image.Resampling.BICUBIC)
        made = Image.fromarray(resized[..., :3])  # RGBX: the fourth byte is unused
        assert max(ImageStat.Stat(ImageChops.difference(made, pillow)).mean) < 1
