"""PyTorch eager (fp32 on CPU, bf16 autocast on CUDA) and ``torch.compile``d graphs.

This is also the reference the other runtimes are checked against (tests/model/test_runtimes.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import checkpoint
from ..preprocess import normalise
from . import ModelMeta, cpu_threads


class TorchBackend:
    def __init__(self, weights: Path, device: str, compile: bool = False) -> None:
        net, meta = checkpoint.read(weights)
        self.meta = ModelMeta.from_dict(meta)
        self._dev = torch.device(device)
        self.device = str(self._dev)
        self._cuda = self._dev.type == "cuda"
        if not self._cuda:
            torch.set_num_threads(cpu_threads())
        self.net = net.to(self._dev, memory_format=torch.channels_last)
        self._features = torch.compile(self.net.features, mode="max-autotune-no-cudagraphs") if compile else self.net.features

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch)
            if self._cuda:  # pinned host memory makes the copy asynchronous; normalise on the GPU
                x = x.pin_memory().to(self._dev, non_blocking=True)
            x = normalise(x, self.meta.mean, self.meta.std).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._cuda):
                f = self._features(x)
            out = self.net.heads_from_features(f.float()).float()
        return out.cpu().numpy()
