"""Bytes -> model input tensor + cheap measured signals.

Decoding is where hostile files bite, so limits come before pixels: the format is
checked against an allow-list and the header's dimensions against a pixel budget
*before* any pixel is decoded (decompression bombs). JPEGs are decoded at reduced
scale with libjpeg's DCT scaling (`draft`) when the model needs fewer pixels — several
times faster than decoding full size and resizing — unless the model reads native pixels
(a detail view, `Predictor.needs_full_resolution`): then every image is decoded full size.
EXIF orientation is applied, any mode becomes RGB, and transparency is composited on white
(how marketplaces show it).

Memory is budgeted in bytes, not pixels: before pixels are decoded, the bytes the decode
needs (by mode and size, after DCT scaling, so a full-resolution decode reserves the full-size
raster) are reserved from one `DecodeBudget` shared by all fetch threads
(`IMAGEGATE_DECODE_MEMORY_MB`); `decode` keeps the reservation while the model input and the
signals are computed from that raster. 16-bit and float images are scaled in place without
float64 copies, and transparent images are reduced before compositing (unless full resolution
is needed), so no path needs more than a few bytes per pixel.
"""

from __future__ import annotations

import io
import threading
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from consumer.events import ReasonCode
from consumer.signals import measure

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


class DecodeBusy(Exception):
    """The shared decode budget stayed full for too long: ours and transient, retried later."""


# Bytes per pixel held while decoding a mode: the source raster, plus the RGB result (3),
# plus in-place scratch for high bit depths (float32). Estimates, deliberately on the high side.
_SOURCE_BPP = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
               "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4}
_SCRATCH_BPP = {"I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}


def decode_cost(mode: str, width: int, height: int) -> int:
    """Bytes a decode of this mode and (already DCT-scaled) size needs at its peak."""
    bpp = _SOURCE_BPP.get(mode, 8) + 3 + _SCRATCH_BPP.get(mode, 0)
    return width * height * bpp


class DecodeBudget:
    """Bytes of decode working memory shared by all fetch threads (a counting semaphore in bytes)."""

    def __init__(self, capacity_bytes: int, wait_s: float = 30.0):
        self.capacity = capacity_bytes
        self.wait_s = wait_s
        self.used = 0
        self._cv = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        if nbytes > self.capacity:
            raise DecodeError(f"image needs {nbytes / 2**20:.0f} MB to decode; the limit is {self.capacity / 2**20:.0f} MB",
                              ReasonCode.TOO_LARGE)
        with self._cv:
            if not self._cv.wait_for(lambda: self.used + nbytes <= self.capacity, timeout=self.wait_s):
                raise DecodeBusy(f"decode memory budget busy for {self.wait_s:g}s ({self.used} of {self.capacity} bytes held)")
            self.used += nbytes
        try:
            yield
        finally:
            with self._cv:
                self.used -= nbytes
                self._cv.notify_all()


@dataclass
class Decoded:
    tensor: object  # the predictor's preprocess output: numpy uint8 [3V, S, S]
    signals: dict[str, float]
    format: str


def open_rgb(data: bytes, limits: DecodeLimits, min_side: int = 0,
             budget: DecodeBudget | None = None) -> tuple[Image.Image, str, tuple[int, int]]:
    """Decode to an upright RGB image; returns (image, format, original (w, h) after orientation).

    `min_side`: JPEGs may be decoded at 1/2, 1/4 or 1/8 scale, and transparent images reduced
    before compositing, as long as both sides stay >= it (0: full resolution). `budget`: decode
    memory to reserve (released when this returns).
    """
    return _open_rgb(data, limits, min_side, budget, lambda rgb, fmt, size: (rgb, fmt, size))


T = TypeVar("T")


def _open_rgb(data: bytes, limits: DecodeLimits, min_side: int, budget: DecodeBudget | None,
              use: Callable[[Image.Image, str, tuple[int, int]], T]) -> T:
    """`open_rgb`, then `use(rgb, format, size)` while the budget reservation is still held.

    Errors raised by `use` are its own (not turned into a seller-facing DecodeError).
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
    with ExitStack() as held:
        try:
            if fmt in ("JPEG", "MPO") and min_side > 0:
                img.draft("RGB", (min_side, min_side))  # DCT-domain downscale, keeps both sides >= min_side
            if budget:  # by mode and size after any draft: a full-resolution decode reserves the full raster
                held.enter_context(budget.hold(decode_cost(img.mode, *img.size)))
            # Animated GIF/WebP/APNG, MPO: a freshly opened image is at its first frame, which is
            # what listings show. (Never ask for n_frames: counting frames walks the whole file.)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Truncated File Read", palette transparency notes
                img.load()
                img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img, min_side)
        except (DecodeError, DecodeBusy):
            raise
        except Image.DecompressionBombError as e:
            raise DecodeError(f"image dimensions are too large: {e}", ReasonCode.TOO_LARGE) from None
        except Exception as e:
            # Pillow's decoders raise many types on hostile data (OSError, SyntaxError, ValueError,
            # EOFError, but also IndexError, struct.error, TypeError, ...: found by tests/fuzz).
            # Whatever the type, these bytes are not a readable image: a seller-side reject.
            raise DecodeError(f"image data is corrupt or truncated: {type(e).__name__}: {e}", ReasonCode.UNREADABLE) from None
        return use(rgb, fmt, size)


def to_rgb(img: Image.Image, min_side: int = 0) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, transparency composited on white.

    High bit depths are scaled in place (uint16 >> 8; int32/float in float32), never through
    float64 copies; transparent images are first reduced (box filter) while both sides stay
    >= `min_side`, so compositing never works on more pixels than the model and signals use.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.array(img)  # writable uint16 copy (2 bytes/px)
        np.right_shift(arr, 8, out=arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    elif img.mode in ("I", "F"):
        arr = np.array(img, dtype=np.float32)
        hi = 65535.0 if float(arr.max(initial=0.0)) > 255 else 255.0
        np.multiply(arr, 255.0 / hi, out=arr)
        np.add(arr, 0.5, out=arr)
        np.clip(arr, 0, 255, out=arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        factor = min(rgba.size) // min_side if min_side > 0 else 1
        if factor >= 2:
            rgba = rgba.reduce(factor)
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def decode(data: bytes, preprocess: Callable[[Image.Image], object], input_size: int, limits: DecodeLimits,
           budget: DecodeBudget | None = None, full_resolution: bool = False) -> Decoded:
    """The worker's and `imagegate score`'s one decode path: same bytes -> same model input.

    Large JPEGs come out of libjpeg already DCT-downscaled to no less than the input size,
    and the predictor's `preprocess` turns that drafted image straight into the uint8
    [3V, S, S] array the batcher stacks (normalisation happens inside the model graph): no
    full-size pixels, no float copy. The signals are measured on the same drafted image.

    `full_resolution` (pass `predictor.needs_full_resolution`): no DCT downscale and no
    reduction before compositing, because the model's detail view reads native pixels; the
    budget then reserves the full-size raster. Preprocess and signals run while it is held.
    """
    return _open_rgb(data, limits, 0 if full_resolution else input_size, budget,
                     lambda rgb, fmt, size: Decoded(tensor=preprocess(rgb), signals=measure(rgb, size), format=fmt))
