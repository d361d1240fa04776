"""Pillow: image bytes in, re-compressed RGB images out (synchronous; run it in threads).

Nothing here touches the network, the database or file names: the caller hands over the
downloaded bytes and an open file, and gets back what was written or an `ImageError`. A
JPEG that needs nothing but a new encoding skips Pillow's pixels (`jpeg`), and so do the
smaller sizes made from it; one that may come out smaller re-packed than re-encoded goes
through libjpeg-turbo's jpegtran program too.
"""

from __future__ import annotations

import io
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO, TypeVar

from PIL import Image, ImageCms, _imaging

from ..models import OutputFormat
from . import jpeg, repack, sniff
from .encoders import Picture, write
from .frames import count_frames
from .srgb import to_srgb

__all__ = [
    "EncodeOptions",
    "ImageError",
    "ImageResult",
    "compress",
    "compress_sizes",
    "keep_memory_for",
]


P = TypeVar("P", Image.Image, jpeg.Pixels)


class ImageError(Exception):
    """An image that cannot be produced; `code` is one of the design's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode the output image."""

    quality: int = 50
    max_dimension: int | None = None  # longest side in px, only ever shrinks
    format: OutputFormat = OutputFormat.JPEG
    progressive: bool = False  # JPEG only: a blurred whole first, sharpened as it loads

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be between 1 and 100, not {self.quality}")
        if self.max_dimension is not None and self.max_dimension < 1:
            raise ValueError(f"max_dimension must be at least 1, not {self.max_dimension}")


@dataclass(frozen=True)
class ImageResult:
    """What `compress` read and wrote."""

    source_format: str  # "jpeg", "png", "gif", "webp", "bmp", "tiff"
    width: int  # of the output
    height: int
    # The input JPEG's own picture was written (without metadata, maybe losslessly
    # re-packed) because it was smaller than a new encoding of it.
    kept_input: bool = False


# What Pillow raises for bytes it cannot make sense of; each becomes a decode_error.
# UserWarning is here because a warning is an exception when warnings are errors.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    EOFError,
    struct.error,
    LookupError,
    ArithmeticError,
    ImageCms.PyCMSError,
    UserWarning,
)
# The extra outputs of `sizes` are resized with Pillow's thumbnail() defaults: on the bench's
# 1200x1200 photos, 1200 -> 800 -> 300 took 20 ms with bicubic against 28 ms with Lanczos,
# and came within 52 dB (PSNR) of Lanczos, far below what JPEG at quality 50 changes.
# jpeg.resize_down uses the same filter, four times as fast, for the JPEGs that skip Pillow.
_SIZES_FILTER = (Image.Resampling.BICUBIC, 2.0)


def keep_memory_for(threads: int) -> None:
    """Let Pillow reuse freed image memory instead of asking the OS for fresh pages each time.

    Without a cache every decoded image is new memory the kernel must fault in and zero,
    which on a small VM costs as much CPU as the decoding itself (measured: 20 ms instead
    of 11 ms for a 1200x1200 JPEG). A few blocks per thread cover the images in flight.
    The same holds for the arrays of JPEGs that skip Pillow (`jpeg.keep_freed_memory`).
    """
    _imaging.set_blocks_max(4 * threads)
    jpeg.keep_freed_memory()


def compress(data: bytes, out: BinaryIO, options: EncodeOptions, max_pixels: int) -> ImageResult:
    """Decode `data`, make it an sRGB RGB image per `options`, and encode it into `out`.

    The one-output case of `compress_sizes`: see there.
    """
    return compress_sizes(data, [out], options, (), max_pixels)[0]


def compress_sizes(
    data: bytes,
    outs: Sequence[BinaryIO],
    options: EncodeOptions,
    sizes: Sequence[int],
    max_pixels: int,
) -> list[ImageResult]:
    """Decode `data` once; encode the main output (`options`) into `outs[0]` and the image
    fitted to each of `sizes` (longest side in px, never enlarged) into `outs[1:]`.

    `outs` must be real files, open for reading too: Pillow releases the GIL while encoding
    to a file descriptor, and an output the same size as an earlier one is copied from it.
    A JPEG main output that needs nothing but a new encoding never comes out larger: when
    the input's own picture, without metadata (and maybe losslessly re-packed), is smaller,
    it is written over the new encoding.
    Raises ImageError with code not_an_image, too_many_pixels or decode_error.
    """
    if len(outs) != 1 + len(sizes):
        raise ValueError(f"{len(outs)} files for 1 + {len(sizes)} outputs")
    source_format = sniff.sniff_format(data)
    if source_format is None:
        raise ImageError("not_an_image", sniff.describe_non_image(data))
    # Baseline JPEGs from a JPEG: maybe no Pillow at all.
    jpeg_in_and_out = (
        source_format == "jpeg"
        and options.format is OutputFormat.JPEG
        and not options.progressive
        and (not sizes or jpeg.can_resize())
    )
    try:
        decoded, untouched = _decode(
            data, source_format, [options.max_dimension, *sizes], max_pixels, jpeg_in_and_out
        )
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own message names its limit, not ours, and talks of DOS attacks.
        raise ImageError(
            "too_many_pixels",
            f"{source_format.upper()} image is larger than the limit of {max_pixels:,} pixels",
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageError("decode_error", sniff.decode_message(source_format, exc)) from exc
    out = outs[0]
    start = out.tell()
    write(decoded[0], out, options.format, options.quality, options.progressive)
    kept_input = (
        untouched
        and source_format == "jpeg"
        and options.format is OutputFormat.JPEG
        and repack.keep_input_if_smaller(data, out, start, options.progressive)
    )
    results = [ImageResult(source_format, *_size(decoded[0]), kept_input)]
    written = {id(decoded[0]): (out, start)}  # an output made once is copied, not encoded again
    for picture, size_out in zip(decoded[1:], outs[1:], strict=True):
        if id(picture) in written:
            _copy(*written[id(picture)], size_out)
        else:
            written[id(picture)] = (size_out, size_out.tell())
            write(picture, size_out, options.format, options.quality, options.progressive)
        results.append(ImageResult(source_format, *_size(picture)))
    return results


def _size(picture: Picture) -> tuple[int, int]:
    """Width and height."""
    if isinstance(picture, Image.Image):
        return picture.size
    height, width = picture.shape[:2]
    return width, height


def _copy(source: BinaryIO, start: int, out: BinaryIO) -> None:
    """Copy what was written to `source` from `start` on into `out`."""
    source.flush()
    source.seek(start)
    shutil.copyfileobj(source, out)


def _decode(
    data: bytes,
    source_format: str,
    dimensions: Sequence[int | None],
    max_pixels: int,
    jpeg_in_and_out: bool,
) -> tuple[list[Picture], bool]:
    """Decode the first frame once into upright, sRGB, 8-bit RGB pictures, one per longest
    side in `dimensions` (None: as large as it is), none larger than the input.

    Also says whether the first picture is the decoded input as it was: not resized, turned
    or converted to other colours. Such a picture from a JPEG, with every output a baseline
    JPEG (`jpeg_in_and_out`), comes as `jpeg.Pixels` for `jpeg.encode`, and so do the
    smaller ones made from it.
    """
    with Image.open(io.BytesIO(data), formats=[sniff.PILLOW_FORMATS[source_format]]) as source:
        _check_pixels(source, data, source_format, max_pixels)
        targets = [_fit(source.size, d) for d in dimensions]
        if jpeg_in_and_out and _needs_only_encoding(source, targets[0]):
            pixels = jpeg.decode(data)
            if pixels is not None:
                made = _resized(pixels, targets, jpeg.resize_down)
                # Grey is converted, as below.
                return [made[target] for target in targets], source.mode == "RGB"
        largest = max(targets)  # one aspect ratio: the widest is the largest
        same_size = targets[0] == source.size
        if largest != source.size:
            # JPEG decodes at 1/2, 1/4 or 1/8 scale for free (never below the largest
            # output); other formats ignore this.
            source.draft(None, largest)
        # One read and one decode call for the whole image: Pillow's default of 64 KiB
        # blocks takes the GIL back between blocks, which the event loop then waits for.
        source.decodermaxblock = len(data)
        source.load()
        # Read after load(): the TIFF plugin turns the image itself while loading and then
        # drops the tag, and a PNG may keep its EXIF after the pixel data.
        orientation = _orientation(source)
        image = to_srgb(source)
    untouched = same_size and orientation is None and image is source
    resized = _resized(image, targets, partial(_resize_down, main=targets[0]))
    # Rotating last turns the smallest images; the longest side does not depend on it.
    if orientation is not None:
        resized = {size: picture.transpose(orientation) for size, picture in resized.items()}
    return [resized[target] for target in targets], untouched


def _resized(
    picture: P,
    targets: Sequence[tuple[int, int]],
    resize_down: Callable[[P, Sequence[tuple[int, int]]], list[P]],
) -> dict[tuple[int, int], P]:
    """`picture` at each target size, by `resize_down` from the largest to the smallest,
    each made from the one before: fewer pixels to read for each smaller one."""
    made = {_size(picture): picture} if _size(picture) in targets else {}
    smaller = [size for size in sorted(set(targets), reverse=True) if size not in made]
    if smaller:  # none for one output
        made.update(zip(smaller, resize_down(picture, smaller), strict=True))
    return made


def _resize_down(
    image: Image.Image, sizes: Sequence[tuple[int, int]], main: tuple[int, int]
) -> list[Image.Image]:
    """Pillow's resize to each of `sizes`, each from the one before: Lanczos for the `main`
    output's size, `_SIZES_FILTER` for the others."""
    resized = []
    for size in sizes:
        filter_, gap = (Image.Resampling.LANCZOS, 3.0) if size == main else _SIZES_FILTER
        # reducing_gap: a cheap box reduce first, then the filter, looks the same and is faster
        image = image.resize(size, filter_, reducing_gap=gap)
        resized.append(image)
    return resized


def _needs_only_encoding(source: Image.Image, target: tuple[int, int]) -> bool:
    """Whether the opened JPEG is already upright, sRGB (no profile), RGB or grey, and of
    the target size; its EXIF and ICC segments are read on opening, before any pixel."""
    return (
        target == source.size
        and source.mode in ("RGB", "L")
        and not source.info.get("icc_profile")
        and _orientation(source) is None
    )


def _check_pixels(image: Image.Image, data: bytes, source_format: str, max_pixels: int) -> None:
    """Refuse more than `max_pixels` (width x height x frames) before any pixel is decoded."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("decode_error", f"the image is {width}x{height} and has no pixels")
    frame_pixels = width * height
    if frame_pixels > max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"the image is {width}x{height} pixels, more than the limit of {max_pixels:,}",
        )
    # One frame past the limit is enough to refuse, so counting stops there.
    stop_after = max_pixels // frame_pixels + 1
    frames = count_frames(image, data, source_format, stop_after)
    if frames * frame_pixels > max_pixels:
        # Counting stopped at the first frame past the limit, so there may be more.
        raise ImageError(
            "too_many_pixels",
            f"the image is {width}x{height} pixels x {frames} or more frames, "
            f"more than the limit of {max_pixels:,} pixels",
        )


def _fit(size: tuple[int, int], max_dimension: int | None) -> tuple[int, int]:
    """The size whose longest side is at most `max_dimension`, same aspect; never larger."""
    width, height = size
    longest = max(width, height)
    if max_dimension is None or longest <= max_dimension:
        return size
    scale = max_dimension / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transpose that makes the image upright, from EXIF tag 0x0112."""
    try:
        value = image.getexif().get(0x0112, 1)
    except _DECODE_ERRORS:
        return None  # broken EXIF is common and harmless: show the image as stored
    return _ORIENTATIONS.get(value) if isinstance(value, int) else None
