"""What the network looks at: the whole photo shrunk to S x S, and optionally a full-resolution view.

Why a second view: a 12 MP phone photo squeezed to 512 px hides what a shopper sees at 100 %
zoom (marketplaces offer it and require >= 1000 px for it): sensor noise, slight shake or
missed focus. The *detail* view is a mosaic of ``grid x grid`` crops taken at 1:1 from the
decoded full-resolution image, each ``S // grid`` px square, so the trunk sees native pixels.
Multi-scale IQA models do the same (MUSIQ, Ke et al., ICCV 2021, scores native-resolution
patches next to a resized global view); we keep one fixed-size tensor per view so every runtime
runs one graph.

Which crops: where the image has *structure*. Blur only shows on edges and texture, and noise
still shows there, while a crop of an empty white background says little about either. The
measure is the mean gradient magnitude of a luminance map reduced 16 x per crop side (the
reduction averages away the very noise we want to see, so the choice follows scene structure,
not noise), over windows on a stride of a quarter crop, best first, no two overlapping when the
photo is large enough. Cost: one ``Image.reduce`` and a few array operations (~5 ms at 12 MP),
next to the full-size decode the view needs (see the model card for the measured figures).

Views are stacked along the channel axis: a model with V views takes uint8 ``[N, 3 V, S, S]``;
the network splits them, runs the same trunk on each and concatenates their features.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

GLOBAL = "global"
DETAIL = "detail"
KNOWN_VIEWS: tuple[str, ...] = (GLOBAL, DETAIL)
DETAIL_GRID = 2  # 2 x 2 crops of S/2 px each form the detail mosaic
_CELLS = 16  # reduced-map pixels per crop side for the structure measure
_STRIDE_PER_CROP = 4  # candidate windows every crop/4 px (and flush with the far edges)


def check_views(views: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validated view names: 'global' first, each known, no repeats (metadata comes from files)."""
    v = tuple(views)
    if not v or v[0] != GLOBAL or len(set(v)) != len(v) or any(x not in KNOWN_VIEWS for x in v):
        raise ValueError(f"views must start with {GLOBAL!r} and be distinct names from {KNOWN_VIEWS}, got {list(v)}")
    return v


def global_view(img: Image.Image, size: int) -> Image.Image:
    """The whole image resized to size x size (PIL bicubic, antialiased; aspect ratio not kept).

    Why the whole image: cropping would hide overlays, borders and defects at the edges, and
    padding would add fake borders; a mild aspect change barely affects quality cues.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)


def _structure_map(img: Image.Image, crop: int) -> tuple[np.ndarray, float]:
    """Gradient magnitude of a reduced luminance map and the reduction factor used."""
    factor = max(1, crop // _CELLS)
    small = img.convert("L")
    small = small.reduce(factor) if factor > 1 else small
    y = np.asarray(small, dtype=np.float32)
    gy, gx = np.gradient(y) if min(y.shape) > 1 else (np.zeros_like(y), np.zeros_like(y))
    return np.hypot(gx, gy), float(factor)


def detail_boxes(img: Image.Image, crop: int, count: int = DETAIL_GRID * DETAIL_GRID) -> list[tuple[int, int, int, int]]:
    """``count`` crop boxes (left, top, right, bottom) of ``crop`` px at 1:1, most structure first.

    ``img`` must be at least ``crop`` px on both sides (``detail_view`` enlarges smaller ones).
    Boxes do not overlap while the photo has room for that many; otherwise the best windows are
    reused in order, so small photos still give a full mosaic.
    """
    w, h = img.size
    grad, factor = _structure_map(img, crop)
    gh, gw = grad.shape
    # Integral image: the mean gradient of any window in O(1).
    ii = np.zeros((gh + 1, gw + 1), np.float64)
    ii[1:, 1:] = grad.cumsum(0).cumsum(1)
    stride = max(1, crop // _STRIDE_PER_CROP)

    def positions(extent: int) -> list[int]:
        return sorted(set(range(0, extent - crop + 1, stride)) | {extent - crop})

    cands: list[tuple[float, int, int]] = []
    for y in positions(h):
        for x in positions(w):
            t, lf = int(y / factor), int(x / factor)
            b, r = min(gh, max(t + 1, int(round((y + crop) / factor)))), min(gw, max(lf + 1, int(round((x + crop) / factor))))
            total = ii[b, r] - ii[t, r] - ii[b, lf] + ii[t, lf]
            cands.append((-float(total) / ((b - t) * (r - lf)), y, x))
    cands.sort()  # most structure first; ties by position, so the choice is deterministic
    ranked = [(x, y, x + crop, y + crop) for _, y, x in cands]

    def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
        return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))

    chosen: list[tuple[int, int, int, int]] = []
    # Disjoint windows first; a photo too small for that many accepts half-overlapping ones,
    # then the best windows again in order, so small photos still give a full mosaic.
    for allowed in (0, crop * crop // 2):
        for box in ranked:
            if len(chosen) == count:
                return chosen
            if box not in chosen and all(overlap(box, c) <= allowed for c in chosen):
                chosen.append(box)
    i = 0
    while len(chosen) < count:
        chosen.append(ranked[i % len(ranked)])
        i += 1
    return chosen


def detail_view(img: Image.Image, size: int) -> Image.Image:
    """Mosaic of DETAIL_GRID x DETAIL_GRID crops of size/DETAIL_GRID px taken at 1:1 from ``img``.

    ``img`` must be the decoded image at full resolution: a JPEG decoded with DCT scaling has
    already lost what this view is for. Images smaller than a crop are enlarged to one crop
    (they then look soft, which is true of them at 100 % zoom too).
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    crop = size // DETAIL_GRID
    w, h = img.size
    if min(w, h) < crop:
        s = crop / min(w, h)
        img = img.resize((max(crop, round(w * s)), max(crop, round(h * s))), Image.BICUBIC)
    out = Image.new("RGB", (crop * DETAIL_GRID, crop * DETAIL_GRID))
    for i, box in enumerate(detail_boxes(img, crop)):
        out.paste(img.crop(box), ((i % DETAIL_GRID) * crop, (i // DETAIL_GRID) * crop))
    return out if out.size == (size, size) else out.resize((size, size), Image.BICUBIC)


def render_views(img: Image.Image, size: int, views: tuple[str, ...]) -> list[Image.Image]:
    """The PIL image of each view, in ``views`` order."""
    return [global_view(img, size) if v == GLOBAL else detail_view(img, size) for v in views]


def stack_views(img: Image.Image, size: int, views: tuple[str, ...] = (GLOBAL,)) -> np.ndarray:
    """RGB PIL image at full resolution -> C-contiguous uint8 [3 * len(views), size, size]."""
    arrs = [np.asarray(v) for v in render_views(img, size, views)]
    return np.ascontiguousarray(np.concatenate([a.transpose(2, 0, 1) for a in arrs], axis=0))


def needs_full_resolution(views: tuple[str, ...]) -> bool:
    """True when the decoder must not DCT-downscale (the detail view reads native pixels)."""
    return DETAIL in views
