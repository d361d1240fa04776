"""Any decoded image as 8-bit RGB in sRGB: deep grey scaled, transparency flattened onto
white, embedded ICC profiles (and Lab) converted."""

from __future__ import annotations

import io

from PIL import Image, ImageCms

__all__ = ["to_srgb"]

_WHITE = (255, 255, 255)


def to_srgb(image: Image.Image) -> Image.Image:
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
