"""Graded synthetic distortions: the labels for the per-distortion heads.

Each distortion takes a clean RGB PIL image, a level 1..4 (1 = already visible
at 512 px, 4 = severe) and a seeded ``numpy.random.Generator``, and returns a
new RGB PIL image.  Everything happens in memory: the only JPEG encoding is the
compression distortion itself.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LEVELS = (1, 2, 3, 4)

# distortion name -> head it turns on ("" = degrades quality but owns no head)
HEAD_OF: dict[str, str] = {
    "gaussian_blur": "blur",
    "motion_blur": "blur",
    "downscale": "blur",
    "noise": "noise",
    "jpeg": "compression",
    "underexposure": "underexposure",
    "overexposure": "overexposure",
    "low_contrast": "",
    "overlay": "overlay",
}
DISTORTION_HEADS: tuple[str, ...] = ("blur", "noise", "compression", "underexposure", "overexposure", "overlay")

_FONT_DIR = "/usr/share/fonts/truetype/dejavu"
_WORDS = ("SALE", "NEW", "www.shop.example", "50% OFF", "SAMPLE", "© Photo Studio", "FREE SHIPPING",
          "Best price!", "watermark", "Call now 555-0134", "LIMITED", "Brand")


def _f(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def gaussian_blur(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    sigma = (1.2, 2.0, 3.2, 5.0)[level - 1] * rng.uniform(0.9, 1.1)
    return img.filter(ImageFilter.GaussianBlur(sigma))


def motion_blur(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    import cv2

    length = int((7, 11, 17, 27)[level - 1] * rng.uniform(0.9, 1.1)) | 1
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    k /= k.sum()
    return Image.fromarray(cv2.filter2D(np.asarray(img.convert("RGB")), -1, k, borderType=cv2.BORDER_REFLECT))


def downscale(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    factor = (2.5, 3.5, 5.0, 7.0)[level - 1]
    w, h = img.size
    small = img.resize((max(8, int(w / factor)), max(8, int(h / factor))), Image.BICUBIC)
    return small.resize((w, h), Image.BILINEAR if rng.random() < 0.5 else Image.NEAREST)


def noise(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    """Sensor-like noise: signal-dependent (shot) + read noise, partly chromatic."""
    a = _f(img)
    sigma = (0.035, 0.06, 0.10, 0.16)[level - 1] * rng.uniform(0.9, 1.1)
    lum = rng.standard_normal(a.shape[:2] + (1,)).astype(np.float32)
    chroma = rng.standard_normal(a.shape).astype(np.float32)
    mix = rng.uniform(0.3, 1.0)
    n = mix * lum + (1 - mix) * chroma
    scale = sigma * (0.5 + 0.5 * np.sqrt(np.clip(a, 0.02, 1.0)))
    return _img(a + n * scale)


def jpeg(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    q = int((22, 14, 9, 5)[level - 1] + rng.integers(-2, 3))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=max(2, q), subsampling=2)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def underexposure(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    a = _f(img)
    lin = a ** 2.2 * (0.25, 0.12, 0.05, 0.018)[level - 1] * rng.uniform(0.85, 1.15)
    return _img(lin ** (1 / 2.2))


def overexposure(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    a = _f(img)
    lin = a ** 2.2 * (3.0, 5.0, 9.0, 16.0)[level - 1] * rng.uniform(0.85, 1.15)
    return _img(lin ** (1 / 2.2))


def low_contrast(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    a = _f(img)
    c = (0.5, 0.35, 0.22, 0.12)[level - 1]
    m = a.mean() * rng.uniform(0.8, 1.2)
    return _img(m + (a - m) * c)


def _font(size: int, rng: np.random.Generator) -> ImageFont.ImageFont:
    names = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf")
    try:
        root = os.environ.get("IMAGEGATE_SOURCES_ROOT", "").rstrip("/")  # see synthetic.source_root
        return ImageFont.truetype(f"{root}{_FONT_DIR}/{names[int(rng.integers(len(names)))]}", size)
    except OSError:
        return ImageFont.load_default(size)


def overlay(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    """Captions, semi-transparent watermarks or borders; more and bigger with level."""
    base = img.convert("RGBA")
    w, h = base.size
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    kind = ("caption", "watermark", "border")[int(rng.integers(3))] if level > 1 else "caption"

    def colour(alpha: int) -> tuple[int, int, int, int]:
        c = rng.integers(0, 256, 3)
        if rng.random() < 0.6:  # white / black / red are the usual sticker colours
            c = np.array([(255, 255, 255), (0, 0, 0), (220, 20, 30)][int(rng.integers(3))])
        return (int(c[0]), int(c[1]), int(c[2]), alpha)

    if kind == "border":
        t = int(min(w, h) * (0.03, 0.05, 0.08, 0.12)[level - 1])
        draw.rectangle([0, 0, w - 1, h - 1], outline=colour(255), width=t)
        level = max(1, level - 2)  # plus a small caption
        kind = "caption"
    if kind == "caption":
        n = (1, 2, 3, 5)[level - 1]
        for _ in range(n):
            size = int(h * rng.uniform(0.05, 0.12) * (1 + 0.25 * level))
            text = _WORDS[int(rng.integers(len(_WORDS)))]
            font = _font(size, rng)
            x = int(rng.uniform(0, max(1, w * 0.6)))
            y = int(rng.uniform(0, max(1, h - size)))
            if rng.random() < 0.4:
                bx = draw.textbbox((x, y), text, font=font)
                draw.rectangle([bx[0] - 4, bx[1] - 4, bx[2] + 4, bx[3] + 4], fill=colour(int(rng.uniform(160, 255))))
            draw.text((x, y), text, font=font, fill=colour(255),
                      stroke_width=int(rng.integers(0, 3)), stroke_fill=colour(255))
    else:  # watermark: tiled, rotated, semi-transparent text
        alpha = int((70, 100, 140, 190)[level - 1] * rng.uniform(0.8, 1.2))
        size = int(h * rng.uniform(0.07, 0.12))
        font = _font(size, rng)
        text = _WORDS[int(rng.integers(len(_WORDS)))]
        tile = Image.new("RGBA", (w * 2, h * 2), (0, 0, 0, 0))
        td = ImageDraw.Draw(tile)
        fill = colour(alpha)
        step_y = int(size * (3.0, 2.5, 2.0, 1.6)[level - 1])
        for yy in range(0, h * 2, step_y):
            for xx in range(-(yy % (size * 4)), w * 2, int(size * len(text) * 0.8) + size):
                td.text((xx, yy), text, font=font, fill=fill)
        tile = tile.rotate(float(rng.uniform(-40, 40)), resample=Image.BICUBIC)
        layer = tile.crop((w // 2, h // 2, w // 2 + w, h // 2 + h))
    return Image.alpha_composite(base, layer).convert("RGB")


DISTORTIONS: dict[str, Callable[[Image.Image, int, np.random.Generator], Image.Image]] = {
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "downscale": downscale,
    "noise": noise,
    "jpeg": jpeg,
    "underexposure": underexposure,
    "overexposure": overexposure,
    "low_contrast": low_contrast,
    "overlay": overlay,
}


def apply(img: Image.Image, steps: list[tuple[str, int]], seed: int) -> Image.Image:
    """Apply ``[(distortion, level), ...]`` in order with a seeded generator."""
    rng = np.random.default_rng(seed)
    out = img.convert("RGB")
    for name, level in steps:
        out = DISTORTIONS[name](out, level, rng)
    return out


def head_labels(steps: list[tuple[str, int]]) -> dict[str, int]:
    """0/1 label per distortion head for a list of applied steps."""
    on = {HEAD_OF[name] for name, _ in steps}
    return {h: int(h in on) for h in DISTORTION_HEADS}
