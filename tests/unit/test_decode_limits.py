"""The project's own pixel budget (DecodeLimits.max_pixels / IMAGEGATE_MAX_PIXELS) is checked from
the header, before any pixel is decoded.

Pillow has its own guard (DecompressionBombWarning above ~89.5 MP, an error above twice that), so
a test image above ~89.5 MP never reaches the project's check. These tests set a low budget
(4 MP) and use real, fully decodable images just above it (4.1 MP), far below Pillow's guard: only
the project's check can refuse them. Whether pixels were decoded is observed directly, by counting
calls to Pillow's pixel loader (`ImageFile.load`), not by tracemalloc, which cannot see Pillow's C
allocations.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from consumer.decode import DecodeError, DecodeLimits, decode, open_rgb
from consumer.events import ReasonCode
from tests.images import encode

LIMIT = 4_000_000
ABOVE = (2050, 2000)  # 4.1 MP: over LIMIT, ~22x under Pillow's own guard
AT = (2000, 2000)  # exactly LIMIT: allowed (the limit is inclusive)

FORMATS = {
    "JPEG": dict(quality=80),
    "PNG": dict(),
    "WEBP": dict(quality=50, method=0),
    "GIF": dict(),
    "BMP": dict(),
    "TIFF": dict(compression="tiff_deflate"),
}


def picture(size: tuple[int, int]) -> Image.Image:
    """A real image (gradients, so every format encodes it quickly and compactly)."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def files() -> dict[tuple[str, tuple[int, int]], bytes]:
    out = {}
    for size in (ABOVE, AT):
        img = picture(size)
        for fmt, kw in FORMATS.items():
            out[(fmt, size)] = encode(img if fmt != "GIF" else img.convert("P"), fmt, **kw)
    return out


@pytest.fixture
def pixel_loads(monkeypatch) -> list[tuple[str, tuple[int, int]]]:
    """Records every pixel decode Pillow performs (format, size), then lets it proceed."""
    calls: list[tuple[str, tuple[int, int]]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        calls.append((self.format, self.size))
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def identity(img):
    return img


def test_the_test_images_are_under_pillows_own_guard():
    """If Pillow's guard could fire on these sizes the tests below would prove nothing."""
    assert ABOVE[0] * ABOVE[1] > LIMIT
    assert ABOVE[0] * ABOVE[1] * 20 < Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("fmt", FORMATS)
def test_image_just_above_the_budget_is_refused_before_any_pixel_is_decoded(fmt, files, pixel_loads):
    with pytest.raises(DecodeError) as e:
        open_rgb(files[(fmt, ABOVE)], DecodeLimits(max_pixels=LIMIT), min_side=64)
    assert e.value.code is ReasonCode.TOO_LARGE
    assert f"limit is {LIMIT}" in str(e.value)  # the project's check, not Pillow's guard
    assert pixel_loads == [], f"pixels were decoded before the budget refused the image: {pixel_loads}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_image_at_the_budget_is_decoded(fmt, files, pixel_loads):
    """Control for the test above: the same path with an image the budget allows does decode
    pixels, and the counter sees it."""
    rgb, got_fmt, size = open_rgb(files[(fmt, AT)], DecodeLimits(max_pixels=LIMIT), min_side=64)
    assert got_fmt == fmt and size == AT and rgb.mode == "RGB"
    assert pixel_loads, "the pixel loader was never called: the counter is not observing decoding"


def test_decode_applies_the_budget_it_is_given(files, pixel_loads):
    """`decode` (the worker's and `imagegate score`'s entry point) passes the limits through."""
    data = files[("PNG", ABOVE)]
    assert decode(data, identity, 64, DecodeLimits(max_pixels=ABOVE[0] * ABOVE[1])).format == "PNG"
    pixel_loads.clear()
    with pytest.raises(DecodeError) as e:
        decode(data, identity, 64, DecodeLimits(max_pixels=ABOVE[0] * ABOVE[1] - 1))
    assert e.value.code is ReasonCode.TOO_LARGE and pixel_loads == []


def test_budget_counts_pixels_not_sides(files, pixel_loads):
    """A long thin image with modest sides but too many pixels is refused (w * h, not max(w, h))."""
    data = encode(picture((8000, 520)), "PNG")  # 4.16 MP, each side under 8,192
    with pytest.raises(DecodeError) as e:
        open_rgb(data, DecodeLimits(max_pixels=LIMIT))
    assert e.value.code is ReasonCode.TOO_LARGE and pixel_loads == []
