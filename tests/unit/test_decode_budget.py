"""Decode memory is budgeted in bytes by mode and size, shared by all fetch threads, and the
16-bit and alpha paths never build full-size float64 or full-size composite copies."""

from __future__ import annotations

import io
import threading
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from consumer.decode import DecodeBudget, DecodeBusy, DecodeError, DecodeLimits, decode_cost, open_rgb
from consumer.events import ReasonCode


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def test_cost_depends_on_mode_not_only_pixels():
    w, h = 1000, 1000
    assert decode_cost("L", w, h) < decode_cost("RGB", w, h) < decode_cost("RGBA", w, h) < decode_cost("I", w, h)


def test_an_image_larger_than_the_whole_budget_is_too_large_before_decoding():
    data = png(Image.new("RGBA", (3000, 2000), (10, 20, 30, 128)))
    with pytest.raises(DecodeError) as e:
        open_rgb(data, DecodeLimits(), budget=DecodeBudget(16 << 20))  # 3000x2000 RGBA needs ~42 MB
    assert e.value.code is ReasonCode.TOO_LARGE and "to decode" in str(e.value)


def test_budget_is_shared_waiters_block_until_bytes_are_released_then_give_up():
    budget = DecodeBudget(100, wait_s=0.3)
    got = threading.Event()
    with budget.hold(80):
        def second():
            with budget.hold(50):
                got.set()

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.1)
        assert not got.is_set()  # 80 + 50 > 100: waits for the first holder
    t.join(2)
    assert got.is_set() and budget.used == 0
    with budget.hold(90):
        with pytest.raises(DecodeBusy):
            with budget.hold(20):
                pass


def test_16_bit_grey_is_scaled_without_a_float64_copy():
    arr = (np.arange(3000 * 2000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(2000, 3000)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    data = png(img)
    tracemalloc.start()
    try:
        rgb, _, size = open_rgb(data, DecodeLimits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == (3000, 2000) and rgb.mode == "RGB"
    # numpy allocations are traced: a float64 copy alone would be 48 MB; uint16 copy + uint8 result is 18 MB
    assert peak < 30 << 20, f"peak {peak / 2**20:.0f} MB"
    assert rgb.getpixel((2999, 0))[0] == (2999 >> 8)  # high byte kept: 16-bit -> 8-bit by >> 8


def test_transparent_images_are_reduced_before_compositing_but_report_their_size():
    data = png(Image.new("RGBA", (4000, 3000), (200, 0, 0, 0)))  # fully transparent: white after compositing
    rgb, _, size = open_rgb(data, DecodeLimits(), min_side=512)
    assert size == (4000, 3000)
    assert 512 <= min(rgb.size) < 3000  # composited at a reduced size, both sides still >= the model's input
    assert rgb.getpixel((10, 10)) == (255, 255, 255)
