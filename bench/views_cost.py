"""What the detail view costs, measured in one process (by hand, not a test).

``python -m bench.views_cost [--runtimes openvino torch] [--size 512]``
1. model-only images/s of a 1-view and a 2-view QualityNet with the SAME trunk (the pinned
   ImageNet EfficientNet-Lite0 wheel; heads random, so scores mean nothing), batch 4 (the CPU chunk);
2. decode + preprocess ms of a generated 12 MP (4000x3000) JPEG: 1 view (DCT draft) vs
   2 views (full decode + detail crops), through consumer.decode.decode as the worker runs it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _weights(path: Path, size: int, views: tuple[str, ...]) -> Path:
    import torch

    from model.architecture import HEADS, QualityNet, load_imagenet_lite0
    from model.checkpoint import FORMAT
    from model.preprocess import MEAN, STD

    torch.manual_seed(0)
    net = QualityNet("efficientnet-lite0-mlsp", size, HEADS, views=views)
    load_imagenet_lite0(net.trunk)
    meta = {"name": "views-cost-random-heads", "version": "0", "arch": "efficientnet-lite0-mlsp", "input_size": size,
            "mean": list(MEAN), "std": list(STD), "heads": list(HEADS), "views": list(views)}
    torch.save({"format": FORMAT, "metadata": meta, "state_dict": net.state_dict()}, path)
    return path


def _best_rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_images / min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtimes", nargs="+", default=["openvino", "torch"])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import model
    from consumer.decode import DecodeLimits, decode
    from model.views import stack_views
    from tests.images import encode, photo

    s = args.size
    with tempfile.TemporaryDirectory() as tmp:
        files = {v: _weights(Path(tmp) / f"v{len(v)}.pt", s, v) for v in [("global",), ("global", "detail")]}
        for rt in args.runtimes:
            for v, f in files.items():
                p = model.load(f, device="cpu", runtime=rt)
                x = np.random.default_rng(0).integers(0, 256, (8, 3 * len(v), s, s), dtype=np.uint8)
                rate = _best_rate(lambda: p.predict(x), len(x), args.repeats)
                print(f"model {rt:12s} views={'+'.join(v):14s} {rate:6.2f} images/s (batch {len(x)}, chunk {p.chunk})")
    data = encode(photo(4000, 3000, seed=1), quality=90)
    limits = DecodeLimits()
    for v, full in [(("global",), False), (("global", "detail"), True)]:
        def one():
            return decode(data, lambda im: stack_views(im, s, v), s, limits, full_resolution=full)
        one()
        ms = []
        for _ in range(max(args.repeats, 7)):
            t = time.perf_counter()
            one()
            ms.append((time.perf_counter() - t) * 1e3)
        print(f"decode+preprocess 12MP JPEG ({len(data) / 1e6:.1f} MB) views={'+'.join(v):14s} "
              f"median {statistics.median(ms):6.1f} ms  min {min(ms):6.1f} ms")


if __name__ == "__main__":
    main()
