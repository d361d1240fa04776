"""libjpeg-turbo without Pillow in between, for a JPEG that needs nothing but a new encoding
(and maybe smaller renditions of itself, `resize_down`).

Pillow keeps an RGB pixel in four bytes and has libjpeg work in three, so Pillow unpacks
every pixel after decoding and packs it again before encoding. Decoding into an array that
libjpeg fills directly (simplejpeg) and encoding from it (imagecodecs, which unlike
simplejpeg can optimize the Huffman tables) skips both copies: on the bench's photos
5.7 ms instead of 8.0 to decode and 5.5 instead of 6.4 to encode (medians on a busy 2-core
VM; see docs/performance.md). Both bundle libjpeg-turbo 3, as Pillow does, and the encoder
is given Pillow's settings, so the file is byte for byte the one Pillow writes (the tests
compare them). Both release the GIL while they work.

The pixels are kept as Pillow keeps RGB, four bytes each (RGBX, the fourth unused): libjpeg
writes and reads that layout as cheaply as three bytes, and it lets the renditions of
`sizes` be resampled without a copy. fast_image_resize's SIMD code (cykooz-resizer) reads
and writes Pillow images in place, and a Pillow image can be a view of an RGBX array, so
each size is resampled from the array of the one before straight into its own array.
Through the resizer's own buffers (it takes only `bytes`) every picture was copied twice
in and once out: a quarter of the time of 1200 -> 800 -> 300 px on the bench's photos.
The filter is Pillow's bicubic (Catmull-Rom): on the bench's photos 1200 -> 800 px took
3.1 ms against Pillow's 12.5, and 800 -> 300 1.0 against 4.2, within 54 dB (PSNR) of
Pillow's own bicubic and 52 dB of Lanczos, where JPEG at quality 50 changes a picture by
38 dB. OpenCV's INTER_AREA (5.0 + 1.8 ms, 49 dB) was slower, in a 61 MB wheel; its
INTER_LINEAR (1.1 + 0.2 ms) aliases below half size (45 dB); cheaper filters (bilinear,
Mitchell, a fixed-size kernel) lost 1 to 4 SSIMULACRA2 points on real photographs. See
docs/performance.md. The resizer has wheels for Linux x86_64 only; elsewhere such JPEGs go
through Pillow.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import imagecodecs
import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image

try:
    import cykooz_resizer
    from cykooz_resizer.alpha import set_image_mode
except ImportError:  # no wheel for this platform: see the module's docstring
    cykooz_resizer = None

__all__ = ["Pixels", "can_resize", "decode", "encode", "keep_freed_memory", "resize_down"]

Pixels = npt.NDArray[np.uint8]
"""Height x width x 4 samples: red, green, blue and an unused fourth (RGBX)."""

_RGBX = 4  # bytes a pixel
# libjpeg's default for colour, which Pillow keeps at every quality: chroma at half the
# resolution both ways (4:2:0).
_SUBSAMPLING = (2, 2)
# glibc's mallopt parameters, and the sizes of freed blocks it is asked to keep.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BLOCKS_UP_TO = 32 << 20  # the largest threshold glibc would pick itself, on 64-bit
_KEEP_FREE_AT_TOP = 64 << 20


def decode(data: bytes) -> Pixels | None:
    """The JPEG's first picture as RGBX (grey repeated in the three channels, as Pillow's
    convert does); None when simplejpeg refuses it, even for what libjpeg only warns
    about (a scan cut short, which Pillow calls an error), so that Pillow decides as it
    does for every other image."""
    try:
        pixels: Pixels = simplejpeg.decode_jpeg(data, "RGBX", strict=True)
    except ValueError:
        return None
    return pixels


def encode(pixels: Pixels, quality: int) -> bytes | bytearray:
    """A baseline JPEG with optimized Huffman tables and no metadata, as Pillow writes it."""
    return imagecodecs.jpeg8_encode(
        pixels,
        quality,
        optimize=True,
        subsampling=_SUBSAMPLING,
        # Named, not "RGBX": a string with four channels would make a four-component JPEG.
        colorspace=imagecodecs.JPEG8.CS.EXT_RGBX,
        outcolorspace=imagecodecs.JPEG8.CS.YCbCr,
    )


def can_resize() -> bool:
    """Whether `resize_down` is there (cykooz-resizer is installed)."""
    return cykooz_resizer is not None


def resize_down(pixels: Pixels, sizes: Sequence[tuple[int, int]]) -> list[Pixels]:
    """`pixels` resampled to each of `sizes` (width, height; largest first), each from the
    one before, with Pillow's bicubic filter; releases the GIL. Only when `can_resize()`."""
    assert cykooz_resizer is not None
    bicubic = cykooz_resizer.ResizeAlg.convolution(cykooz_resizer.FilterType.catmull_rom)
    options = cykooz_resizer.ResizeOptions(bicubic)
    # A resizer keeps scratch buffers and refuses a second thread; a new one costs 1 us.
    resizer = cykooz_resizer.Resizer()
    resized: list[Pixels] = []
    source = _as_image(pixels)
    for width, height in sizes:
        pixels = np.empty((height, width, _RGBX), np.uint8)
        target = _as_image(pixels)
        resizer.resize_pil(source, target, options)
        resized.append(pixels)
        source = target
    return resized


def _as_image(pixels: Pixels) -> Image.Image:
    """A Pillow RGB image whose pixels are `pixels`' memory: Pillow's RGB is RGBX inside,
    and Pillow maps an RGBX buffer rather than copying it. Writing into the image (as the
    resizer does, through its pointers) writes into the array."""
    height, width = pixels.shape[:2]
    image = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
    set_image_mode(image, "RGB")  # the resizer's own relabelling: it takes RGB, not RGBX
    return image


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
