"""Inference wrapper: load a weights file, preprocess PIL images, predict a batch.

This is the contract the worker (consumer/) and the CLI are written against.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .architecture import IMAGENET_WHEEL, QualityNet, load_imagenet_lite0, trunk_digest
from .data import preprocess_image

FORMAT = "imagegate-model/1"
DEFAULT_WEIGHTS: Path = Path(__file__).resolve().parent / "weights" / "imagegate-quality-v1.pt"


class ModelLoadError(RuntimeError):
    """The weights file is missing, unreadable or not an imagegate model."""


class Predictor:
    """A loaded model: ``preprocess`` (thread-safe) + ``predict`` (one forward for N images)."""

    def __init__(self, net: QualityNet, metadata: dict[str, Any], device: torch.device) -> None:
        self.metadata = metadata
        self.name: str = str(metadata["name"])
        self.version: str = str(metadata["version"])
        self.input_size: int = int(metadata["input_size"])
        self.heads: tuple[str, ...] = tuple(metadata["heads"])
        self.mean: tuple[float, ...] = tuple(float(v) for v in metadata["mean"])
        self.std: tuple[float, ...] = tuple(float(v) for v in metadata["std"])
        self.device: torch.device = device
        self._net = net.eval().to(device, memory_format=torch.channels_last)

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """RGB PIL image of any size -> float32 [3, S, S] (whole image resized, see ``data.preprocess_image``)."""
        return preprocess_image(img, self.input_size, self.mean, self.std)

    def predict(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """[N, 3, S, S] -> {"quality": 0..100, <distortion>: probability 0..1}, CPU float32 [N] each."""
        if batch.dim() != 4 or batch.shape[1:] != (3, self.input_size, self.input_size):
            raise ValueError(f"expected [N, 3, {self.input_size}, {self.input_size}], got {tuple(batch.shape)}")
        cuda = self.device.type == "cuda"
        with torch.inference_mode():
            x = batch.to(self.device, dtype=torch.float32, non_blocking=cuda)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                f = self._net.features(x)
            out = self._net.heads_from_features(f.float()).float().cpu()
        res: dict[str, torch.Tensor] = {}
        for i, head in enumerate(self.heads):
            col = out[:, i].contiguous()
            res[head] = (col * 100.0).clamp(0.0, 100.0) if head == "quality" else torch.sigmoid(col)
        return res


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _load_referenced_trunk(net: QualityNet, trunk: dict) -> None:
    """Fill the frozen trunk from the pinned ImageNet wheel and check it is the one trained on."""
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


def load(path: str | os.PathLike | None = None, device: str = "auto") -> Predictor:
    """Load a weights file written by ``model.train`` (or ``model.testing``); None -> DEFAULT_WEIGHTS.

    The architecture is rebuilt from the metadata and the file is read with
    ``weights_only=True``, so no code is unpickled.
    """
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise ModelLoadError(f"model weights not found: {p}")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt / truncated / not a torch file
        raise ModelLoadError(f"cannot read model weights {p}: {type(e).__name__}: {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelLoadError(f"{p} is not an {FORMAT} file")
    meta = blob.get("metadata") or {}
    try:
        net = QualityNet(str(meta["arch"]), int(meta["input_size"]), tuple(meta["heads"]),
                         int(meta.get("quality_hidden", 0)))
        state = {k: v.float() for k, v in blob["state_dict"].items()}
        trunk = meta.get("trunk")
        if trunk is not None and not any(k.startswith("trunk.") for k in state):
            _load_referenced_trunk(net, trunk)
            state.update({f"trunk.{k}": v for k, v in net.trunk.state_dict().items()})
        net.load_state_dict(state, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise ModelLoadError(f"{p}: weights do not match their metadata: {e}") from e
    return Predictor(net, meta, _resolve_device(device))
