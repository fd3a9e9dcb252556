"""Model-only throughput per runtime, measured back to back in one process.

Why interleaved rounds: the development machine is shared, so a neighbour's job would skew
whichever runtime happened to run then; alternating runtimes round by round and keeping
each one's best round makes the ratios between runtimes trustworthy even when the
absolute figures wobble. Inputs are real decoded photos (uint8), never random tensors.

  .venv/bin/python bench/model_bench.py [--batch 32] [--rounds 3] [--runtimes torch,onnxruntime,openvino]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def sample_batch(predictor, batch: int) -> np.ndarray:
    """batch distinct real photos (skimage package data, cropped and flipped) as the model's uint8 input."""
    from PIL import Image, ImageOps
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    imgs = []
    for i in range(batch):
        img = Image.fromarray(srcs[i % len(srcs)]).convert("RGB")
        w, h = img.size
        k = i // len(srcs)
        img = img.crop((k * 7 % (w // 4), k * 5 % (h // 4), w - k * 3 % (w // 4), h))
        imgs.append(ImageOps.mirror(img) if k % 2 else img)
    return np.stack([predictor.preprocess(im) for im in imgs])


def measure(runtimes: list[str], batch: int, rounds: int, weights: str | None = None, device: str = "cpu") -> dict[str, float]:
    """Best-round images/s per runtime (one warm-up forward each); missing runtimes are reported, not fatal."""
    import model

    preds, rates = {}, {}
    for rt in runtimes:
        try:
            preds[rt] = model.load(weights, device, runtime=rt)
        except model.ModelLoadError as e:
            print(f"  {rt}: not available: {e}", file=sys.stderr)
    if not preds:
        return {}
    x = sample_batch(next(iter(preds.values())), batch)
    for p in preds.values():
        out = p.predict(x)  # warm-up (and count: every image scored)
        assert all(v.shape == (batch,) for v in out.values())
    for _ in range(rounds):
        for rt, p in preds.items():
            t0 = time.perf_counter()
            p.predict(x)
            rates[rt] = max(rates.get(rt, 0.0), batch / (time.perf_counter() - t0))
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runtimes", default="torch,onnxruntime,openvino")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rates = measure(args.runtimes.split(","), args.batch, args.rounds, args.weights, args.device)
    print(json.dumps({k: round(v, 2) for k, v in rates.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
