"""Shared fixtures for the model tests (CPU only, no wall-clock assertions)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import model
from model.train_v1 import variant


@pytest.fixture(scope="session", params=[model.DEFAULT_WEIGHTS, variant(384)[2]], ids=["512px", "384px"])
def shipped(request: pytest.FixtureRequest) -> model.Predictor:
    """Each shipped weights file: the default 512 px model and the faster 384 px variant."""
    return model.load(request.param, device="cpu", runtime="torch")


@pytest.fixture(scope="session")
def clean_photo() -> Image.Image:
    """A clean 512x512 photo from a package sample (NASA, public domain); not used in training."""
    from skimage import data

    return Image.fromarray(np.asarray(data.astronaut())).convert("RGB")
