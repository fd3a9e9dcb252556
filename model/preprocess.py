"""Image -> the model's input: a uint8 [3, S, S] array (torch-free, so ONNX/OpenVINO workers skip torch).

Why uint8: a 512 px image is 0.75 MB as uint8 and 3 MB as float32; queues of decoded images
stay four times smaller, and the normalisation runs inside the model graph, where it is cheap.
That normalisation (``normalise``) lives here too, so the torch runtime, the ONNX export and
training all run the very same ops; it imports torch only when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

# EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x*255 - 127) / 128).
MEAN: tuple[float, float, float] = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD: tuple[float, float, float] = (128.0 / 255, 128.0 / 255, 128.0 / 255)


def preprocess_uint8(img: Image.Image, size: int) -> np.ndarray:
    """RGB PIL image of any size -> C-contiguous uint8 [3, size, size].

    Policy: resize the *whole* image to size x size with PIL's antialiased
    bicubic filter (aspect ratio is not kept).  Why: cropping would hide
    overlays/borders and defects at the edges, padding would add fake borders;
    a mild aspect change barely affects quality cues.  At 512 px most BIQ2021
    photos (512x512) pass through untouched, so blur and noise stay visible.
    Pure and deterministic; safe to call from many threads (Pillow releases the GIL).
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))


def normalise(x: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """uint8 [..., 3V, S, S] -> float32 normalised; the very ops the exported graph starts with.

    V channel-stacked views (model.views) share the per-colour mean/std, tiled once per view.
    The channel count is static in the exported graph (only N is dynamic), so the tiling is a
    constant there; for V = 1 the ops are exactly the single-view ones (same export bytes).
    """
    import torch

    c = int(x.shape[-3])
    if c % 3:
        raise ValueError(f"expected 3 channels per view, got {c} channels")
    mean, std = [float(v) for v in mean] * (c // 3), [float(v) for v in std] * (c // 3)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(c, 1, 1)
    return (x.float() / 255.0 - m) / s
