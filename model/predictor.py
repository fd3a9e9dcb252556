"""The inference contract the worker, ``imagegate score`` and the benchmarks are written against.

``load(path, device, runtime)`` -> ``Predictor``; ``preprocess`` turns a PIL image into a
uint8 [3V, S, S] array (V views, ``model.views``; V = 1 for single-view models), ``predict``
scores a uint8 [N, 3V, S, S] batch. A model with a detail view needs the image decoded at full
resolution (``needs_full_resolution``): the decoder must not DCT-downscale it first. Which runtime does the
arithmetic (torch, ONNX Runtime, OpenVINO, TensorRT) is a load-time choice from
``model.runtimes``; scores mean the same whichever runs them.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from . import runtimes, views
from .checkpoint import DEFAULT_WEIGHTS, ModelLoadError, resolve

CPU_CHUNK = 4


class Predictor:
    """A loaded model: ``preprocess`` (thread-safe) + ``predict`` (one forward for N images; one thread)."""

    def __init__(self, backend: runtimes.Backend, runtime: str) -> None:
        m = backend.meta
        self.name, self.version, self.input_size, self.heads = m.name, m.version, m.input_size, m.heads
        self.views: tuple[str, ...] = m.views
        # The decoder must hand ``preprocess`` the image at full resolution (no DCT downscale, no
        # reduction before compositing): the detail view reads native pixels.
        self.needs_full_resolution: bool = views.needs_full_resolution(m.views)
        self.device: str = backend.device
        self.runtime = runtime
        self.backend = backend
        # On CPU a forward runs at most CPU_CHUNK images: throughput is flat beyond a few images,
        # while activation memory grows with the batch (512 px: ~100 MB per image in flight; OpenVINO
        # at 4 runs as fast as at 8 and peaks 400 MB lower).
        self.chunk: int | None = None if self.device.startswith("cuda") else CPU_CHUNK

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """RGB PIL image of any size -> uint8 [3V, S, S], C-contiguous (``model.views.stack_views``).

        For a single-view model this is ``model.preprocess.preprocess_uint8``. With a detail view,
        ``img`` must be the full-resolution decode (see ``needs_full_resolution``).
        """
        return views.stack_views(img, self.input_size, self.views)

    def predict(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [N, 3V, S, S] -> {"quality": 0..100, <distortion>: probability 0..1}, float32 [N] each."""
        s, c = self.input_size, 3 * len(self.views)
        if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8:
            raise TypeError(f"expected a uint8 numpy array [N, {c}, {s}, {s}], got "
                            f"{type(batch).__name__} {getattr(batch, 'dtype', '')}")
        if batch.ndim != 4 or batch.shape[1:] != (c, s, s) or batch.shape[0] == 0:
            hint = f" ({len(self.views)} views {'+'.join(self.views)}, 3 channels each: use Predictor.preprocess)" \
                if c != 3 else ""
            raise ValueError(f"expected [N>0, {c}, {s}, {s}]{hint}, got {tuple(batch.shape)}")
        batch = np.ascontiguousarray(batch)
        step = self.chunk or len(batch)
        raw = np.concatenate([self.backend.run(batch[i:i + step]) for i in range(0, len(batch), step)])
        res: dict[str, np.ndarray] = {}
        for i, head in enumerate(self.heads):
            col = np.ascontiguousarray(raw[:, i], dtype=np.float32)
            if head == "quality":
                res[head] = np.clip(col * np.float32(100.0), 0.0, 100.0).astype(np.float32)
            else:
                res[head] = (1.0 / (1.0 + np.exp(-col))).astype(np.float32)
        return res


def load(path: str | os.PathLike | None = None, device: str = "auto", runtime: str | None = None) -> Predictor:
    """Load a weights file written by ``training.train`` (or ``model.testing``); None -> DEFAULT_WEIGHTS.

    ``runtime`` None -> ``IMAGEGATE_RUNTIME``, else the fastest measured runtime for the device.
    Raises ``ModelLoadError`` for a bad file, an unknown runtime or one that cannot run here.
    """
    weights = resolve(path)
    dev = runtimes.resolve_device(str(device))
    name = runtime or runtimes.default_runtime(dev)
    try:
        backend = runtimes.create(name, weights, dev)
    except ModelLoadError:
        raise
    except (ValueError, runtimes.RuntimeUnavailable) as e:
        raise ModelLoadError(f"{weights}: cannot load with runtime {name!r}: {e}") from e
    return Predictor(backend, name)


__all__ = ["DEFAULT_WEIGHTS", "ModelLoadError", "Predictor", "load"]
