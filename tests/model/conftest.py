"""Shared fixtures for the model tests (CPU only, no wall-clock assertions)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import model
from training import train
from training.train_v1 import DEFAULT_OUT as V1_512
from training.train_v1 import variant

SHIPPED = {"v2-two-view": train.DEFAULT_OUT, "v2-global": train.GLOBAL_OUT, "v1-512px": V1_512, "v1-384px": variant(384)[2]}


@pytest.fixture(scope="session", params=list(SHIPPED.values()), ids=list(SHIPPED))
def shipped(request: pytest.FixtureRequest) -> model.Predictor:
    """Each shipped weights file: v2 with its detail view (the default), v2 global-only, and the
    previous release v1.2.0 at 512 and 384 px."""
    return model.load(request.param, device="cpu", runtime="torch")


@pytest.fixture(scope="session")
def clean_photo() -> Image.Image:
    """A clean 512x512 photo from a package sample (NASA, public domain); not used in training."""
    from skimage import data

    return Image.fromarray(np.asarray(data.astronaut())).convert("RGB")


FAKE_BIQ_N = 40


@pytest.fixture
def fake_biq(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A small fake BIQ2021 folder (uniform 512 px photos, distinct MOS) behind ``data.load_biq``:
    the split tests of both training recipes run on it, with no datasets."""
    from training import data

    rng = np.random.default_rng(3)
    paths = []
    for i in range(FAKE_BIQ_N):
        p = tmp_path / f"biq{i:03d}.jpg"
        Image.new("RGB", (512, 512), tuple(int(v) for v in rng.integers(0, 256, 3))).save(p, quality=80)
        paths.append(p)
    mos = rng.permutation(np.linspace(0.05, 0.95, FAKE_BIQ_N)).astype(np.float32)
    monkeypatch.setattr(data, "load_biq", lambda root=None: (list(paths), mos.copy()))
    return paths, mos
