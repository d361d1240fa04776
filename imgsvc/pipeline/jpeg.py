"""libjpeg-turbo without Pillow in between, for a JPEG that needs nothing but a new encoding.

Pillow keeps an RGB pixel in four bytes and libjpeg in three, so Pillow unpacks every
pixel after decoding and packs it again before encoding. Decoding into an array that
libjpeg fills directly (simplejpeg) and encoding from it (imagecodecs, which unlike
simplejpeg can optimize the Huffman tables) skips both copies: on the bench's photos
5.7 ms instead of 8.0 to decode and 5.5 instead of 6.4 to encode (medians on a busy 2-core
VM; see docs/performance.md). Both bundle libjpeg-turbo 3, as Pillow does, and the encoder
is given Pillow's settings, so the file is byte for byte the one Pillow writes (the tests
compare them). Both release the GIL while they work.
"""

from __future__ import annotations

import ctypes

import imagecodecs
import numpy as np
import numpy.typing as npt
import simplejpeg

__all__ = ["Pixels", "decode", "encode", "keep_freed_memory"]

Pixels = npt.NDArray[np.uint8]
"""Height x width x 3 RGB samples."""

# libjpeg's default for colour, which Pillow keeps at every quality: chroma at half the
# resolution both ways (4:2:0).
_SUBSAMPLING = (2, 2)
# glibc's mallopt parameters, and the sizes of freed blocks it is asked to keep.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BLOCKS_UP_TO = 32 << 20  # the largest threshold glibc would pick itself, on 64-bit
_KEEP_FREE_AT_TOP = 64 << 20


def decode(data: bytes) -> Pixels | None:
    """The JPEG's first picture as RGB (grey repeated in the three channels, as Pillow's
    convert does); None when simplejpeg refuses it, even for what libjpeg only warns
    about (a scan cut short, which Pillow calls an error), so that Pillow decides as it
    does for every other image."""
    try:
        pixels: Pixels = simplejpeg.decode_jpeg(data, "RGB", strict=True)
    except ValueError:
        return None
    return pixels


def encode(pixels: Pixels, quality: int) -> bytes | bytearray:
    """A baseline JPEG with optimized Huffman tables and no metadata, as Pillow writes it."""
    return imagecodecs.jpeg8_encode(pixels, quality, optimize=True, subsampling=_SUBSAMPLING)


def keep_freed_memory() -> None:
    """Have malloc (glibc's; others are left alone) reuse freed blocks of up to 32 MiB.

    Each image takes and gives back an array and libjpeg's buffers of a few MB (4 MB each
    for a 1200x1200 photo). glibc maps blocks that large from the kernel and unmaps them
    when freed, so the next image's pages are faulted in and zeroed afresh: measured 1,600
    page faults and 4-5 ms of system CPU per image, more than skipping Pillow saves. glibc
    would raise that threshold itself after unmapping a few, but Pillow's block cache
    (compress.keep_memory_for) keeps the blocks that would teach it.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return
    mallopt(_M_MMAP_THRESHOLD, _KEEP_BLOCKS_UP_TO)
    mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_AT_TOP)
