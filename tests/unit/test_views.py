"""model.views: which detail crops are chosen, and that the detail view holds native pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model import views
from model.preprocess import preprocess_uint8
from tests.images import photo


def _flat_with_textured_corner(w: int, h: int, corner: tuple[int, int], side: int) -> Image.Image:
    """Flat mid-grey everywhere except a ``side`` px square of high-contrast texture at ``corner``."""
    a = np.full((h, w, 3), 128, np.uint8)
    rng = np.random.default_rng(5)
    # Blocky texture (8 px cells): structure survives the 16x reduction of the structure map.
    cells = rng.integers(0, 2, (side // 8 + 1, side // 8 + 1)) * 255
    tex = np.kron(cells, np.ones((8, 8)))[:side, :side].astype(np.uint8)
    x0, y0 = corner
    a[y0:y0 + side, x0:x0 + side] = tex[..., None]
    return Image.fromarray(a, "RGB")


def _overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


@pytest.mark.parametrize("corner", ["top-left", "bottom-right"])
def test_first_box_lies_on_the_structured_corner(corner: str) -> None:
    w, h, crop, side = 2400, 1800, 256, 300
    x0, y0 = (0, 0) if corner == "top-left" else (w - side, h - side)
    img = _flat_with_textured_corner(w, h, (x0, y0), side)
    box = views.detail_boxes(img, crop)[0]
    assert box[2] - box[0] == crop and box[3] - box[1] == crop
    # The best window is inside the textured square (it is larger than a crop) ...
    assert x0 <= box[0] and box[2] <= x0 + side and y0 <= box[1] and box[3] <= y0 + side, box
    # ... and the flat remainder ranks below it: the runner-up windows cover less of the texture.
    tex = (x0, y0, x0 + side, y0 + side)
    assert _overlap(box, tex) == crop * crop
    assert all(_overlap(b, tex) < crop * crop for b in views.detail_boxes(img, crop)[1:])


def test_boxes_are_disjoint_and_inside_a_large_image() -> None:
    img = photo(2000, 1500, seed=3)
    crop = 256
    boxes = views.detail_boxes(img, crop)
    assert len(boxes) == views.DETAIL_GRID ** 2
    for i, a in enumerate(boxes):
        assert a[2] - a[0] == crop and a[3] - a[1] == crop
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= 2000 and a[3] <= 1500
        for b in boxes[i + 1:]:
            assert _overlap(a, b) == 0, (a, b)


@pytest.mark.parametrize("size", [(100, 80), (1, 1), (300, 20)])
def test_tiny_image_still_gives_a_full_mosaic(size: tuple[int, int]) -> None:
    s = 64
    img = photo(*size, seed=1) if min(size) > 1 else Image.new("RGB", size, (10, 200, 30))
    out = views.detail_view(img, s)
    assert out.size == (s, s) and out.mode == "RGB"
    stacked = views.stack_views(img, s, (views.GLOBAL, views.DETAIL))
    assert stacked.shape == (6, s, s) and stacked.dtype == np.uint8 and stacked.flags.c_contiguous
    assert np.array_equal(stacked[3:], np.asarray(out).transpose(2, 0, 1))
    if min(size) > 1:  # every cell was filled from the image (not left black by a missing box)
        c = s // views.DETAIL_GRID
        a = np.asarray(out)
        for i in range(views.DETAIL_GRID ** 2):
            cell = a[(i // 2) * c:(i // 2 + 1) * c, (i % 2) * c:(i % 2 + 1) * c]
            assert cell.std() > 0, i


def test_detail_view_of_a_large_image_is_native_pixels() -> None:
    img = photo(2400, 1800, seed=7)
    s = 512
    crop = s // views.DETAIL_GRID
    out = np.asarray(views.detail_view(img, s))
    src = np.asarray(img)
    for i, (l, t, r, b) in enumerate(views.detail_boxes(img, crop)):
        cell = out[(i // 2) * crop:(i // 2 + 1) * crop, (i % 2) * crop:(i % 2 + 1) * crop]
        assert np.array_equal(cell, src[t:b, l:r]), i  # exact: no resampling happened


def test_global_view_alone_is_the_single_view_preprocess() -> None:
    for img in (photo(640, 480), Image.new("L", (33, 901), 128), Image.new("RGBA", (64, 64), (1, 2, 3, 4))):
        assert np.array_equal(views.stack_views(img, 64, (views.GLOBAL,)), preprocess_uint8(img, 64))


def test_full_resolution_is_needed_only_for_the_detail_view() -> None:
    assert views.needs_full_resolution((views.GLOBAL, views.DETAIL))
    assert not views.needs_full_resolution((views.GLOBAL,))
    with pytest.raises(ValueError, match="views must start"):
        views.check_views((views.DETAIL,))
