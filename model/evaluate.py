"""Evaluate a weights file: ``python -m model.evaluate [--weights PATH]``.

Reports, as markdown tables (the ones copied into MODEL_CARD.md):

* SROCC / PLCC against MOS on the fixed BIQ2021 validation split (never used in training);
* SROCC against the synthetic severity grade on the synthetic TEST set (sources never used
  in training), over all images and averaged per source image;
* per distortion head: AUC and accuracy at p = 0.5 on the synthetic test set
  (positives: images carrying that distortion; negatives: all other images);
* the same figures for two classical baselines computed here: BRISQUE
  (OpenCV contrib, LIVE model from Debian ``opencv-data``) and variance of the Laplacian;
* CPU throughput of ``predict`` at batch 32 and the weights file size.

Backbone features are reused from ``model/.cache/`` when they were computed by a trunk with
byte-identical weights (keyed by a hash of the trunk state); ``--check N`` additionally
re-runs N images end-to-end through ``Predictor.preprocess`` + ``predict`` and asserts that
they match the cached path.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import data, synthetic
from .distortions import DISTORTION_HEADS
from .predictor import DEFAULT_WEIGHTS, load
from .runtimes import cpu_threads
from .train_v1 import biq_features, synthetic_features, trunk_tag

BRISQUE_MODEL = "/usr/share/opencv4/quality/brisque_model_live.yml"
BRISQUE_RANGE = "/usr/share/opencv4/quality/brisque_range_live.yml"


def _srocc(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation; nan for a constant input (e.g. a source whose scores all clamp to 0)."""
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).correlation)


def _plcc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _per_source_srocc(score: np.ndarray, level: np.ndarray, source: np.ndarray) -> float:
    vals = [_srocc(score[source == s], -level[source == s]) for s in np.unique(source)]
    return float(np.nanmean(vals))


def _per_series_srocc(score: np.ndarray, level: np.ndarray, source: np.ndarray, kinds: np.ndarray) -> float:
    """Mean SROCC over graded series: one source photo, clean + one distortion type at levels 1-4.

    Why a separate figure: within a series the order is a fact (more of the same damage to the
    same photo is worse); across photos and distortion types the 1-4 grades are our own
    convention, not human judgements, so the pooled figure mixes model error with grade error.
    """
    vals = []
    for s in np.unique(source):
        for k in np.unique(kinds):
            if k == "clean":
                continue
            sel = (source == s) & ((kinds == k) | (kinds == "clean"))
            vals.append(_srocc(score[sel], -level[sel]))
    return float(np.nanmean(vals))


def classical_scores(name: str, keys: list[str], loaders) -> dict[str, np.ndarray]:
    """BRISQUE (lower = better) and Laplacian variance (higher = sharper), cached."""
    import cv2

    path = data.CACHE_DIR / f"baselines-{name}-{data._key(keys)}.npz"
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    have_brisque = os.path.exists(BRISQUE_MODEL) and os.path.exists(BRISQUE_RANGE)
    br, lap = [], []
    for f in loaders:
        img = np.asarray(f().convert("RGB"))[:, :, ::-1].copy()
        br.append(cv2.quality.QualityBRISQUE_compute(img, BRISQUE_MODEL, BRISQUE_RANGE)[0] if have_brisque else np.nan)
        lap.append(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())
    out = {"brisque": np.array(br, np.float64), "laplacian_var": np.array(lap, np.float64)}
    data.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def bench(pred, batch: int = 32, repeats: int = 3) -> float:
    """Images/s of ``predict`` on one uint8 [batch, 3V, S, S] array (after one warm-up).

    Random pixels: the arithmetic of this CNN does not depend on the content."""
    s = pred.input_size
    x = np.random.default_rng(0).integers(0, 256, (batch, 3 * len(pred.views), s, s), dtype=np.uint8)
    pred.predict(x)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        pred.predict(x)
        best = min(best, time.perf_counter() - t)
    return batch / best


def biq_val_by_runtime(runtimes: list[str], weights: Path, datasets_dir: str | None = None,
                       limit: int | None = None, batch: int = 8) -> dict[str, tuple[float, float, int]]:
    """BIQ2021 validation SROCC / PLCC per runtime, end to end (file -> preprocess -> predict).

    Why end to end and not the feature cache: the cache holds torch fp32 features, so a
    runtime's own numerics (ONNX Runtime, OpenVINO, INT8) only show when it runs the whole
    graph. Every runtime scores the very same uint8 inputs, decoded once.
    """
    from PIL import Image

    paths, mos = data.load_biq(datasets_dir)
    _, va = data.biq_split(len(mos))
    va = va[:limit] if limit else va
    preds = {rt: load(weights, "cpu", runtime=rt) for rt in runtimes}
    size = next(iter(preds.values())).input_size
    scores: dict[str, list[np.ndarray]] = {rt: [] for rt in runtimes}
    for i in range(0, len(va), batch):
        x = np.stack([data.preprocess_uint8(Image.open(paths[j]), size) for j in va[i:i + batch]])
        for rt, p in preds.items():
            scores[rt].append(p.predict(x)["quality"])
    out = {}
    for rt in runtimes:
        q = np.concatenate(scores[rt])
        out[rt] = (_srocc(q, mos[va]), _plcc(q, mos[va]), len(q))
    return out


def main(argv: list[str] | None = None) -> dict:
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description="Evaluate an imagegate weights file.")
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--datasets-dir", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--check", type=int, default=8, help="images re-run end-to-end to verify the cache path")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--runtime", default=None, help="runtime for the speed figure (default: IMAGEGATE_RUNTIME / CPU default)")
    ap.add_argument("--biq-only", metavar="RUNTIMES",
                    help="only BIQ val SROCC/PLCC end to end for these runtimes (comma-separated, e.g. "
                         "torch,onnxruntime,onnxruntime-int8), then exit")
    ap.add_argument("--limit", type=int, default=None, help="with --biq-only: first N validation images")
    args = ap.parse_args(argv)
    if args.biq_only:
        res = biq_val_by_runtime(args.biq_only.split(","), args.weights, args.datasets_dir, args.limit)
        print("| Runtime | BIQ val SROCC | BIQ val PLCC | images |\n|---|---|---|---|")
        for rt, (a, b, n) in res.items():
            print(f"| {rt} | {a:.4f} | {b:.4f} | {n} |")
        return {"biq_by_runtime": res}

    pred = load(args.weights, args.device, runtime="torch")
    net = pred.backend.net
    device = torch.device(pred.device)
    print(f"weights: {args.weights} ({args.weights.stat().st_size / 1e6:.2f} MB), name={pred.name} "
          f"version={pred.version} input={pred.input_size} trunk={trunk_tag(net)}", flush=True)

    def heads_of(f: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            o = net.heads_from_features(torch.from_numpy(f).to(device)).float().cpu()
        res = {}
        for i, h in enumerate(pred.heads):
            res[h] = ((o[:, i] * 100).clamp(0, 100) if h == "quality" else torch.sigmoid(o[:, i])).numpy()
        return res

    # --- BIQ2021 validation split -----------------------------------------------------------
    paths, mos = data.load_biq(args.datasets_dir)
    _, va = data.biq_split(len(mos))
    vpaths = [paths[i] for i in va]
    tag = trunk_tag(net)
    if data.cache_path("biq", [p.name for p in paths], pred.input_size, tag).exists():
        fb, _, _ = biq_features(net, args.datasets_dir, device)  # training run's cache
        fv = fb[va]
    else:  # no training cache here: compute the validation images only
        fv = data.cached_features("biq-val", [p.name for p in vpaths], net,
                                  [lambda p=p: Image.open(p) for p in vpaths], pred.input_size, tag, device)
    qb = heads_of(fv)["quality"]
    cb = classical_scores("biq-val", [p.name for p in vpaths], [lambda p=p: Image.open(p) for p in vpaths])

    # --- synthetic test set -------------------------------------------------------------------
    fs, items = synthetic_features(net, "test", device)
    hs = heads_of(fs)
    lab = synthetic.labels(items)
    bank = synthetic.CropBank()
    cs = classical_scores("synthetic-test", [it.key for it in items], [lambda it=it: bank.render(it) for it in items])

    # --- end-to-end check of the cache path -----------------------------------------------------
    if args.check:
        idx = np.linspace(0, len(items) - 1, args.check).astype(int)
        x = np.stack([pred.preprocess(bank.render(items[i])) for i in idx])
        e2e = pred.predict(x)
        for h in pred.heads:
            d = float(np.abs(e2e[h] - hs[h][idx]).max())
            tol = 0.5 if h == "quality" else 0.01
            assert d <= tol or device.type == "cuda", f"cache/end-to-end mismatch on {h}: {d}"
        print(f"end-to-end check on {len(idx)} synthetic images: OK", flush=True)

    rows = []
    kinds = np.array([it.steps[0][0] if it.steps else "clean" for it in items])
    methods = {
        "imagegate-quality (this model)": (qb, hs["quality"]),
        "BRISQUE (OpenCV, LIVE model)": (-cb["brisque"], -cs["brisque"]),
        "Variance of Laplacian": (cb["laplacian_var"], cs["laplacian_var"]),
    }
    for m, (sb, ss) in methods.items():
        rows.append((m, _srocc(sb, mos[va]), _plcc(sb, mos[va]), _srocc(ss, -lab["level"]),
                     _per_source_srocc(ss, lab["level"], lab["source"]),
                     _per_series_srocc(ss, lab["level"], lab["source"], kinds)))
    result = {"quality": rows}

    print("\n### Quality: BIQ2021 validation split (n=%d) and synthetic test set (n=%d, %d source images)\n"
          % (len(va), len(items), len(np.unique(lab["source"]))))
    print("| Method | BIQ val SROCC | BIQ val PLCC | Synthetic SROCC (all) | Synthetic SROCC (per source, mean) "
          "| Synthetic SROCC (per series, mean) |")
    print("|---|---|---|---|---|---|")
    for m, a, b, c, d, e in rows:
        print(f"| {m} | {a:.3f} | {b:.3f} | {c:.3f} | {d:.3f} | {e:.3f} |")

    print("\n### Quality vs synthetic level within one distortion type (test set, clean + levels 1-4)\n")
    print("| Distortion | SROCC per source (mean) | SROCC all sources | mean quality at level 0 / 1 / 2 / 3 / 4 |")
    print("|---|---|---|---|")
    q = hs["quality"]
    per_type = {}
    for k in synthetic.DISTORTIONS:
        sel = (kinds == k) | (kinds == "clean")
        a = _per_source_srocc(q[sel], lab["level"][sel], lab["source"][sel])
        b = _srocc(q[sel], -lab["level"][sel])
        means = " / ".join(f"{q[sel & (lab['level'] == lv)].mean():.1f}" for lv in range(5))
        per_type[k] = (a, b)
        print(f"| {k} | {a:.3f} | {b:.3f} | {means} |")
    result["per_type"] = per_type

    print("\n### Distortion heads on the synthetic test set (AUC; accuracy at p=0.5 for the model)\n")
    print("| Head | positives / n | Model AUC | Model accuracy | BRISQUE AUC | Laplacian-var AUC |")
    print("|---|---|---|---|---|---|")
    heads = {}
    for h in DISTORTION_HEADS:
        y = lab[h]
        auc = roc_auc_score(y, hs[h])
        acc = float(((hs[h] >= 0.5) == (y == 1)).mean())
        ab = roc_auc_score(y, cs["brisque"])
        al = roc_auc_score(y, -cs["laplacian_var"])
        heads[h] = (auc, acc, ab, al)
        print(f"| {h} | {int(y.sum())} / {len(y)} | {auc:.3f} | {acc:.3f} | {ab:.3f} | {al:.3f} |")
    result["heads"] = heads
    print("\nBaseline AUCs use the baseline's badness score (BRISQUE value, minus Laplacian variance) as a "
          "detector for each distortion.")

    if not args.no_bench:
        cpu = load(args.weights, "cpu", runtime=args.runtime)
        ips = bench(cpu, 32)
        result["images_per_s"] = ips
        print(f"\n### Speed and size\n\n| Metric | Value |\n|---|---|\n"
              f"| CPU throughput ({cpu.runtime}), batch 32, {cpu_threads()} threads ({os.cpu_count()}-core machine) "
              f"| {ips:.1f} images/s |\n| Weights file | {args.weights.stat().st_size / 1e6:.1f} MB |")
    return result


if __name__ == "__main__":
    main()
