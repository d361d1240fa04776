"""Pillow: image bytes in, re-compressed RGB images out (synchronous; run it in threads).

Nothing here touches the network, the database or file names: the caller hands over the
downloaded bytes and an open file, and gets back what was written or an `ImageError`. A
JPEG that needs nothing but a new encoding skips Pillow's pixels (`jpeg`), and so do the
smaller sizes made from it; one that may come out smaller re-packed than re-encoded goes
through libjpeg-turbo's jpegtran program too.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from PIL import Image, ImageCms, UnidentifiedImageError, _imaging

from ..models import OutputFormat
from . import jpeg

__all__ = [
    "EncodeOptions",
    "ImageError",
    "ImageResult",
    "compress",
    "compress_sizes",
    "keep_memory_for",
    "sniff_format",
]


Picture = Image.Image | jpeg.Pixels
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


# Our format name -> its name in messages; upper-cased, Pillow's plugin name. Only these
# plugins ever see downloaded bytes.
_LABELS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WebP", "bmp": "BMP", "tiff": "TIFF"}
_PILLOW_FORMATS = {name: label.upper() for name, label in _LABELS.items()}
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
_WHITE = (255, 255, 255)
# The extra outputs of `sizes` are resized with Pillow's thumbnail() defaults: on the bench's
# 1200x1200 photos, 1200 -> 800 -> 300 took 20 ms with bicubic against 28 ms with Lanczos,
# and came within 52 dB (PSNR) of Lanczos, far below what JPEG at quality 50 changes.
# jpeg.resize uses the same filter, four times as fast, for the JPEGs that skip Pillow.
_SIZES_FILTER = (Image.Resampling.BICUBIC, 2.0)
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
# jpegtran's lossless re-pack saved at most 32% of a JPEG's bytes on the photographs of
# scripts/bench_images.py (half, on a smooth picture enlarged and saved at quality 30 with
# stock tables). Starting it costs a few ms, as much as compressing a small image, so it is
# tried only when the new encoding is larger than this share of the input: below it the
# re-pack would have to save 40%. Missing such a rare case costs bytes, never the promise
# that the output is not larger than the input.
_REPACK_WORTH_TRYING = 0.6
# Far more than jpegtran takes on the largest image allowed (0.2 s of CPU for 49 MP);
# damaged data can make libjpeg crawl.
_REPACK_SECONDS = 10.0
# Segments a JPEG decodes the same without: APP1-APP13 and APP15 (EXIF, XMP, ICC, MPF,
# Photoshop...) and comments. APP0 (JFIF) and APP14 (Adobe) say how the colours are coded.
_METADATA_MARKERS = frozenset([*range(0xE1, 0xEE), 0xEF, 0xFE])


def keep_memory_for(threads: int) -> None:
    """Let Pillow reuse freed image memory instead of asking the OS for fresh pages each time.

    Without a cache every decoded image is new memory the kernel must fault in and zero,
    which on a small VM costs as much CPU as the decoding itself (measured: 20 ms instead
    of 11 ms for a 1200x1200 JPEG). A few blocks per thread cover the images in flight.
    The same holds for the arrays of JPEGs that skip Pillow (`jpeg.keep_freed_memory`).
    """
    _imaging.set_blocks_max(4 * threads)
    jpeg.keep_freed_memory()


def sniff_format(data: bytes) -> str | None:
    """Name the image format from the magic bytes alone, or None if it is not one we read."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


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
    source_format = sniff_format(data)
    if source_format is None:
        raise ImageError("not_an_image", _describe_non_image(data))
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
        raise ImageError("decode_error", _decode_message(source_format, exc)) from exc
    out = outs[0]
    start = out.tell()
    _encode(decoded[0], out, options)
    kept_input = (
        untouched
        and source_format == "jpeg"
        and options.format is OutputFormat.JPEG
        and _keep_input_if_smaller(data, out, start, options.progressive)
    )
    results = [ImageResult(source_format, *_size(decoded[0]), kept_input)]
    written = {id(decoded[0]): (out, start)}  # an output made once is copied, not encoded again
    for picture, size_out in zip(decoded[1:], outs[1:], strict=True):
        if id(picture) in written:
            _copy(*written[id(picture)], size_out)
        else:
            written[id(picture)] = (size_out, size_out.tell())
            _encode(picture, size_out, options)
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
    with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[source_format]]) as source:
        _check_pixels(source, data, source_format, max_pixels)
        targets = [_fit(source.size, d) for d in dimensions]
        if jpeg_in_and_out and _needs_only_encoding(source, targets[0]):
            pixels = jpeg.decode(data)
            if pixels is not None:
                made = _resized(pixels, targets, jpeg.resize)
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
        image = _to_srgb(source)
    untouched = same_size and orientation is None and image is source
    resized = _resized(image, targets, lambda image, size: _resize(image, size, targets[0]))
    # Rotating last turns the smallest images; the longest side does not depend on it.
    if orientation is not None:
        resized = {size: picture.transpose(orientation) for size, picture in resized.items()}
    return [resized[target] for target in targets], untouched


def _resized(
    picture: P,
    targets: Sequence[tuple[int, int]],
    resize: Callable[[P, tuple[int, int]], P],
) -> dict[tuple[int, int], P]:
    """`picture` at each target size, largest first, each made from the one before: fewer
    pixels to read for each smaller one."""
    made: dict[tuple[int, int], P] = {}
    for target in sorted(set(targets), reverse=True):
        if _size(picture) != target:
            picture = resize(picture, target)
        made[target] = picture
    return made


def _resize(image: Image.Image, target: tuple[int, int], main: tuple[int, int]) -> Image.Image:
    """Pillow's resize: Lanczos for the `main` output's size, `_SIZES_FILTER` for the others."""
    filter_, gap = (Image.Resampling.LANCZOS, 3.0) if target == main else _SIZES_FILTER
    # reducing_gap: a cheap box reduce first, then the filter, looks the same and is faster
    return image.resize(target, filter_, reducing_gap=gap)


def _needs_only_encoding(source: Image.Image, target: tuple[int, int]) -> bool:
    """Whether the opened JPEG is already upright, sRGB (no profile), RGB or grey, and of
    the target size; its EXIF and ICC segments are read on opening, before any pixel."""
    return (
        target == source.size
        and source.mode in ("RGB", "L")
        and not source.info.get("icc_profile")
        and _orientation(source) is None
    )


def _encode(picture: Picture, out: BinaryIO, options: EncodeOptions) -> None:
    """Write `picture` without any metadata; savers read some of it (the comment) from info."""
    if not isinstance(picture, Image.Image):
        out.write(jpeg.encode(picture, options.quality))  # a whole write: raises when cut short
        return
    image = picture
    image.info = {}
    if options.format is OutputFormat.WEBP:
        image.save(out, "WEBP", quality=options.quality, **_WEBP)
    elif options.format is OutputFormat.AVIF:
        image.save(out, "AVIF", quality=options.quality, **_AVIF)
    else:
        # Optimized Huffman tables: the very same pixels in 6% fewer bytes on photographs,
        # for 3 ms more CPU per megapixel.
        image.save(
            out, "JPEG", quality=options.quality, optimize=True, progressive=options.progressive
        )
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


def _keep_input_if_smaller(data: bytes, out: BinaryIO, start: int, progressive: bool) -> bool:
    """Put the input JPEG's own picture, without metadata, in place of the new encoding
    written to `out` from `start` when it is smaller; say whether it was."""
    written = out.tell() - start
    stripped = _without_metadata(data)
    candidates = [stripped]
    if written > _REPACK_WORTH_TRYING * len(stripped or data):
        candidates.append(_repacked(data, progressive))
    smallest = min((c for c in candidates if c is not None), key=len, default=None)
    if smallest is None or len(smallest) >= written:
        return False
    out.seek(start)
    out.write(smallest)
    out.truncate()
    return True


def _repacked(jpeg: bytes, progressive: bool) -> bytes | None:
    """The same DCT coefficients, so the same pixels, with Huffman tables made for them and
    without metadata; None if jpegtran is missing, refuses the data or takes too long.

    jpegtran runs as a program of its own because libjpeg ends the process it runs in on
    some damaged data, which in-process bindings (mozjpeg-lossless-optimization) let happen.
    """
    program = _jpegtran()
    if program is None:
        return None
    command = [program, "-copy", "none", "-optimize", *(["-progressive"] if progressive else [])]
    try:
        # A fixed program with fixed arguments; the data only goes to its standard input.
        done = subprocess.run(  # noqa: S603
            command, input=jpeg, capture_output=True, timeout=_REPACK_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    # Exit status 2 is a warning: libjpeg read damaged data and made something up.
    return done.stdout if done.returncode == 0 and done.stdout else None


@functools.cache
def _jpegtran() -> str | None:
    """libjpeg-turbo's lossless JPEG transcoder (Debian's libjpeg-turbo-progs), if present."""
    return shutil.which("jpegtran")


def _without_metadata(jpeg: bytes) -> bytes | None:
    """The JPEG's bytes less its metadata segments (EXIF, XMP, ICC, comments and the like)
    and anything after its first picture (the second of an MPO); None if they are not laid
    out as expected. Costs next to nothing and is never larger than the input, so it is
    there when jpegtran is missing, not worth starting, or makes no smaller file."""
    kept = [jpeg[:2]]
    pos = 2  # past the start-of-image marker
    more_pictures = False
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        if marker == 0xFF:
            pos += 1  # a fill byte before the marker
        elif marker == 0xDA:  # start of scan: the picture itself, up to the end-of-image
            # Searching the coded data for it holds the GIL for 1-3 ms on a 330 KB photo;
            # when no other picture follows, the file's last two bytes are the usual end.
            if not more_pictures and jpeg.endswith(b"\xff\xd9"):
                end = len(jpeg) - 2
            else:
                end = jpeg.find(b"\xff\xd9", pos)
            return None if end < 0 else b"".join([*kept, jpeg[pos : end + 2]])
        else:
            segment = jpeg[pos : pos + 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")]
            more_pictures = more_pictures or (marker == 0xE2 and segment[4:8] == b"MPF\0")
            if marker not in _METADATA_MARKERS:
                kept.append(segment)
            pos += len(segment)
    return None


def _describe_non_image(data: bytes) -> str:
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "the response is empty, not an image"
    if data[4:8] == b"ftyp":
        return "the data is HEIC or AVIF, which is not supported"
    for prefix, what in _NOT_IMAGES:
        if head.startswith(prefix):
            return f"the response is {what}, not an image"
    return "the data is not a JPEG, PNG, GIF, WebP, BMP or TIFF image"


def _decode_message(source_format: str, exc: BaseException) -> str:
    label = _LABELS[source_format]
    if isinstance(exc, UnidentifiedImageError):
        # Pillow's own message names a BytesIO object, which helps nobody.
        return f"the {label} data is corrupt and could not be read"
    return f"the {label} image is truncated or corrupt and could not be decoded ({exc})"


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
    frames = _count_frames(image, data, source_format, stop_after)
    if frames * frame_pixels > max_pixels:
        # Counting stopped at the first frame past the limit, so there may be more.
        raise ImageError(
            "too_many_pixels",
            f"the image is {width}x{height} pixels x {frames} or more frames, "
            f"more than the limit of {max_pixels:,} pixels",
        )


def _count_frames(image: Image.Image, data: bytes, source_format: str, stop_after: int) -> int:
    # Pillow's n_frames walks GIF and TIFF frames one by one in Python (and seek() on a GIF
    # decodes every frame on the way), so those two are counted from the bytes instead.
    if source_format == "gif":
        return _count_gif_frames(data, stop_after)
    if source_format == "tiff":
        return _count_tiff_frames(data, stop_after)
    # PNG (APNG), WebP and JPEG (MPO) declare their frame count in a header.
    frames: int = getattr(image, "n_frames", 1)
    return frames


def _count_gif_frames(data: bytes, stop_after: int) -> int:
    """Count image descriptors without decompressing anything; a cut-off file ends the count."""
    pos = 13 + _colour_table_size(data[10])
    frames = 0
    while pos < len(data) and frames < stop_after:
        block = data[pos]
        if block == 0x2C:  # image descriptor, 9 bytes, then a colour table and LZW data
            frames += 1
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos = _skip_sub_blocks(data, pos + 11 + _colour_table_size(flags))
        elif block == 0x21:  # extension: a label byte, then data sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        else:  # the trailer, or garbage Pillow stops at too
            break
    return max(frames, 1)


def _colour_table_size(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos]:
        pos += data[pos] + 1
    return pos + 1


def _count_tiff_frames(data: bytes, stop_after: int) -> int:
    """Follow the chain of IFDs (one per page) without reading their tags."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    count_format, entry_size, offset_format = ("Q", 20, "Q") if big else ("H", 12, "I")
    (offset,) = struct.unpack_from(order + offset_format, data, 8 if big else 4)
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) < stop_after:
        seen.add(offset)
        try:
            (entries,) = struct.unpack_from(order + count_format, data, offset)
            next_at = offset + struct.calcsize(count_format) + entries * entry_size
            (offset,) = struct.unpack_from(order + offset_format, data, next_at)
        except struct.error:
            break  # a cut-off chain: count what is there, decoding will judge the rest
    return max(len(seen), 1)


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


def _to_srgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image in sRGB, with any transparency flattened onto white."""
    icc = image.info.get("icc_profile")
    if image.mode.startswith(("I", "F")):
        image = _to_8bit(image)
    if image.has_transparency_data:
        image = _flatten(image)
    if icc:
        converted = _apply_profile(image, icc)
        if converted is not None:
            return converted
    if image.mode == "LAB":
        lab = ImageCms.createProfile("LAB")
        srgb = ImageCms.createProfile("sRGB")
        return _expect(ImageCms.profileToProfile(image, lab, srgb, outputMode="RGB"))
    # No profile: the web assumes sRGB. CMYK without one can only be converted naively.
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Grey deeper than 8 bits, scaled (not clipped) into 0-255."""
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
        image = image.convert("I")  # point() cannot scale the I;16 modes
    else:
        low, high = _value_range(image)
    scale = 255 / (high - low) if high > low else 0.0
    return image.point(lambda value: (value - low) * scale).convert("L")


def _value_range(image: Image.Image) -> tuple[float, float]:
    """For I and F images, the values that should become black and white."""
    extrema = image.getextrema()
    low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
    if image.mode == "F" and low >= 0 and high <= 1:
        return 0.0, 1.0  # floats are normally 0-1
    if image.mode == "I" and low >= 0 and high <= 65535:
        return 0.0, 65535.0  # 16-bit samples often arrive as I
    # No scale to read anything else by, so the values present are stretched.
    return low, high


def _flatten(image: Image.Image) -> Image.Image:
    """Composite onto white; convert("RGBA") also resolves palette and tRNS transparency."""
    if image.mode == "La":
        image = image.convert("LA")  # Pillow converts premultiplied grey to nothing else
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, _WHITE)
    flat.paste(rgba, mask=rgba)
    return flat


# An ICC profile's colour space -> the Pillow mode it describes.
_PROFILE_MODES = {"RGB ": "RGB", "GRAY": "L", "CMYK": "CMYK", "LAB ": "LAB"}


def _apply_profile(image: Image.Image, icc: bytes) -> Image.Image | None:
    """Convert through the embedded profile to sRGB; None when it does not fit the image.

    A broken or mismatched profile is ignored rather than failing the image: the pixels
    are still fine, only the colours are less exact.
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = _PROFILE_MODES.get(profile.profile.xcolor_space)
        if mode is None:
            return None
        if image.mode != mode:
            if {image.mode, mode} - {"1", "L", "P", "RGB"}:
                return None
            image = image.convert(mode)
        srgb = ImageCms.createProfile("sRGB")
        return _expect(ImageCms.profileToProfile(image, profile, srgb, outputMode="RGB"))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _expect(image: Image.Image | None) -> Image.Image:
    # profileToProfile returns None only when asked to work in place, which we never do.
    assert image is not None
    return image
