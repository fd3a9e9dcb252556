"""Inference runtimes behind one interface: ``Backend.run(uint8 [N,3V,S,S]) -> float32 [N, heads]``.

Why a registry: the predictor, the worker and the benchmarks name a runtime by a string
(``IMAGEGATE_RUNTIME``) and never import a runtime package themselves, so a machine needs
only the packages of the runtime it uses, and adding one (TensorRT, a new NPU) is one module.
Backends return the raw head outputs (quality on a 0..1 MOS scale, distortion logits);
``model.predictor`` turns them into scores the same way for all of them.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..views import GLOBAL, check_views


@dataclass(frozen=True)
class ModelMeta:
    """What a predictor needs to know about the model, whichever runtime runs it."""

    name: str
    version: str
    input_size: int
    heads: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Views stacked on the channel axis (model.views): the input is uint8 [N, 3 * len(views), S, S].
    views: tuple[str, ...] = (GLOBAL,)

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> "ModelMeta":
        return cls(str(meta["name"]), str(meta["version"]), int(meta["input_size"]), tuple(meta["heads"]),
                   tuple(float(v) for v in meta["mean"]), tuple(float(v) for v in meta["std"]),
                   check_views(tuple(meta.get("views", (GLOBAL,)))))


class Backend(Protocol):
    meta: ModelMeta
    device: str  # "cpu" or "cuda:0"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [N, 3V, S, S] (C-contiguous; V = len(meta.views)) -> float32 [N, len(heads)] raw head outputs."""
        ...


class RuntimeUnavailable(RuntimeError):
    """The runtime's package is not installed or cannot run on this device."""


# name -> (module, class, keyword arguments). Modules are imported only when chosen.
# The *-int8 entries are EXPERIMENTAL and fail the accuracy bar: static QDQ int8 of the convolutions
# dropped BIQ val SROCC from 0.845 to 0.649 (450 images; README "Capacity"); kept to reproduce that.
REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "torch": ("model.runtimes.torch", "TorchBackend", {}),
    "torch-compile": ("model.runtimes.torch", "TorchBackend", {"compile": True}),
    "onnxruntime": ("model.runtimes.onnxruntime", "OrtBackend", {}),
    "onnxruntime-int8": ("model.runtimes.onnxruntime", "OrtBackend", {"precision": "int8"}),
    "tensorrt": ("model.runtimes.onnxruntime", "OrtBackend", {"tensorrt": True}),
    "openvino": ("model.runtimes.openvino", "OpenVinoBackend", {}),
    "openvino-int8": ("model.runtimes.openvino", "OpenVinoBackend", {"precision": "int8"}),
}

# Chosen by model-only images/s measured side by side (bench/results/latest.json, 2-core dev machine):
# OpenVINO 1.0-2.1x ONNX Runtime in three same-process comparisons, 6.6x torch eager in `make bench`.
CPU_DEFAULT = "openvino"
CUDA_DEFAULT = "torch"


_THREADS: int | None = None


def set_threads(n: int | None) -> None:
    """The worker's IMAGEGATE_INFERENCE_THREADS, applied before a backend is created."""
    global _THREADS
    _THREADS = n


def cpu_threads() -> int:
    """Cores this process may run on (cgroup/affinity aware): the size of the one intra-op pool."""
    if _THREADS:
        return _THREADS
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str) -> str:
    """"auto" -> "cuda:0" when an NVIDIA GPU is usable, else "cpu". torch is imported only if a GPU is present."""
    if device != "auto":
        return "cuda:0" if device == "cuda" else device
    if not Path("/dev/nvidiactl").exists():
        return "cpu"
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def default_runtime(device: str) -> str:
    """``IMAGEGATE_RUNTIME`` if set, else the fastest measured runtime for the device."""
    env = os.environ.get("IMAGEGATE_RUNTIME", "").strip()
    if env:
        return env
    return CUDA_DEFAULT if device.startswith("cuda") else CPU_DEFAULT


def create(name: str, weights: Path, device: str) -> Backend:
    if name not in REGISTRY:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module, cls, kwargs = REGISTRY[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise RuntimeUnavailable(f"runtime {name!r} needs a package that is not installed: {e}") from e
    return getattr(mod, cls)(weights, device, **kwargs)
