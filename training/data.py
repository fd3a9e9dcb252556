"""Datasets, the fixed validation split, training-side preprocessing and the feature cache.

The pixels and the normalisation come from ``model.preprocess`` (``preprocess_uint8``,
``normalise``, ``MEAN``/``STD``, re-exported here), so training, evaluation and inference all
go through the very same functions.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.preprocess import MEAN, STD, normalise, preprocess_uint8

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(__file__).resolve().parent / ".cache"  # training/.cache/ (gitignored)
BIQ_SUBDIR = "biq2021-ss03-train"
VAL_FRACTION = 0.15
SPLIT_SEED = 20211  # fixed: the validation split must never move between runs

def datasets_dir(override: str | os.PathLike | None = None) -> Path:
    """CLI flag > env ``IMAGEGATE_DATASETS_DIR`` > ``../shared/datasets`` next to the repo."""
    if override:
        return Path(override)
    env = os.environ.get("IMAGEGATE_DATASETS_DIR")
    if env:
        return Path(env)
    return (REPO_ROOT / ".." / "shared" / "datasets").resolve()


def preprocess_image(img: Image.Image, size: int, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """RGB PIL image -> float32 [3, size, size], normalised (training and the feature cache).

    Same pixels as inference (``preprocess_uint8``), normalised as the model graph does it,
    so cached training features and served scores agree.
    """
    return normalise(torch.from_numpy(preprocess_uint8(img, size)), mean, std).contiguous()


def load_biq(root: str | os.PathLike | None = None) -> tuple[list[Path], np.ndarray]:
    """BIQ2021 subset-03 images (sorted by name) and MOS in 0..1."""
    base = datasets_dir(root) / BIQ_SUBDIR
    csv_path = base / "mos.csv"
    if not csv_path.exists():
        raise FileNotFoundError(
            f"BIQ2021 not found at {base} (set --datasets-dir or IMAGEGATE_DATASETS_DIR; see model/MODEL_CARD.md)"
        )
    with open(csv_path, newline="") as fh:
        rows = sorted((r["image"], float(r["mos"])) for r in csv.DictReader(fh))
    paths = [base / "images" / name for name, _ in rows]
    return paths, np.array([m for _, m in rows], dtype=np.float32)


def biq_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/val indices (15 % validation, seed SPLIT_SEED) over sorted names."""
    rng = np.random.default_rng(SPLIT_SEED)
    perm = rng.permutation(n)
    n_val = int(round(VAL_FRACTION * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _key(parts: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


@torch.inference_mode()
def extract_features(
    net: torch.nn.Module,
    loaders: Sequence[Callable[[], Image.Image]],
    size: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    progress: str | None = None,
) -> np.ndarray:
    """Run ``net.features`` over images given as zero-arg loaders -> float32 [N, D]."""
    from tqdm import tqdm

    device = torch.device(device)
    out = []
    it = range(0, len(loaders), batch_size)
    for i in tqdm(it, desc=progress, disable=progress is None, mininterval=30):
        x = torch.stack([preprocess_image(f(), size) for f in loaders[i : i + batch_size]])
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            f = net.features(x)
        out.append(f.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def cache_path(name: str, ids: Sequence[str], size: int, tag: str) -> Path:
    """Where ``cached_features`` keeps the features of exactly these ids / trunk / size."""
    return CACHE_DIR / f"{name}-{tag}-{size}-{_key(list(ids))}.npy"


def cached_features(
    name: str,
    ids: Sequence[str],
    net: torch.nn.Module,
    loaders: Sequence[Callable[[], Image.Image]],
    size: int,
    tag: str,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Features for ``ids``, computed once and kept under ``training/.cache/`` (gitignored)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = cache_path(name, ids, size, tag)
    if path.exists():
        return np.load(path)
    feats = extract_features(net, loaders, size, device=device, progress=name)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    os.replace(tmp, path)
    return feats
