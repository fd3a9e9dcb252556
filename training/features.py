"""Frozen feature extractor used for training and cached evaluation.

The shipped network computes exactly these features (same module class, same
ImageNet weights) before its heads, so heads fitted on the cache are valid at
inference.
"""

from __future__ import annotations

import torch

from model.architecture import QualityNet, load_imagenet_lite0

ARCH = "efficientnet-lite0-mlsp"
INPUT_SIZE = 512
FEATURE_TAG = "lite0in1k-mlsp1"


def pick_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pretrained_net(input_size: int = INPUT_SIZE, device: str | torch.device = "cpu") -> QualityNet:
    """QualityNet with ImageNet trunk weights and untrained heads, eval mode, channels_last."""
    net = QualityNet(ARCH, input_size)
    load_imagenet_lite0(net.trunk)
    return net.eval().to(torch.device(device), memory_format=torch.channels_last)
