"""Naming the format of downloaded bytes from their magic bytes alone."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imgsvc.pipeline.sniff import sniff_format


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JPEG", "jpeg"),
        ("PNG", "png"),
        ("GIF", "gif"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("TIFF", "tiff"),
    ],
)
def test_sniff_format_knows_the_six_formats(fmt: str, expected: str) -> None:
    assert sniff_format(encode(Image.new("RGB", (4, 4)), fmt)) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html></html>",
        b"RIFF\0\0\0\0WAVEfmt ",
        b"\0\0\0\x1cftypavif",
        b"%PDF-1.7",
        b"\xff\xd8",
    ],
)
def test_sniff_format_refuses_other_bytes(data: bytes) -> None:
    assert sniff_format(data) is None
