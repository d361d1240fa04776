"""How many frames (pages) an image holds, counted before any pixel is decoded so that the
pixel limit covers all of them."""

from __future__ import annotations

import struct

from PIL import Image

__all__ = ["count_frames"]


def count_frames(image: Image.Image, data: bytes, source_format: str, stop_after: int) -> int:
    """The frames of the opened `image` (`data` in `source_format`), counting no further
    than `stop_after`; 1 for a still image."""
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
