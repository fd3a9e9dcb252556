"""ONNX Runtime over the exported uint8-input graph (``python -m model.export``).

CPU: one intra-op pool sized to the cores, sequential execution, so a worker's decode
threads and the model never fight over more threads than there are cores. CUDA: the CUDA
provider; ``tensorrt=True`` puts the TensorRT provider (fp16, engine cache) in front.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .. import export
from . import ModelMeta, RuntimeUnavailable, cpu_threads


class OrtBackend:
    def __init__(self, weights: Path, device: str, precision: str = "fp32", tensorrt: bool = False) -> None:
        path, meta = export.ensure(weights, precision)
        self.meta = ModelMeta.from_dict(meta)
        self.device = device
        so = ort.SessionOptions()
        so.intra_op_num_threads = cpu_threads()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if device.startswith("cuda"):
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers: list = [("CUDAExecutionProvider", {"device_id": dev_id})]
            if tensorrt:
                cache = export.cache_dir() / "trt"
                cache.mkdir(parents=True, exist_ok=True)
                providers.insert(0, ("TensorrtExecutionProvider", {
                    "device_id": dev_id, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache)}))
        else:
            if tensorrt:
                raise RuntimeUnavailable("runtime 'tensorrt' needs a CUDA device")
            providers = ["CPUExecutionProvider"]
        missing = {p if isinstance(p, str) else p[0] for p in providers} - set(ort.get_available_providers())
        if missing:
            raise RuntimeUnavailable(f"onnxruntime here lacks {sorted(missing)} (install onnxruntime-gpu for CUDA)")
        self._sess = ort.InferenceSession(str(path), so, providers=providers)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {export.INPUT: batch})[0]
