"""Test images generated in code (nothing downloaded): a textured 'product photo' and variants."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def photo(w: int = 640, h: int = 480, seed: int = 0) -> Image.Image:
    """A sharp, colourful synthetic scene: gradients, shapes and fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin((x + y) / 37.0)], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(2, max(3, min(w, h) // 4))
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        base[mask] = rng.random(3)
    base += (rng.random((h, w, 1)) - 0.5) * 0.06 * (np.sin(x / 2.0)[..., None] > 0)
    return Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def variants(seed: int = 0) -> dict[str, bytes]:
    p = photo(seed=seed)
    return {
        "sharp.jpg": encode(p, quality=95),
        "blurry.jpg": encode(p.filter(ImageFilter.GaussianBlur(6)), quality=95),
        "dark.jpg": encode(Image.eval(p, lambda v: v // 8), quality=95),
        "tiny.png": encode(p.resize((80, 60)), "PNG"),
    }
