"""INT8 post-training static quantisation (ONNX Runtime, QDQ) of the exported graph: ``python -m training.quantize``.

Calibrated on BIQ2021 *training-split* photos (never the validation split the drop is
measured on). Only the convolutions are quantised (per-channel int8 weights, uint8
activations): they hold nearly all the arithmetic, while the spatial mean/std pooling and
the heads stay fp32, because quality lives in small differences of those statistics.
Whether int8 is good enough is measured, not assumed: ``python -m training.evaluate --biq-only``.

Why here and not in ``model``: calibration reads the training datasets, which a worker never
has. The graph goes where ``model.export.ensure(w, "int8")`` (the ``*-int8`` runtimes) reads
it, ``model.export.artefact(w, "int8")`` with its .json sidecar, written atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from model import checkpoint, export

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

    from model.views import check_views, stack_views

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
            return {export.INPUT: np.stack([stack_views(Image.open(p).convert("RGB"), input_size, views)
                                            for p in chunk])}

    export.write_atomic(out, lambda tmp: quantize_static(
        str(fp32), str(tmp), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax))


def build(weights: str | Path | None = None, root: str | None = None,
          force: bool = False) -> tuple[Path, dict[str, Any]]:
    """The int8 graph of ``weights`` in the export cache (built now if missing or ``force``) and its metadata."""
    w = checkpoint.resolve(weights)
    path = export.artefact(w, "int8")
    side = path.with_suffix(".json")
    if not force and path.is_file() and side.is_file():
        return path, json.loads(side.read_text())
    fp32, meta = export.ensure(w, "fp32")
    quantize_int8(fp32, path, int(meta["input_size"]), tuple(meta.get("views", ("global",))), root)
    export.write_atomic(side, lambda tmp: tmp.write_text(json.dumps(export.public_meta(meta, w, "int8"), indent=1)))
    return path, json.loads(side.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Build the experimental int8 ONNX graph of an imagegate weights file (calibrated on BIQ2021 "
                    "training photos) into the export cache, where the onnxruntime-int8 / openvino-int8 runtimes "
                    "read it.")
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--datasets-dir", default=None, help="default: IMAGEGATE_DATASETS_DIR or ../shared/datasets")
    ap.add_argument("--force", action="store_true", help="rebuild even if the cache has it")
    args = ap.parse_args(argv)
    path, meta = build(args.weights, args.datasets_dir, args.force)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB) {meta['name']} {meta['version']} {meta['precision']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
