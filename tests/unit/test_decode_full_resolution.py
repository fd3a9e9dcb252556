"""decode(full_resolution=True): no DCT downscale, no reduction before compositing, budget for the
full raster held while preprocess runs; the worker's Decode step passes the flag through."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from consumer.decode import DecodeBudget, DecodeError, DecodeLimits, decode, decode_cost
from consumer.events import ReasonCode
from consumer.steps.decode import Decode
from consumer.work import Source, WorkItem
from tests.images import encode, photo

LIMITS = DecodeLimits()


def recorder(seen: list[tuple[int, int]], budget: DecodeBudget | None = None):
    def preprocess(img: Image.Image) -> np.ndarray:
        seen.append((img.size, budget.used if budget else None))
        return np.zeros((6, 8, 8), np.uint8)
    return preprocess


@pytest.mark.parametrize("full", [False, True])
def test_large_jpeg_reaches_preprocess_at_full_size_only_when_asked(full: bool) -> None:
    data = encode(photo(2400, 1800), quality=90)
    seen: list = []
    budget = DecodeBudget(1 << 30)
    d = decode(data, recorder(seen, budget), 64, LIMITS, budget, full_resolution=full)
    (size, used), = seen
    if full:
        assert size == (2400, 1800)
        assert used == decode_cost("RGB", 2400, 1800)  # the full raster is reserved while preprocess runs
    else:
        assert size == (300, 225)  # 1/8 DCT scale: the smallest that keeps both sides >= 64
        assert used == decode_cost("RGB", 300, 225)
    assert budget.used == 0 and d.signals["width"] == 2400 and d.signals["height"] == 1800


def test_transparent_image_is_not_reduced_for_full_resolution() -> None:
    data = encode(Image.new("RGBA", (1200, 900), (10, 20, 30, 128)), "PNG")
    seen: list = []
    decode(data, recorder(seen), 64, LIMITS)
    decode(data, recorder(seen), 64, LIMITS, full_resolution=True)
    assert seen[0][0][0] < 1200 and seen[1][0] == (1200, 900)


def test_full_resolution_decode_that_exceeds_the_budget_is_too_large() -> None:
    """A 12 MP JPEG fits the budget when drafted, but not when decoded full size."""
    data = encode(photo(4000, 3000), quality=85)
    budget = DecodeBudget(24 << 20)  # full size needs 4000*3000*6 = ~69 MB
    decode(data, recorder([]), 512, LIMITS, budget)
    with pytest.raises(DecodeError) as e:
        decode(data, recorder([]), 512, LIMITS, budget, full_resolution=True)
    assert e.value.code is ReasonCode.TOO_LARGE and budget.used == 0


def test_preprocess_errors_are_not_turned_into_seller_rejects() -> None:
    def broken(img: Image.Image) -> np.ndarray:
        raise KeyError("a bug in preprocess")

    with pytest.raises(KeyError):
        decode(encode(photo(64, 64)), broken, 32, LIMITS, DecodeBudget(1 << 30), full_resolution=True)


@pytest.mark.parametrize("full", [False, True])
def test_decode_step_passes_the_predictors_flag(full: bool) -> None:
    seen: list = []
    step = Decode(LIMITS, DecodeBudget(1 << 30), recorder(seen), 64, full_resolution=full)
    item = WorkItem(Source("t", 0, 0, 0, None, None))
    item.data, item.sha256 = encode(photo(2048, 1024), quality=90), "0" * 64
    step(item)
    assert item.pixels.shape == (6, 8, 8) and item.data is None and item.content is None
    assert seen[0][0] == ((2048, 1024) if full else (256, 128))
