"""Writing a decoded picture in the output format: Pillow's encoders with the settings
chosen for them, or libjpeg-turbo straight from an array (`jpeg`)."""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from PIL import Image

from ..models import OutputFormat
from . import jpeg

__all__ = ["Picture", "write"]

Picture = Image.Image | jpeg.Pixels
"""A decoded picture: a Pillow image, or RGB samples for `jpeg.encode`."""

# Encoder settings chosen on real photographs with scripts/bench_images.py --settings;
# sizes compared at the same SSIMULACRA2 score. WebP's method 5 of 0-6: 3% smaller than
# the default 4 for a tenth more time; 6 saves 3% more in almost twice the time.
_WEBP: dict[str, Any] = {"method": 5}
# AVIF's speed 8 of 0-10: 32% smaller than JPEG at the same quality, with a better look.
# The default 6 is 10% smaller still but takes three times as long, 7 5% for 1.5 times;
# 9 is 9% larger in a quarter of the time and falls below JPEG's look. 4:4:4 would be 1%
# smaller at the same look, but needs AV1's High profile, beyond the Baseline profile of
# AVIF that every decoder reads. One thread: the service already runs one encode per core.
_AVIF: dict[str, Any] = {"speed": 8, "subsampling": "4:2:0", "max_threads": 1}


def write(
    picture: Picture, out: BinaryIO, fmt: OutputFormat, quality: int, progressive: bool
) -> None:
    """Encode `picture` into `out` as `fmt` without any metadata; `progressive` is for JPEG
    and cannot be had for `jpeg.Pixels`, which are always a baseline JPEG."""
    if not isinstance(picture, Image.Image):
        out.write(jpeg.encode(picture, quality))  # a whole write: raises when cut short
        return
    picture.info = {}  # savers read some metadata (the comment) from it
    if fmt is OutputFormat.WEBP:
        picture.save(out, "WEBP", quality=quality, **_WEBP)
    elif fmt is OutputFormat.AVIF:
        picture.save(out, "AVIF", quality=quality, **_AVIF)
    else:
        # Optimized Huffman tables: the very same pixels in 6% fewer bytes on photographs,
        # for 3 ms more CPU per megapixel.
        picture.save(out, "JPEG", quality=quality, optimize=True, progressive=progressive)
        _check_room(out)


def _check_room(out: BinaryIO) -> None:
    """Raise the disk's own OSError if it filled up while the JPEG was being written.

    With optimized tables Pillow writes the whole JPEG with one write() and does not check
    that all of it went: on a full disk the kernel writes what fits and says how much, and
    the file would be cut short without a word. One more byte, written and taken back,
    meets the error that the cut write kept to itself.
    """
    fd, end = out.fileno(), out.tell()
    os.pwrite(fd, b"\0", end)  # ENOSPC, EDQUOT or EFBIG when there is no more room
    os.ftruncate(fd, end)
