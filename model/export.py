"""``python -m model.export``: the shipped weights -> an ONNX graph for ONNX Runtime / OpenVINO.

The graph takes uint8 [N, 3V, S, S] (dynamic N; V views, ``model.views``) and normalises inside, so callers hand
it decoded pixels as they are; it returns the raw heads [N, len(heads)] like
``QualityNet.forward``. Exports are derived artefacts, never committed: they are built on
first use (or by ``make setup``) into ``~/.cache/imagegate/models`` (``IMAGEGATE_CACHE_DIR``
overrides the root), keyed by the weights file's sha256, and written atomically so
workers starting together never read half a file.

The experimental int8 graph is only *read* here: its calibration needs BIQ2021 training
photos, so ``python -m training.quantize`` builds it into the same place (``artefact(w, "int8")``
and its .json sidecar) with this module's ``write_atomic`` and ``public_meta``.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

from . import checkpoint
from .runtimes import RuntimeUnavailable

INPUT, OUTPUT = "image", "heads"
EXPORT_FORMAT = 1  # bump when the graph's interface or the export recipe changes
OPSET = 17


def cache_dir() -> Path:
    """``IMAGEGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/imagegate``, else ``~/.cache/imagegate`` (+ ``/models``).

    XDG matters in production: the image runs with a read-only root filesystem and a writable
    /tmp only, and points XDG_CACHE_HOME there (deploy/docker/Dockerfile), so the first model
    load must write its graph under /tmp, not under an unwritable home. As the XDG spec says,
    an empty or relative XDG_CACHE_HOME is ignored.
    """
    root = os.environ.get("IMAGEGATE_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg) / "imagegate" if xdg and os.path.isabs(xdg) else Path.home() / ".cache" / "imagegate"
    return Path(root) / "models"


def artefact(weights: Path, precision: str = "fp32") -> Path:
    """Where the graph for this weights file and precision lives (its metadata beside it, .json)."""
    return cache_dir() / f"{weights.stem}-{checkpoint.file_digest(weights)[:16]}-e{EXPORT_FORMAT}-{precision}.onnx"


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename onto ``path``: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(weights: Path, out: Path) -> dict[str, Any]:
    """Trace the uint8-input graph to ``out``; returns the model's metadata."""
    import torch

    from .preprocess import normalise

    net, meta = checkpoint.read(weights)

    class UInt8Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(normalise(x, meta["mean"], meta["std"]))

    s = int(meta["input_size"])
    dummy = torch.zeros(2, 3 * len(net.views), s, s, dtype=torch.uint8)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter notes on constant folding: not actionable
        write_atomic(out, lambda tmp: torch.onnx.export(
            UInt8Graph().eval(), (dummy,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=OPSET, dynamo=False))
    return meta


def public_meta(meta: dict[str, Any], weights: Path, precision: str) -> dict[str, Any]:
    """The sidecar (.json) beside a graph: what runtimes need without reading the weights file."""
    keep = ("name", "version", "input_size", "heads", "mean", "std")
    # "views": the input is [N, 3 * len(views), S, S]; files from before views were single-view.
    return {**{k: meta[k] for k in keep}, "views": list(meta.get("views", ["global"])), "precision": precision,
            "weights_sha256": checkpoint.file_digest(weights), "export_format": EXPORT_FORMAT}


def ensure(weights: str | os.PathLike | None = None, precision: str = "fp32") -> tuple[Path, dict[str, Any]]:
    """The cached graph for ``weights`` and the model's metadata; fp32 is built now if missing.

    int8 is never built here: calibration needs the training datasets, which a worker has not
    (``python -m training.quantize`` builds it); a missing int8 graph is RuntimeUnavailable.
    """
    w = checkpoint.resolve(weights)
    path = artefact(w, precision)
    side = path.with_suffix(".json")
    if path.is_file() and side.is_file():
        return path, json.loads(side.read_text())
    if precision == "int8":
        raise RuntimeUnavailable(
            f"no int8 graph for {w.name} in {path.parent} (it is not built on demand: calibration needs the "
            f"BIQ2021 training photos); build it with `python -m training.quantize --weights {w}`")
    if precision != "fp32":
        raise ValueError(f"unknown precision {precision!r} (fp32, int8)")
    meta = export_onnx(w, path)
    write_atomic(side, lambda tmp: tmp.write_text(json.dumps(public_meta(meta, w, precision), indent=1)))
    return path, json.loads(side.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export an imagegate weights file to ONNX (cached).")
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                    help="int8: only checks for the experimental graph built by `python -m training.quantize`")
    args = ap.parse_args(argv)
    try:
        path, meta = ensure(args.weights, args.precision)
    except RuntimeUnavailable as e:
        ap.exit(1, f"{e}\n")
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB) {meta['name']} {meta['version']} {meta['precision']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
