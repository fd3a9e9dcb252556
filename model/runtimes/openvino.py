"""OpenVINO on CPU over the exported ONNX graph (read directly, no conversion step).

One stream with a thread pool sized to the cores (LATENCY hint): the worker already
batches, so extra streams would only split the same cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from .. import export
from . import ModelMeta, RuntimeUnavailable, cpu_threads


class OpenVinoBackend:
    def __init__(self, weights: Path, device: str, precision: str = "fp32") -> None:
        if device != "cpu":
            raise RuntimeUnavailable(f"runtime 'openvino' runs on cpu here, not {device!r}")
        path, meta = export.ensure(weights, precision)
        self.meta = ModelMeta.from_dict(meta)
        self.device = "cpu"
        core = ov.Core()
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": cpu_threads(),
            "INFERENCE_PRECISION_HINT": "f32"})
        self._req = self._compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self._req.infer({0: batch})
        return np.array(self._req.get_output_tensor(0).data, dtype=np.float32, copy=True)
