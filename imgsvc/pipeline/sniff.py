"""What downloaded bytes are: the image format from its magic bytes, and words for a
person when they are not an image or do not decode."""

from __future__ import annotations

from PIL import UnidentifiedImageError

__all__ = ["PILLOW_FORMATS", "decode_message", "describe_non_image", "sniff_format"]

# Our format name -> its name in messages; upper-cased, Pillow's plugin name. Only these
# plugins ever see downloaded bytes.
_LABELS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WebP", "bmp": "BMP", "tiff": "TIFF"}
PILLOW_FORMATS = {name: label.upper() for name, label in _LABELS.items()}
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)
# Look-alikes worth naming in the error, so a person sees at once what the URL served.
_NOT_IMAGES = (
    (b"%PDF", "a PDF document"),
    (b"<?xml", "XML"),
    (b"<svg", "an SVG image, which is not supported"),
    (b"<", "HTML"),
    (b"{", "JSON"),
    (b"[", "JSON"),
)


def sniff_format(data: bytes) -> str | None:
    """Name the image format from the magic bytes alone, or None if it is not one we read."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def describe_non_image(data: bytes) -> str:
    """Say what `data`, which `sniff_format` does not know, is instead."""
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "the response is empty, not an image"
    if data[4:8] == b"ftyp":
        return "the data is HEIC or AVIF, which is not supported"
    for prefix, what in _NOT_IMAGES:
        if head.startswith(prefix):
            return f"the response is {what}, not an image"
    return "the data is not a JPEG, PNG, GIF, WebP, BMP or TIFF image"


def decode_message(source_format: str, exc: BaseException) -> str:
    """Say why Pillow could not decode an image of `source_format`, from what it raised."""
    label = _LABELS[source_format]
    if isinstance(exc, UnidentifiedImageError):
        # Pillow's own message names a BytesIO object, which helps nobody.
        return f"the {label} data is corrupt and could not be read"
    return f"the {label} image is truncated or corrupt and could not be decoded ({exc})"
