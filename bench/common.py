"""Pieces both benchmarks use: distinct test images and a process's resident memory."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def distinct_jpegs(root: Path, n: int, size: tuple[int, int], prefix: str = "b", seed: int = 0) -> list[Path]:
    """n photo-like JPEGs whose bytes all differ, so the cache never answers for them."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        f = rng.uniform(8, 60, 3)
        img = np.stack([np.sin(x / f[0] + i), np.cos(y / f[1] - i), np.sin((x + y) / f[2] + i * 0.1)], -1) * 0.4 + 0.5
        img += rng.normal(0, 0.03, img.shape)
        buf = io.BytesIO()
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        p = root / f"{prefix}{i:05d}.jpg"
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return paths


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def distinct_copies(root: Path, n: int, size: tuple[int, int], prefix: str = "c", bases: int = 32, seed: int = 0,
                    run: str = "") -> list[Path]:
    """n JPEGs with distinct bytes (so distinct sha256: never a cache hit) from `bases` rendered photos.

    `run` goes into every copy's bytes: without it a second run against a stack still up (its
    Redis still holding the first run's results) was served from the cache where it meant to
    measure the model (a 1-decode-thread run reported 89.6 events/s, 0 of 96 scored by the model).

    Why: rendering a photo costs ~10-50 ms, too slow for the thousands of images a GPU run
    needs. Each copy gets its own JPEG comment segment (COM, right after SOI), so its bytes
    and hash differ while the decode work is exactly that of its base photo.
    """
    base = [p.read_bytes() for p in distinct_jpegs(root, min(n, bases), size, prefix=f"{prefix}base", seed=seed)]
    paths = []
    for i in range(n):
        data = base[i % len(base)]
        tag = f"imagegate-bench {run} {prefix} {i}".encode()
        com = b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag
        p = root / f"{prefix}{i:06d}.jpg"
        p.write_bytes(data[:2] + com + data[2:])
        paths.append(p)
    return paths
