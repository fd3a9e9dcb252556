"""Shared fixtures for the model tests (CPU only, no wall-clock assertions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import model


@pytest.fixture(scope="session")
def shipped() -> model.Predictor:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return model.load(device="cpu")


@pytest.fixture(scope="session")
def clean_photo() -> Image.Image:
    """A clean 512x512 photo from a package sample (NASA, public domain); not used in training."""
    from skimage import data

    return Image.fromarray(np.asarray(data.astronaut())).convert("RGB")
