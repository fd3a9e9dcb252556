"""Decode cost per image, by JPEG size, for three ways of getting model input from bytes.

  full+float32   full-size decode, resize, float32 normalised tensor (no DCT scaling)
  draft+float32  DCT-domain downscale (Pillow draft), float32 tensor (the path before issue 12)
  draft+uint8    DCT-domain downscale, uint8 [3,S,S] array (now: the graph normalises)

Each is the full `consumer.decode` work (header checks, EXIF, RGB, measured signals,
preprocess); the same bytes go through all three, interleaved round by round, and every
output is checked for shape so each image was really decoded. Figures, never pass/fail.

  .venv/bin/python bench/decode_bench.py [--input-size 512] [--images 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import distinct_jpegs  # noqa: E402

SIZES = {"0.3MP": (640, 480), "1MP": (1152, 864), "4MP": (2304, 1728), "12MP": (4000, 3000)}


def _float32(img, size: int) -> np.ndarray:
    """The float path as it was: uint8 pixels -> float32 normalised [3, S, S] (torch, as before)."""
    from training.data import preprocess_image

    return preprocess_image(img, size).numpy()


def measure(input_size: int = 512, images: int = 6, rounds: int = 3, sizes: dict | None = None) -> dict[str, dict[str, float]]:
    """ms per image, best round, by JPEG size and path."""
    from consumer.decode import DecodeLimits, decode, measure as signals, open_rgb
    from model.preprocess import preprocess_uint8

    limits = DecodeLimits()

    def full_float(data: bytes):
        rgb, _, size = open_rgb(data, limits, min_side=0)
        signals(rgb, size)
        return _float32(rgb, input_size)

    def draft_float(data: bytes):
        return decode(data, lambda im: _float32(im, input_size), input_size, limits).tensor

    def draft_uint8(data: bytes):
        return decode(data, lambda im: preprocess_uint8(im, input_size), input_size, limits).tensor

    paths = {"full+float32": full_float, "draft+float32": draft_float, "draft+uint8": draft_uint8}
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, wh in (sizes or SIZES).items():
            files = distinct_jpegs(Path(tmp), images, wh, prefix=label.replace(".", "_"))
            datas = [f.read_bytes() for f in files]
            best = {k: float("inf") for k in paths}
            for _ in range(rounds):
                for k, fn in paths.items():
                    t0 = time.perf_counter()
                    arrs = [fn(d) for d in datas]
                    best[k] = min(best[k], (time.perf_counter() - t0) * 1000 / len(datas))
                    assert all(a.shape == (3, input_size, input_size) for a in arrs)
            out[label] = {k: round(v, 2) for k, v in best.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-size", type=int, default=512)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    res = measure(args.input_size, args.images, args.rounds)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
