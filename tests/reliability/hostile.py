"""A hostile image corpus, generated in code: each entry is (name, bytes, documented outcome).

Outcome is "scored" (the image decodes and goes to the model) or the reason code of the
seller-facing reject. docs/guarantees.md carries the same table.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.images import encode, photo

SCORED = "scored"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(w: int, h: int) -> bytes:
    """A ~100-byte PNG whose header claims w x h pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _chunk(b"IEND", b"")


def real_bomb_png(w: int, h: int) -> bytes:
    """A genuine w x h all-black PNG: tiny on disk (zlib of zeros), w*h*3 bytes once decoded."""
    row = b"\0" + b"\0" * w  # filter byte + grey pixels
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _corrupt(b: bytes, at: float = 1 / 3, n: int = 200) -> bytes:
    c = bytearray(b)
    i = int(len(c) * at)
    c[i:i + n] = b"\xaa" * min(n, len(c) - i)
    return bytes(c)


def _exif_jpeg(img: Image.Image, orientation: int | None = None, big: bool = False) -> bytes:
    ex = Image.Exif()
    if orientation:
        ex[0x0112] = orientation
    if big:
        ex[0x010E] = "x" * 60_000  # ImageDescription: fills the 64 KB APP1 segment
    return encode(img, "JPEG", quality=85, exif=ex.tobytes())


def _animated_gif(p: Image.Image) -> bytes:
    frames = [p.convert("P"), p.rotate(90).convert("P"), p.rotate(180).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _palette_alpha() -> bytes:
    img = Image.new("P", (300, 200), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (100, 50, 200, 150))
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)  # index 0 (red) fully transparent
    return buf.getvalue()


def _png16() -> bytes:
    arr = np.full((200, 300), 32768, dtype=np.uint16)
    arr[:, :150] = 65535
    return encode(Image.fromarray(arr), "PNG")  # uint16 -> mode I;16 -> 16-bit PNG


def corpus() -> list[tuple[str, bytes, str]]:
    p = photo(320, 240, seed=7)
    jpg, png, webp, gif = encode(p, "JPEG", quality=90), encode(p, "PNG"), encode(p, "WEBP"), encode(p.convert("P"), "GIF")
    return [
        ("zero-byte", b"", "unreadable"),
        ("truncated-jpeg-half", jpg[: len(jpg) // 2], "unreadable"),
        ("truncated-jpeg-header", jpg[:20], "unsupported_format"),
        ("truncated-png-half", png[: len(png) // 2], "unreadable"),
        ("truncated-png-header", png[:20], "unreadable"),
        ("truncated-webp-half", webp[: len(webp) // 2], "unreadable"),
        ("truncated-gif-half", gif[: len(gif) // 2], "unreadable"),
        ("corrupt-gif-data", _corrupt(gif), "unreadable"),
        # Damaged entropy-coded data inside a valid container: the decoders conceal it and the
        # model judges what is visible (no crash, no error). Documented as scored.
        ("corrupt-jpeg-data", _corrupt(jpg), SCORED),
        ("corrupt-webp-data", _corrupt(webp), SCORED),
        ("html-as-image", b"<html><body>not an image</body></html>", "unsupported_format"),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "unsupported_format"),
        ("ico-not-allowed", encode(p.resize((32, 32)), "ICO"), "unsupported_format"),
        ("bomb-header-100000x100000", png_claiming(100_000, 100_000), "too_large"),
        ("bomb-header-9000x9000", png_claiming(9000, 9000), "too_large"),
        ("bomb-real-png-10000x9000", real_bomb_png(10_000, 9000), "too_large"),
        ("animated-gif", _animated_gif(p), SCORED),
        ("cmyk-jpeg", encode(p.convert("CMYK"), "JPEG"), SCORED),
        ("png-16-bit-grey", _png16(), SCORED),
        ("palette-with-alpha", _palette_alpha(), SCORED),
        ("exif-rotated-6", _exif_jpeg(p, orientation=6), SCORED),
        ("exif-orientation-garbage", _exif_jpeg(p, orientation=999), SCORED),
        ("giant-exif", _exif_jpeg(p, big=True), SCORED),
        ("rgba-png", encode(p.convert("RGBA"), "PNG"), SCORED),
    ]
