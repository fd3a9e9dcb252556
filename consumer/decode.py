"""Bytes -> model input tensor + cheap measured signals.

Decoding is where hostile files bite, so limits come before pixels: the format is
checked against an allow-list and the header's dimensions against a pixel budget
*before* any pixel is decoded (decompression bombs). JPEGs are decoded at reduced
scale with libjpeg's DCT scaling (`draft`) when the model needs fewer pixels — several
times faster than decoding full size and resizing. EXIF orientation is applied, any
mode becomes RGB, and transparency is composited on white (how marketplaces show it).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from consumer.events import ReasonCode

# EXIF orientations that swap width and height.
_TRANSPOSED = {5, 6, 7, 8}


class DecodeError(Exception):
    """The bytes are not an acceptable image; `code` is the seller-facing reason."""

    def __init__(self, message: str, code: ReasonCode):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 80_000_000
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")


@dataclass
class Decoded:
    tensor: object  # torch.Tensor [3,S,S] from the model's preprocess
    signals: dict[str, float]
    format: str


def open_rgb(data: bytes, limits: DecodeLimits, min_side: int = 0) -> tuple[Image.Image, str, tuple[int, int]]:
    """Decode to an upright RGB image; returns (image, format, original (w, h) after orientation).

    `min_side`: JPEGs may be decoded at 1/2, 1/4 or 1/8 scale as long as both sides stay >= it.
    """
    if not data:
        raise DecodeError("file is empty", ReasonCode.UNREADABLE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # malformed-tag notes from TIFF/EXIF parsing: not actionable
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DecodeError("file is not a recognised image", ReasonCode.UNSUPPORTED_FORMAT) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError(f"image dimensions are too large: {e}", ReasonCode.TOO_LARGE) from None
    except Exception as e:  # Pillow raises many types on malformed headers
        raise DecodeError(f"cannot read image header: {e}", ReasonCode.UNREADABLE) from None
    fmt = (img.format or "").upper()
    if fmt not in limits.allowed_formats:
        raise DecodeError(f"format {fmt or 'unknown'} is not accepted (accepted: {', '.join(limits.allowed_formats)})", ReasonCode.UNSUPPORTED_FORMAT)
    w, h = img.size
    if w <= 0 or h <= 0:
        raise DecodeError(f"image has invalid dimensions {w}x{h}", ReasonCode.UNREADABLE)
    if w * h > limits.max_pixels:
        raise DecodeError(f"image is {w}x{h} = {w * h} pixels, limit is {limits.max_pixels}", ReasonCode.TOO_LARGE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": a bad EXIF block only loses the orientation
            orientation = img.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    size = (h, w) if orientation in _TRANSPOSED else (w, h)
    try:
        if fmt in ("JPEG", "MPO") and min_side > 0:
            img.draft("RGB", (min_side, min_side))  # DCT-domain downscale, keeps both sides >= min_side
        # Animated GIF/WebP/APNG, MPO: a freshly opened image is at its first frame, which is
        # what listings show. (Never ask for n_frames: counting frames walks the whole file.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Truncated File Read", palette transparency notes
            img.load()
            img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
    except DecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise DecodeError(f"image dimensions are too large: {e}", ReasonCode.TOO_LARGE) from None
    except Exception as e:
        # Pillow's decoders raise many types on hostile data (OSError, SyntaxError, ValueError,
        # EOFError, but also IndexError, struct.error, TypeError, ...: found by tests/fuzz).
        # Whatever the type, these bytes are not a readable image: a seller-side reject.
        raise DecodeError(f"image data is corrupt or truncated: {type(e).__name__}: {e}", ReasonCode.UNREADABLE) from None
    return rgb, fmt, size


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, transparency composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def measure(rgb: Image.Image, size: tuple[int, int]) -> dict[str, float]:
    """Cheap signals the policy uses beside the model: resolution, exposure, contrast, background."""
    thumb = rgb.copy()
    thumb.thumbnail((128, 128), Image.Resampling.BILINEAR)
    a = np.asarray(thumb, dtype=np.float32) / 255.0
    luma = a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    near_white = (a.min(axis=2) > 0.92)
    edge = np.concatenate([near_white[0], near_white[-1], near_white[:, 0], near_white[:, -1]])
    w, h = size
    return {
        "width": float(w),
        "height": float(h),
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "clipped_dark": float((luma < 0.02).mean()),
        "clipped_bright": float((luma > 0.98).mean()),
        "background_white": float(edge.mean()),
        "product_fill": float(1.0 - near_white.mean()),
    }


def decode(data: bytes, preprocess: Callable[[Image.Image], object], input_size: int, limits: DecodeLimits) -> Decoded:
    """The worker's and `imagegate score`'s one decode path: same bytes -> same model input.

    Large JPEGs come out of libjpeg already DCT-downscaled to no less than the input size,
    and the predictor's `preprocess` turns that drafted image straight into the uint8
    [3, S, S] array the batcher stacks (normalisation happens inside the model graph): no
    full-size pixels, no float copy. The signals are measured on the same drafted image.
    """
    rgb, fmt, size = open_rgb(data, limits, min_side=input_size)
    pixels = preprocess(rgb)
    return Decoded(tensor=pixels, signals=measure(rgb, size), format=fmt)
