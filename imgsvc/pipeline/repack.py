"""A JPEG's own picture, without metadata and maybe losslessly re-packed by libjpeg-turbo's
jpegtran program, in place of a new encoding of it when that comes out smaller."""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import BinaryIO

__all__ = ["keep_input_if_smaller"]

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


def keep_input_if_smaller(data: bytes, out: BinaryIO, start: int, progressive: bool) -> bool:
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
