"""INT8 post-training static quantisation (ONNX Runtime, QDQ) of the exported graph.

Calibrated on BIQ2021 *training-split* photos (never the validation split the drop is
measured on). Only the convolutions are quantised (per-channel int8 weights, uint8
activations): they hold nearly all the arithmetic, while the spatial mean/std pooling and
the heads stay fp32, because quality lives in small differences of those statistics.
Whether int8 is good enough is measured, not assumed: ``python -m model.evaluate --biq-only``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_IMAGES = 96
CALIBRATION_BATCH = 8
CALIBRATION_SEED = 12


def calibration_paths(n: int = CALIBRATION_IMAGES, root: str | None = None) -> list[Path]:
    """A fixed, seeded sample of the BIQ2021 training split."""
    from . import data

    paths, mos = data.load_biq(root)
    train, _ = data.biq_split(len(mos))
    pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(train, size=min(n, len(train)), replace=False))
    return [paths[i] for i in pick]


def quantize_int8(fp32: Path, out: Path, input_size: int, views: tuple[str, ...] = ("global",),
                  root: str | None = None) -> None:
    """Calibrate on the model's own input: every view of each photo, as ``Predictor.preprocess`` builds it."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from PIL import Image

    from .export import INPUT, _write_atomic
    from .views import check_views, stack_views

    views = check_views(views)
    paths = calibration_paths(root=root)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(paths):
                return None
            chunk = paths[self.i:self.i + CALIBRATION_BATCH]
            self.i += CALIBRATION_BATCH
            return {INPUT: np.stack([stack_views(Image.open(p).convert("RGB"), input_size, views) for p in chunk])}

    _write_atomic(out, lambda tmp: quantize_static(
        str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax))
