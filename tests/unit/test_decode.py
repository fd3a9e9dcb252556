import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from consumer.decode import DecodeError, DecodeLimits, decode, open_rgb
from consumer.events import ReasonCode
from tests.images import encode, photo

LIMITS = DecodeLimits()


def preprocess(img):  # stand-in for the model's preprocess: decode is tested, not the model
    return torch.from_numpy(np.asarray(img.resize((32, 32)), dtype=np.float32)).permute(2, 0, 1) / 255.0


def test_jpeg_decodes_to_tensor_and_signals():
    d = decode(encode(photo(640, 480)), preprocess, 32, LIMITS)
    assert d.format == "JPEG" and tuple(d.tensor.shape) == (3, 32, 32)
    assert d.signals["width"] == 640 and d.signals["height"] == 480
    assert 0 < d.signals["brightness"] < 1


def test_decode_time_downscale_keeps_true_size():
    img, fmt, size = open_rgb(encode(photo(2048, 1536)), LIMITS, min_side=256)
    assert size == (2048, 1536)
    assert img.size[0] < 2048 and min(img.size) >= 256  # DCT-scaled, not full size


def test_exif_orientation_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW
    data = encode(photo(200, 100), exif=exif.tobytes())
    img, _, size = open_rgb(data, LIMITS)
    assert img.size == (100, 200) and size == (100, 200)


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    img, _, _ = open_rgb(encode(rgba, "PNG"), LIMITS)
    assert img.mode == "RGB" and img.getpixel((5, 5)) == (255, 255, 255)


def test_palette_with_transparency_and_16_bit_and_cmyk():
    p = Image.new("P", (10, 10), 0)
    p.putpalette([0, 0, 0] * 256)
    p.info["transparency"] = 0
    assert open_rgb(encode(p, "PNG", transparency=0), LIMITS)[0].getpixel((1, 1)) == (255, 255, 255)
    i16 = Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16))
    assert open_rgb(encode(i16, "PNG"), LIMITS)[0].getpixel((1, 1)) == (255, 255, 255)
    cmyk = photo(40, 30).convert("CMYK")
    assert open_rgb(encode(cmyk, "JPEG"), LIMITS)[0].mode == "RGB"


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = open_rgb(buf.getvalue(), LIMITS)[0].getpixel((5, 5))
    assert r > 200 and b < 50


@pytest.mark.parametrize("data, code", [
    (b"", ReasonCode.UNREADABLE),
    (b"<html>hello</html>", ReasonCode.UNSUPPORTED_FORMAT),
    (encode(photo(64, 64))[:300], ReasonCode.UNREADABLE),
])
def test_bad_bytes_get_reason_codes(data, code):
    with pytest.raises(DecodeError) as e:
        decode(data, preprocess, 32, LIMITS)
    assert e.value.code is code


def test_format_allow_list():
    with pytest.raises(DecodeError) as e:
        decode(encode(photo(32, 32), "BMP"), preprocess, 32, DecodeLimits(allowed_formats=("JPEG",)))
    assert e.value.code is ReasonCode.UNSUPPORTED_FORMAT and "BMP" in str(e.value)


def bomb_png(w: int, h: int) -> bytes:
    """A valid PNG header claiming w x h pixels: tiny file, huge image."""
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")


def test_a_bomb_over_pillows_own_guard_is_too_large_not_a_crash():
    """Pillow's DecompressionBombError (3.6 G pixels here) becomes the seller's `too_large`.
    The project's own, lower pixel limit is tested in test_decode_limits.py with images under Pillow's guard."""
    data = bomb_png(60_000, 60_000)
    assert len(data) < 1000
    with pytest.raises(DecodeError) as e:
        decode(data, preprocess, 32, DecodeLimits(max_pixels=50_000_000))
    assert e.value.code is ReasonCode.TOO_LARGE
