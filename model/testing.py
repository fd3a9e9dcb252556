"""Helpers for OTHER packages' plumbing tests (worker, CLI): a tiny random model file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .architecture import HEADS, QualityNet
from .data import MEAN, STD
from .checkpoint import FORMAT


def write_random_model(path: str | os.PathLike, input_size: int = 64) -> Path:
    """Write a tiny randomly initialised model in the real file format; loadable by ``model.load()``.

    Its outputs are MEANINGLESS (random weights, metadata name "random-plumbing-only"):
    use it only to test plumbing (batching, shapes, caching, events), never quality.
    Deterministic (fixed seed) and fast on CPU.
    """
    g = torch.Generator().manual_seed(0)
    net = QualityNet("tiny-random", input_size, HEADS)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        net.linear.bias[0] = 0.5  # quality around 50 so plumbing sees mid-range scores
    meta = {"name": "random-plumbing-only", "version": "0.0.0-random", "arch": "tiny-random",
            "input_size": int(input_size), "mean": list(MEAN), "std": list(STD), "heads": list(HEADS),
            "training": {"note": "random weights for plumbing tests only; outputs are meaningless"}}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "metadata": meta, "state_dict": net.state_dict()}, out)
    return out
