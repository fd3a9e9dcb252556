"""Measured product-photo signals on images whose truth is known because we drew them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from consumer.decode import DecodeLimits, decode
from consumer.signals import measure
from tests.images import encode, photo


def product(fill: float, size: tuple[int, int] = (1000, 1000), shift: float = 0.0, bg: Image.Image | None = None) -> Image.Image:
    """A textured box product whose bounding box covers `fill` of the frame, on white (or `bg`)."""
    w, h = size
    pw, ph = round(w * fill ** 0.5), round(h * fill ** 0.5)
    obj = photo(pw, ph, seed=3)
    canvas = Image.new("RGB", size, "white") if bg is None else bg.resize(size)
    x, y = (w - pw) // 2 + round(shift * w), (h - ph) // 2
    mask = Image.new("L", (pw, ph), 0)
    ImageDraw.Draw(mask).ellipse([0, 0, pw - 1, ph - 1], fill=255)  # round: no flat edges along a margin
    canvas.paste(obj, (x, y), mask)
    return canvas


def sig(img: Image.Image) -> dict[str, float]:
    return measure(img, img.size)


@pytest.mark.parametrize("fill", [0.2, 0.38, 0.6, 0.85, 0.95])
def test_product_fill_is_the_bounding_box_share_on_white(fill):
    s = sig(product(fill))
    assert s["product_fill"] == pytest.approx(fill, abs=0.03)
    assert s["border"] == 0.0 and s["product_cropped"] == 0.0
    # the background ring is the outer 2 %: a product closer to the edge than that shows in it
    assert s["background_white"] == 1.0 if fill <= 0.85 else s["background_white"] > 0.85


def test_non_square_frame_fill():
    s = sig(product(0.5, size=(1200, 600)))
    assert s["product_fill"] == pytest.approx(0.5, abs=0.03)


def test_cluttered_background_is_not_white():
    s = sig(product(0.8, bg=photo(640, 480, seed=1)))
    assert s["background_white"] < 0.1
    assert s["product_fill"] > 0.95  # without a white background, everything is "foreground"


def test_off_white_studio_grey_is_not_white():
    s = sig(product(0.6, bg=Image.new("RGB", (8, 8), (225, 225, 225))))
    assert s["background_white"] == 0.0


def test_jpeg_white_stays_white():
    img = product(0.6)
    from io import BytesIO

    s = sig(Image.open(BytesIO(encode(img, quality=75))).convert("RGB"))
    assert s["background_white"] >= 0.99 and s["product_fill"] == pytest.approx(0.6, abs=0.04)


@pytest.mark.parametrize("depth", [0.02, 0.05, 0.1])
def test_black_frame_is_a_border_and_the_background_is_measured_inside_it(depth):
    inner = product(0.8)
    img = ImageOps.expand(inner, border=round(depth * 1000), fill="black")
    s = sig(img)
    assert s["border"] == pytest.approx(depth / (1 + 2 * depth), abs=0.02)
    assert s["background_white"] >= 0.9  # the seller hears "border", not also "background"


def test_white_frame_around_a_cluttered_photo_is_a_border():
    s = sig(ImageOps.expand(photo(800, 600, seed=2), border=40, fill="white"))
    assert s["border"] > 0.03 and s["background_white"] < 0.5


def test_letterbox_bars_are_a_border():
    p = photo(900, 500, seed=4)
    img = Image.new("RGB", (900, 700), "black")
    img.paste(p, (0, 100))
    assert sig(img)["border"] == pytest.approx(100 / 700, abs=0.03)


def test_one_uniform_strip_is_scenery_not_a_border():
    img = photo(800, 600, seed=5)
    ImageDraw.Draw(img).rectangle([0, 0, 799, 99], fill=(120, 170, 230))  # a clear sky at the top only
    assert sig(img)["border"] == 0.0


def test_white_margins_above_and_below_a_product_are_not_a_border():
    img = Image.new("RGB", (1000, 1000), "white")
    img.paste(photo(1000, 800, seed=6), (0, 100))  # full-width product, white top and bottom only
    assert sig(img)["border"] == 0.0


def test_product_cut_off_at_an_edge_is_cropped():
    s = sig(product(0.6, shift=0.3))
    assert s["product_cropped"] > 0.3 and s["background_white"] < 1.0


def test_blank_white_image_has_no_product():
    s = sig(Image.new("RGB", (800, 800), "white"))
    assert s["product_fill"] == 0.0 and s["background_white"] == 1.0 and s["border"] == 0.0


def test_tiny_and_extreme_aspect_images_do_not_break_measuring():
    for size in [(1, 1), (3, 900), (900, 2), (17, 5)]:
        s = sig(Image.new("RGB", size, (10, 200, 30)))
        assert all(np.isfinite(v) for v in s.values()) and s["width"] == size[0]


def test_decode_carries_every_signal_as_float():
    d = decode(encode(product(0.6), quality=90), lambda img: None, 64, DecodeLimits())
    assert {"background_white", "product_fill", "product_cropped", "border", "width", "height"} <= set(d.signals)
    assert all(type(v) is float for v in d.signals.values())


def _box_on_white(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (160, 160)) -> Image.Image:
    """Pure white with a black box covering pixels x0..x1, y0..y1 inclusive, at the thumbnail's own size
    (the thumbnail is then the image itself, so the fill is known to the pixel)."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle([x0, y0, x1, y1], fill="black")
    return img


def test_product_fill_counts_the_boxs_first_and_last_rows_and_columns():
    # 80 rows (50..129) x 90 columns (50..139) of 160 x 160. Margins of 50 px at the top and left
    # are deeper than a border can be, so this is a product on white, not a framed photo.
    s = sig(_box_on_white(50, 50, 139, 129))
    assert s["border"] == 0.0
    assert s["product_fill"] == 80 * 90 / (160 * 160)
    # the smallest product that counts: 2 x 2 px (one stray pixel per line is a JPEG speck)
    assert sig(_box_on_white(70, 70, 71, 71))["product_fill"] == 4 / (160 * 160)
    # a non-square frame: 40 x 30 px of 160 x 120
    assert sig(_box_on_white(60, 50, 99, 79, size=(160, 120)))["product_fill"] == 40 * 30 / (160 * 120)


# --- gaps found by mutation testing ---------------------------------------------------------
SIGNAL_KEYS = {"width", "height", "brightness", "contrast", "clipped_dark", "clipped_bright", "background_white",
               "product_fill", "product_cropped", "border"}


def test_signal_names_and_the_luma_measures_of_a_known_image():
    """The policy reads these names (a renamed `contrast` would silently switch its rule off)."""
    img = Image.new("RGB", (160, 80), "black")
    img.paste(Image.new("RGB", (160, 40), "white"), (0, 0))  # top half white, bottom half black
    s = sig(img)
    assert set(s) == SIGNAL_KEYS
    assert s["brightness"] == pytest.approx(0.5) and s["contrast"] == pytest.approx(0.5)
    assert s["clipped_dark"] == 0.5 and s["clipped_bright"] == 0.5
    grey = sig(Image.new("RGB", (160, 80), (128, 128, 128)))
    assert grey["clipped_dark"] == 0.0 and grey["clipped_bright"] == 0.0 and grey["contrast"] == pytest.approx(0.0, abs=1e-6)


def test_white_tolerance_is_inclusive_at_240():
    assert sig(Image.new("RGB", (160, 160), (240, 240, 240)))["background_white"] == 1.0
    assert sig(Image.new("RGB", (160, 160), (239, 255, 255)))["background_white"] == 0.0


def test_thumbnail_is_never_upscaled_and_bounds_the_long_side():
    from consumer.signals import THUMB, thumbnail

    assert thumbnail(Image.new("RGB", (80, 60))).shape == (60, 80, 3)
    assert thumbnail(Image.new("RGB", (1000, 500))).shape == (THUMB // 2, THUMB, 3)
    assert thumbnail(Image.new("RGB", (3, 900))).shape == (THUMB, 1, 3)  # at least one pixel wide
    assert thumbnail(Image.new("RGB", (900, 3))).shape == (1, THUMB, 3)


@pytest.mark.parametrize("edge", ["top", "bottom", "left", "right"])
def test_product_cut_off_at_each_edge_is_measured_on_that_edge(edge):
    """A product touching one edge: `product_cropped` is the share of that edge it covers."""
    img = _box_on_white(50, 0, 109, 69)  # 60 px of the top edge, 70 px deep
    img = {"top": img, "bottom": img.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
           "left": img.transpose(Image.Transpose.TRANSPOSE), "right": img.transpose(Image.Transpose.TRANSVERSE)}[edge]
    s = sig(img)
    assert s["product_cropped"] == 60 / 160 and s["border"] == 0.0


@pytest.mark.parametrize("deeper", ["bottom", "top", "right", "left"])
def test_unequal_bars_report_the_deeper_one_on_any_edge(deeper):
    p = photo(160, 90, seed=4)
    img = Image.new("RGB", (160, 120), "black")
    img.paste(p, (0, 10))  # 10 px bar on top, 20 px at the bottom
    img = {"bottom": img, "top": img.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
           "right": img.transpose(Image.Transpose.TRANSPOSE), "left": img.transpose(Image.Transpose.TRANSVERSE)}[deeper]
    assert sig(img)["border"] == (20 + 2) / 120  # +2: the frame's blended edge lines
