"""Helpers for OTHER packages' plumbing tests (worker, CLI): a tiny random model file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .architecture import HEADS, QualityNet
from .checkpoint import FORMAT
from .preprocess import MEAN, STD
from .views import check_views

# Head-layer gain after calibration: logits then spread by about this many units across inputs.
_GAIN = 2.0


def _calibration_batch(input_size: int, g: torch.Generator, n: int = 48) -> torch.Tensor:
    """Generated, already-normalised inputs that vary in what photos vary in: brightness, contrast,
    colour, smooth structure and fine detail (noise / sharpness). Nothing is loaded from disk."""
    s = input_size
    lo = torch.rand(n, 3, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(lo, size=(s, s), mode="bilinear", align_corners=False)
    fine = torch.rand(n, 1, s, s, generator=g) - 0.5
    detail = torch.linspace(0.0, 0.6, n)[torch.randperm(n, generator=g)].view(n, 1, 1, 1)
    contrast = 0.2 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
    level = torch.rand(n, 1, 1, 1, generator=g)
    x = (level + contrast * (smooth - 0.5) + detail * fine).clamp(0.0, 1.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def write_random_model(path: str | os.PathLike, input_size: int = 64, views: Sequence[str] = ("global",),
                       seed: int = 0) -> Path:
    """Write a tiny randomly initialised model in the real file format; loadable by ``model.load()``.

    Its outputs are MEANINGLESS (random weights, metadata name "random-plumbing-only"):
    use it only to test plumbing (batching, shapes, caching, events), never quality.
    Deterministic (fixed seed) and fast on CPU. ``views=("global", "detail")`` gives a two-view
    model (input uint8 [N, 6, S, S], metadata "views") for the plumbing of the detail view; the
    single-view file is the same as before the views existed (no "views" key). Another ``seed`` gives
    another random model (version "0.0.0-random-seed<N>"), e.g. a shadow candidate beside the default.

    Why the calibration: with plain random weights every output sat within ~0.01 of a constant,
    so a plumbing test could not tell one image's result from another's (a mixed-up batch, a
    different decode, a wrong image all looked "equal"). The feature standardisation buffers are
    therefore set from the trunk's own features on generated inputs (no labels, no training), so
    the random heads swing widely with the input: quality over tens of points, each distortion
    head over most of 0..1. Still random: which way a head moves means nothing.
    """
    g = torch.Generator().manual_seed(seed)
    views = check_views(tuple(views))
    net = QualityNet("tiny-random", input_size, HEADS, views=views)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        # Each view gets its own generated inputs, so the views' features vary independently.
        x = torch.cat([_calibration_batch(input_size, g) for _ in views], dim=1)
        feats = net.features(x)
        net.feat_mean.copy_(feats.mean(0))
        net.feat_scale.copy_(feats.std(0) + 1e-6)
        d = feats.shape[1]
        net.linear.weight.copy_(torch.randn(net.linear.weight.shape, generator=g) * (_GAIN / d ** 0.5))
        net.linear.bias.zero_()
        net.linear.weight[0] *= 0.15 / _GAIN  # quality column: MOS 0..1, spread ~0.15 around 0.5
        net.linear.bias[0] = 0.5  # quality around 50 so plumbing sees mid-range scores
    meta = {"name": "random-plumbing-only", "version": "0.0.0-random" if seed == 0 else f"0.0.0-random-seed{seed}", "arch": "tiny-random",
            "input_size": int(input_size), "mean": list(MEAN), "std": list(STD), "heads": list(HEADS),
            "training": {"note": "random weights for plumbing tests only; outputs are meaningless "
                                 "(feature standardisation calibrated on generated inputs so outputs vary)"}}
    if len(views) > 1:
        meta["views"] = list(views)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "metadata": meta, "state_dict": net.state_dict()}, out)
    return out
