"""Evaluate weights files side by side: ``python -m training.evaluate [--weights PATH ...]``.

Reports, as markdown tables (the ones copied into MODEL_CARD.md):

* SROCC / PLCC against MOS on the fixed BIQ2021 validation split (never used in training);
* SROCC against the synthetic severity grade on the synthetic TEST set (sources never used
  in training), over all images and averaged per source image;
* per distortion head: AUC and accuracy at p = 0.5 on the synthetic test set
  (positives: images carrying that distortion; negatives: all other images);
* the same figures for two classical baselines computed here: BRISQUE
  (OpenCV contrib, LIVE model from Debian ``opencv-data``) and variance of the Laplacian;
* CPU throughput of ``predict`` at batch 32 and the weights file size.

Since v2 every figure is end to end: each image is rendered once, turned into the model inputs
of both views (``model.views``; cached under ``training/.cache/``), and scored by each model's
``predict`` with the chosen runtime (default: the worker's CPU default). A one-view model reads
the first three channels, which are exactly its own ``preprocess`` of the same image.

Sets (none is ever used in training):

* BIQ2021 validation split (900 real photos with MOS);
* synthetic test: classic distortions of the 13 test photos' 512 px crops (v1's table);
* camera test: camera-made damage (``training.acquisition``) at every level on the whole test
  photos at their native resolution (0.3-6 MP);
* high-resolution test: the same on every held-out photo of at least 2 MP (test and "hires"
  splits; 2-20 MP), where damage at 100 % zoom may be invisible at 512 px.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from model.predictor import load
from model.runtimes import REGISTRY, cpu_threads
from model.views import DETAIL, GLOBAL

from . import data, synthetic
from .distortions import DISTORTION_HEADS

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

    from . import quantize

    paths, mos = data.load_biq(datasets_dir)
    _, va = data.biq_split(len(mos))
    va = va[:limit] if limit else va
    if any(REGISTRY.get(rt, ("", "", {}))[2].get("precision") == "int8" for rt in runtimes):
        quantize.build(weights, datasets_dir)  # the *-int8 runtimes only read it (model.export.ensure)
    preds = {rt: load(weights, "cpu", runtime=rt) for rt in runtimes}
    first = next(iter(preds.values()))
    scores: dict[str, list[np.ndarray]] = {rt: [] for rt in runtimes}
    for i in range(0, len(va), batch):
        x = np.stack([first.preprocess(Image.open(paths[j]).convert("RGB")) for j in va[i:i + batch]])
        for rt, p in preds.items():
            scores[rt].append(p.predict(x)["quality"])
    out = {}
    for rt in runtimes:
        q = np.concatenate(scores[rt])
        out[rt] = (_srocc(q, mos[va]), _plcc(q, mos[va]), len(q))
    return out


def _inputs(name: str, keys: list[str], loaders, size: int, workers: int = 2) -> np.ndarray:
    """uint8 [N, 6, S, S]: global + detail view of every image, rendered once and cached."""
    path = data.CACHE_DIR / f"inputs-{name}-{size}-{data._key(keys)}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    from .finetune import Rendered, _loader

    ds = Rendered(loaders, size, (GLOBAL, DETAIL))
    out = np.concatenate([x.numpy() for x in _loader(ds, workers, 8)])
    data.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def _score(pred, x: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    ch = 3 * len(pred.views)
    parts = [pred.predict(np.ascontiguousarray(x[i:i + batch, :ch])) for i in range(0, len(x), batch)]
    return {h: np.concatenate([p[h] for p in parts]) for h in pred.heads}


def _graded(q: np.ndarray, items: list) -> tuple[float, float, float]:
    """(pooled, per source, per series) SROCC of a quality score against the grade."""
    lab = synthetic.labels(items)
    kinds = np.array([it.steps[0][0] if it.steps else "clean" for it in items])
    return (_srocc(q, -lab["level"]), _per_source_srocc(q, lab["level"], lab["source"]),
            _per_series_srocc(q, lab["level"], lab["source"], kinds))


def main(argv: list[str] | None = None) -> dict:
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    from . import train, train_v1

    ap = argparse.ArgumentParser(description="Evaluate imagegate weights files side by side.")
    ap.add_argument("--weights", type=Path, action="append", default=None,
                    help="repeatable (default: the v2 two-view file, the v2 global-only file and v1.2.0)")
    ap.add_argument("--datasets-dir", default=None)
    ap.add_argument("--runtime", default=None, help="default: IMAGEGATE_RUNTIME / the CPU default (openvino)")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--no-baselines", action="store_true", help="skip BRISQUE / Laplacian variance")
    ap.add_argument("--workers", type=int, default=2, help="image-rendering processes")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    ap.add_argument("--biq-only", metavar="RUNTIMES",
                    help="only BIQ val SROCC/PLCC end to end for these runtimes (comma-separated, e.g. "
                         "torch,onnxruntime,onnxruntime-int8), then exit")
    ap.add_argument("--limit", type=int, default=None, help="with --biq-only: first N validation images")
    args = ap.parse_args(argv)
    weights = args.weights or [train.DEFAULT_OUT, train.GLOBAL_OUT, train_v1.DEFAULT_OUT]
    if args.biq_only:
        res = {str(w): biq_val_by_runtime(args.biq_only.split(","), w, args.datasets_dir, args.limit) for w in weights}
        print("| Weights | Runtime | BIQ val SROCC | BIQ val PLCC | images |\n|---|---|---|---|---|")
        for w, r in res.items():
            for rt, (a, b, n) in r.items():
                print(f"| {Path(w).name} | {rt} | {a:.4f} | {b:.4f} | {n} |")
        return {"biq_by_runtime": res}

    preds = [load(w, "cpu", runtime=args.runtime) for w in weights]
    sizes = {p.input_size for p in preds}
    if len(sizes) != 1:
        ap.error("models of one run must share the input size")
    size = sizes.pop()
    names = [f"{p.name} {p.version}" for p in preds]
    for w, p in zip(weights, preds):
        print(f"weights: {w} ({w.stat().st_size / 1e6:.2f} MB), {p.name} {p.version}, views {list(p.views)}, "
              f"runtime {p.runtime}", flush=True)

    paths, mos = data.load_biq(args.datasets_dir)
    _, va = data.biq_split(len(mos))
    vpaths = [paths[i] for i in va]
    bank = synthetic.CropBank()
    sets = {
        "synthetic": synthetic.build_items("test"),
        "camera": synthetic.build_acq_items("test"),
        "hires": synthetic.build_acq_items("hires"),
    }
    t = time.time()
    xb = _inputs("biq-val", [p.name for p in vpaths], [lambda p=p: Image.open(p).convert("RGB") for p in vpaths],
                 size, args.workers)
    xs = {k: _inputs(k, [it.key for it in its], [lambda it=it: bank.render(it) for it in its], size, args.workers)
          for k, its in sets.items()}
    print(f"inputs ready ({time.time() - t:.0f}s)", flush=True)
    scores = []
    for p in preds:
        t = time.time()
        scores.append({"biq": _score(p, xb), **{k: _score(p, x) for k, x in xs.items()}})
        print(f"scored with {p.name} {p.version} ({time.time() - t:.0f}s)", flush=True)

    result: dict = {"models": names}
    print("\n### Quality: SROCC / PLCC against MOS and SROCC against the damage grade\n")
    print("| Model | BIQ val SROCC | BIQ val PLCC | Synthetic all / per source / per series "
          "| Camera (native) all / per source / per series | High-res (>= 2 MP) all / per source / per series |")
    print("|---|---|---|---|---|---|")
    rows = []
    for n, sc in zip(names, scores):
        row = {"biq_srocc": _srocc(sc["biq"]["quality"], mos[va]), "biq_plcc": _plcc(sc["biq"]["quality"], mos[va])}
        for k, its in sets.items():
            row[k] = _graded(sc[k]["quality"], its)
        rows.append(row)
        f3 = lambda v: " / ".join(f"{x:.3f}" for x in v)  # noqa: E731
        print(f"| {n} | {row['biq_srocc']:.3f} | {row['biq_plcc']:.3f} | {f3(row['synthetic'])} | {f3(row['camera'])} "
              f"| {f3(row['hires'])} |")
    if not args.no_baselines:
        cb = classical_scores("biq-val", [p.name for p in vpaths], [lambda p=p: Image.open(p) for p in vpaths])
        cs = classical_scores("synthetic-test", [it.key for it in sets["synthetic"]],
                              [lambda it=it: bank.render(it) for it in sets["synthetic"]])
        for m, sb, ss in (("BRISQUE (OpenCV, LIVE model)", -cb["brisque"], -cs["brisque"]),
                          ("Variance of Laplacian", cb["laplacian_var"], cs["laplacian_var"])):
            g = _graded(ss, sets["synthetic"])
            print(f"| {m} | {_srocc(sb, mos[va]):.3f} | {_plcc(sb, mos[va]):.3f} | "
                  + " / ".join(f"{x:.3f}" for x in g) + " | - | - |")
    result["quality"] = rows

    print("\n### Quality vs level within one damage type (per source mean / all sources)\n")
    kinds_all = {k: np.array([it.steps[0][0] if it.steps else "clean" for it in its]) for k, its in sets.items()}
    print("| Set | Damage | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    per_type: dict = {}
    for setname, its in sets.items():
        lab = synthetic.labels(its)
        kinds = kinds_all[setname]
        for d in sorted(set(kinds) - {"clean"}, key=list(synthetic.ALL_DAMAGES).index):
            sel = (kinds == d) | (kinds == "clean")
            cells = []
            for n, sc in zip(names, scores):
                q = sc[setname]["quality"]
                v = (_per_source_srocc(q[sel], lab["level"][sel], lab["source"][sel]), _srocc(q[sel], -lab["level"][sel]))
                per_type.setdefault(setname, {}).setdefault(d, {})[n] = v
                cells.append(f"{v[0]:.3f} / {v[1]:.3f}")
            print(f"| {setname} | {d} | " + " | ".join(cells) + " |")
    result["per_type"] = per_type

    print("\n### Distortion heads (AUC; positives: images carrying a damage of that head)\n")
    print("| Set | Head | positives / n | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    heads: dict = {}
    for setname, its in sets.items():
        lab = synthetic.labels(its)
        for h in DISTORTION_HEADS:
            y = lab[h]
            if not 0 < y.sum() < len(y):
                continue
            aucs = [roc_auc_score(y, sc[setname][h]) for sc in scores]
            heads.setdefault(setname, {})[h] = dict(zip(names, aucs))
            print(f"| {setname} | {h} | {int(y.sum())} / {len(y)} | " + " | ".join(f"{a:.3f}" for a in aucs) + " |")
    result["heads"] = heads

    if not args.no_bench:
        print("\n### Speed and size\n\n| Model | views | runtime | images/s, batch 32 | file |\n|---|---|---|---|---|")
        for w, p, n in zip(weights, preds, names):
            ips = bench(p, 32)
            result.setdefault("images_per_s", {})[n] = ips
            print(f"| {n} | {len(p.views)} | {p.runtime} ({cpu_threads()} threads, {os.cpu_count()} cores) "
                  f"| {ips:.1f} | {w.stat().st_size / 1e6:.1f} MB |")
    if args.json:
        import json

        args.json.write_text(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
