"""Cheap measured signals: what the policy checks beside the model's heads.

Measured once per image at decode time, on a small thumbnail, because the policy is re-run
on cached signals under each event's profile: anything a rule needs must be in `signals`
(floats only) when the image is first scored. Every value here is documented in README's
"Policy" section (unit, range, how it is computed); the thresholds live in the policy file.

Product-photo signals follow the published main-image rules (Amazon, eBay, Google Merchant
Center): a pure-white background, a product that fills the frame, no added borders, the
whole product in view. They are measured *inside* an added border, so a seller who frames a
white-background photo hears "border", not also "background is not white".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

THUMB = 160  # long side of the measuring thumbnail, px: enough for 1 % bands, ~1 ms per image
WHITE = 240 / 255  # "pure white" tolerance: every channel at least this (JPEG keeps white at 250-255)
RING = 0.02  # background ring width, share of the thumbnail's short side (at least 2 px)
BAND_UNIFORM = 0.97  # share of a line's pixels within BAND_TOL of the band colour for it to be "uniform"
BAND_TOL = 0.10  # max per-channel difference from the band colour (JPEG ringing, gradients in a frame)
BAND_EDGE = 0.3  # share of the first line inside a band that must differ: a frame ends along a straight edge
BAND_MAX = 0.25  # a uniform band deeper than this is background, not an added border
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Bands:
    """Depth in thumbnail px of an added uniform band on each edge (0 = none)."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0


def _band(lines: np.ndarray, limit: int) -> tuple[int, np.ndarray | None]:
    """Depth of a uniform band at the start of `lines` [n, m, 3] that ends along a hard edge."""
    if limit < 1 or len(lines) <= limit:
        return 0, None
    colour = np.median(lines[0], axis=0)
    close = (np.abs(lines[:limit + 1] - colour).max(axis=2) <= BAND_TOL).mean(axis=1)  # one pass, all lines
    depth = int(np.argmax(close < BAND_UNIFORM)) if (close < BAND_UNIFORM).any() else limit + 1
    if depth == 0 or depth >= limit:
        return 0, None
    return (depth, colour) if 1.0 - close[depth] >= BAND_EDGE else (0, None)


def find_bands(a: np.ndarray) -> Bands:
    """Added borders: uniform bands of one colour on at least two edges (frame, letterbox, pillarbox).

    Why two edges: a single uniform strip is usually scenery (sky, a wall) or a caption bar;
    a frame or letterbox has the same colour on opposite or all edges. White bands need three
    edges: two white margins ending in a product's flat top and bottom are just the white
    background a main image should have. (Limit: a rectangular product centred edge to edge
    with equal white margins on all four sides reads as a white frame.)
    """
    h, w, _ = a.shape
    found = {
        "top": _band(a, int(h * BAND_MAX)),
        "bottom": _band(a[::-1], int(h * BAND_MAX)),
        "left": _band(a.transpose(1, 0, 2), int(w * BAND_MAX)),
        "right": _band(a.transpose(1, 0, 2)[::-1], int(w * BAND_MAX)),
    }
    edges = [(k, c) for k, (d, c) in found.items() if d > 0]
    for _, c in edges:
        same = [k2 for k2, c2 in edges if np.abs(c2 - c).max() <= BAND_TOL]
        if len(same) >= (3 if c.min() >= WHITE else 2):
            # +2 lines: the frame's edge blends both colours over up to two thumbnail lines
            return Bands(**{k2: found[k2][0] + 2 for k2 in same})
    return Bands()


def thumbnail(rgb: Image.Image, side: int = THUMB) -> np.ndarray:
    """[h, w, 3] float32 in 0..1, long side `side` (never upscaled)."""
    w, h = rgb.size
    s = min(1.0, side / max(w, h))
    small = rgb.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.float32) / 255.0


def measure(rgb: Image.Image, size: tuple[int, int]) -> dict[str, float]:
    """All measured signals for one decoded image; `size` is the original (w, h) after EXIF orientation."""
    a = thumbnail(rgb)
    luma = a @ _LUMA
    th, tw = luma.shape
    b = find_bands(a)
    inner = a[b.top:th - b.bottom, b.left:tw - b.right]
    ih, iw, _ = inner.shape
    white = inner.min(axis=2) >= WHITE
    r = max(2, round(RING * min(ih, iw)))
    ring = np.concatenate([white[:r].ravel(), white[-r:].ravel(), white[r:-r, :r].ravel(), white[r:-r, -r:].ravel()])
    fg = ~white
    rows = np.flatnonzero(fg.sum(axis=1) >= 2)  # >= 2 px: one stray JPEG speck is not a product
    cols = np.flatnonzero(fg.sum(axis=0) >= 2)
    fill = 0.0 if rows.size == 0 or cols.size == 0 else \
        float((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)) / float(ih * iw)
    # Cropping is only measurable against a white background: on clutter every edge is "foreground".
    cropped = max(fg[0].mean(), fg[-1].mean(), fg[:, 0].mean(), fg[:, -1].mean()) if ring.mean() >= 0.78 else 0.0
    w, h = size
    return {
        "width": float(w),
        "height": float(h),
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "clipped_dark": float((luma < 0.02).mean()),
        "clipped_bright": float((luma > 0.98).mean()),
        "background_white": float(ring.mean()),
        "product_fill": fill,
        "product_cropped": float(cropped),
        "border": float(max(b.top / th, b.bottom / th, b.left / tw, b.right / tw)),
    }
