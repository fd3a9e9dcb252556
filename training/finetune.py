"""Partial fine-tuning of the trunk: run the frozen front once, train the last blocks on a cache.

Why: v1 kept the whole ImageNet trunk frozen and learnt only heads on pooled statistics, and
ImageNet features barely separate camera-made noise and blur from content (the v1 card: 0.42
SROCC on camera-damaged photos). Training the whole trunk needs a GPU; training its last blocks
does not, if the blocks before them run only once per image: their pooled statistics (the MLSP
taps, see ``architecture``) and the activation entering block ``k`` are cached, and each training
step runs only blocks ``k..`` and the heads. On CPU the default is the last two blocks and the
head conv; on a GPU the same code starts deeper (``TUNE_FROM``).

Batch norm stays in inference mode (its running statistics are ImageNet's; batches here mix
very different image sets), and its affine parameters train with the convolutions.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model.architecture import QualityNet, mean_std
from model.preprocess import MEAN, STD, normalise
from model.views import stack_views

# First trunk block that trains, by device: the CPU recipe tunes the last block (15) and the head
# conv (1.0 M parameters; bf16 on AMX: ~1.8 s per step of 64 two-view images on 2 cores); on a
# GPU it starts at block 5 (3.3 M), which a CPU cannot afford.
TUNE_FROM = {"cpu": 15, "cuda": 5}
RANK_MARGIN = 0.4  # v1's choice on its training hold-out (MODEL_CARD, "How the heads are fitted")
DETECTOR_WEIGHT = 1.0


class Rendered(torch.utils.data.Dataset):
    """Images given as zero-argument loaders -> uint8 [3 V, S, S] (views stacked), for a DataLoader."""

    def __init__(self, loaders: Sequence[Callable[[], Image.Image]], size: int, views: tuple[str, ...]) -> None:
        self.loaders, self.size, self.views = list(loaders), size, views

    def __len__(self) -> int:
        return len(self.loaders)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(stack_views(self.loaders[i](), self.size, self.views))


@dataclass
class Cache:
    """The frozen front's output for N images: pooled taps [N, V, Df] (fp32) and the activation
    entering block ``k`` [N, V, C, H, W] (fp16), on the training device."""

    taps: torch.Tensor
    acts: torch.Tensor

    def __len__(self) -> int:
        return len(self.taps)

    def take(self, idx: torch.Tensor) -> "Cache":
        return Cache(self.taps[idx], self.acts[idx])


def _one_thread(_: int) -> None:
    """Render workers are many single-threaded processes: no nested thread pools fighting for cores."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _loader(ds: torch.utils.data.Dataset, workers: int, batch: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=False,
                                       worker_init_fn=_one_thread if workers else None,
                                       persistent_workers=False, prefetch_factor=4 if workers else None)


class _Front(torch.nn.Module):
    """stem + blocks[:k] -> (pooled taps [B, Df], activation entering block k)."""

    def __init__(self, net: QualityNet, k: int) -> None:
        super().__init__()
        self.stem, self.blocks = net.trunk.stem, net.trunk.blocks[:k]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(x)
        tp = []
        for blk in self.blocks:
            h = blk(h)
            tp.append(mean_std(h))
        return torch.cat(tp, 1), h


def _openvino_front(front: _Front, size: int):
    """The frozen front compiled by OpenVINO (fp32): 4x torch eager on this project's 2-core CPU
    (README "Capacity"), and the front is most of the encoding time."""
    import tempfile
    import warnings

    import openvino as ov

    from model.runtimes import cpu_threads

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = f"{d}/front.onnx"
        torch.onnx.export(front.eval(), (torch.zeros(2, 3, size, size),), path, input_names=["x"],
                          output_names=["taps", "act"], dynamic_axes={"x": {0: "n"}, "taps": {0: "n"}, "act": {0: "n"}},
                          opset_version=17, dynamo=False)
        core = ov.Core()
        compiled = core.compile_model(core.read_model(path), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": cpu_threads(), "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        req.infer({0: x.numpy()})
        return (torch.from_numpy(np.array(req.get_output_tensor(0).data, copy=True)),
                torch.from_numpy(np.array(req.get_output_tensor(1).data, copy=True)))

    return run


@torch.no_grad()
def encode(net: QualityNet, k: int, images: Rendered, device: torch.device, workers: int = 0,
           batch: int = 32, progress: str = "") -> Cache:
    """Run stem + blocks[:k] once over ``images``; keep the taps and the activation at block k.

    CPU: through OpenVINO when it is installed (the worker's default runtime); CUDA: torch bf16.
    """
    v = len(net.views)
    front = _Front(net, k)
    run = None
    if device.type == "cpu" and k > 0:
        try:
            run = _openvino_front(front, net.input_size)
        except ImportError:
            run = None
    taps, acts = [], []
    t0, n = time.time(), 0
    for x in _loader(images, workers, batch):
        b = x.shape[0]
        x = normalise(x.to(device).reshape(b * v, 3, *x.shape[2:]), MEAN, STD)
        if run is not None:
            tp, h = run(x.contiguous())
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                tp, h = front(x.contiguous(memory_format=torch.channels_last))
        taps.append(tp.float().reshape(b, v, -1))
        acts.append(h.to(torch.float16).reshape(b, v, *h.shape[1:]))
        n += b
        if progress and (len(taps) % 50 == 0):
            print(f"  {progress}: {n}/{len(images)} ({time.time() - t0:.0f}s)", flush=True)
    if progress:
        print(f"  {progress}: {n} images encoded in {time.time() - t0:.0f}s", flush=True)
    return Cache(torch.cat(taps), torch.cat(acts))


def tail_taps(net: QualityNet, k: int, acts: torch.Tensor) -> torch.Tensor:
    """Pooled taps of blocks[k:] and the head conv for activations [M, C, H, W] -> [M, Dt]."""
    trunk = net.trunk
    h = acts.float().contiguous(memory_format=torch.channels_last)
    out = []
    for blk in trunk.blocks[k:]:
        h = blk(h)
        out.append(mean_std(h))
    out.append(mean_std(trunk.head(h)))
    return torch.cat(out, 1)


def features(net: QualityNet, k: int, c: Cache, bf16: bool = True) -> torch.Tensor:
    """Whole-network features [N, V * D] from a cache, in ``QualityNet.features`` layout."""
    n, v = c.taps.shape[:2]
    # bf16: tensor cores on CUDA, AMX on recent Xeons (1.6x fp32 for the CPU recipe's tail)
    with torch.autocast(c.acts.device.type, dtype=torch.bfloat16, enabled=bf16):
        t = tail_taps(net, k, c.acts.reshape(n * v, *c.acts.shape[2:])).float()
    return torch.cat([c.taps.reshape(n * v, -1), t], 1).reshape(n, -1)


@torch.no_grad()
def all_features(net: QualityNet, k: int, c: Cache, batch: int = 256, bf16: bool = True) -> torch.Tensor:
    return torch.cat([features(net, k, c.take(torch.arange(i, min(i + batch, len(c)), device=c.taps.device)), bf16)
                      for i in range(0, len(c), batch)])


def _rank_loss(f: torch.Tensor, level: torch.Tensor, margin: float) -> torch.Tensor:
    """An image graded d levels worse must score at least margin x d lower (standardised MOS)."""
    d = level[:, None] - level[None, :]
    mask = (d > 0).float()
    viol = torch.relu(margin * d - (f[None, :] - f[:, None])) * mask
    return viol.sum() / mask.sum().clamp(min=1.0)


def _srocc(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).correlation)


@dataclass
class Data:
    """What one fit sees: BIQ photos with MOS and synthetic images with grade and head labels."""

    biq: Cache
    mos: torch.Tensor  # [Nb] 0..1
    syn: Cache
    level: torch.Tensor  # [Ns] 0..4
    heads: torch.Tensor  # [Ns, H-1] 0/1, in net.heads[1:] order


def _heads(net: QualityNet, f: torch.Tensor, drop: float) -> torch.Tensor:
    f = (f - net.feat_mean) / net.feat_scale
    if drop:
        f = torch.nn.functional.dropout(f, drop, training=True)
    out = net.linear(f)
    q = out[:, :1] + net.quality_mlp(f)
    return torch.cat([q, out[:, 1:]], 1)


def _reset_heads(net: QualityNet, seed: int) -> None:
    torch.manual_seed(seed)
    net.linear.reset_parameters()
    for m in net.quality_mlp:
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def fit(net: QualityNet, k: int, train: Data, hold: Data, *, tune_trunk: bool, epochs: int, seed: int,
        log: dict, lr_trunk: float = 1e-4, lr_heads: float = 1e-3, batch: int = 64,
        deadline: float | None = None, reset_heads: bool = False) -> QualityNet:
    """Train heads (and blocks[k:] when ``tune_trunk``) on MSE to MOS + grade ranking + detector BCE.

    The quality column learns standardised MOS; the scale is folded back into the last layers at
    the end so the file predicts MOS on 0..1 as before. The epoch kept is the one with the best
    hold-out score (BIQ SROCC + synthetic grade SROCC), and every epoch's figures are logged.
    ``deadline`` (a ``time.time()`` value): no epoch starts that would likely end after it (a lent
    GPU host runs a command for a bounded time); the log says when that cut the schedule short.
    """
    dev = train.mos.device
    if reset_heads:
        _reset_heads(net, seed)
    torch.manual_seed(seed)
    mu, sd = float(train.mos.mean()), float(train.mos.std())
    tgt = (train.mos - mu) / sd
    # Features in bf16 (AMX) throughout, as the shipped v2.0.0 files were fitted. Tried: fp32 fixed
    # features for the heads-only refits (`--trunk-from`): hold-out BIQ SROCC 0.829 vs 0.825, but
    # BIQ validation 0.736 vs 0.796 for two views (0.749 vs 0.727 global-only), so not adopted.
    with torch.no_grad():
        fixed = (all_features(net, k, train.biq), all_features(net, k, train.syn))
        # Standardisation from the starting features, fixed afterwards (the layers after it adapt).
        f0 = torch.cat(fixed)
        net.feat_mean.copy_(f0.mean(0))
        net.feat_scale.copy_(f0.std(0) + 1e-3 * f0.std(0).mean() + 1e-6)
        del f0
        hold_f = None
        if tune_trunk:
            fixed = None
        elif len(hold.mos) >= 3:  # the trunk is fixed: features once, then only the heads train
            hold_f = (all_features(net, k, hold.biq), all_features(net, k, hold.syn))
    trunk_params = [p for blk in list(net.trunk.blocks[k:]) + [net.trunk.head] for p in blk.parameters()]
    for p in net.trunk.parameters():
        p.requires_grad_(False)
    for p in trunk_params:
        p.requires_grad_(tune_trunk)
    head_params = list(net.linear.parameters()) + list(net.quality_mlp.parameters())
    groups = [{"params": head_params, "lr": lr_heads, "weight_decay": 1e-3}]
    if tune_trunk:
        groups.append({"params": trunk_params, "lr": lr_trunk, "weight_decay": 1e-4})
    opt = torch.optim.AdamW(groups)
    nb, ns = len(train.mos), len(train.level)
    steps = max(1, nb // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [g["lr"] for g in groups], total_steps=epochs * steps,
                                                pct_start=0.15)
    net.trunk.eval()  # batch norm keeps ImageNet statistics
    best, best_state, history = -1e9, None, []
    for ep in range(epochs):
        t0 = time.time()
        if deadline is not None and history and t0 + history[-1]["seconds"] * 1.2 > deadline:
            log["stopped_at_deadline_after_epoch"] = ep
            print(f"  stopping after epoch {ep}: the next would pass the deadline", flush=True)
            break
        perm = torch.randperm(nb, device=dev)
        total = 0.0
        for j in range(steps):
            bi = perm[j * batch:(j + 1) * batch]
            si = torch.randint(0, ns, (2 * batch,), device=dev)
            if fixed is None:
                fb, fs = features(net, k, train.biq.take(bi)), features(net, k, train.syn.take(si))
            else:
                fb, fs = fixed[0][bi], fixed[1][si]
            ob, os_ = _heads(net, fb, 0.3), _heads(net, fs, 0.3)
            loss = ((ob[:, 0] - tgt[bi]) ** 2).mean()
            loss = loss + _rank_loss(os_[:, 0], train.level[si].float(), RANK_MARGIN)
            loss = loss + DETECTOR_WEIGHT * torch.nn.functional.binary_cross_entropy_with_logits(
                os_[:, 1:], train.heads[si].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        score = evaluate_hold(net, k, hold, hold_f)
        score["loss"] = total / steps
        score["seconds"] = round(time.time() - t0, 1)
        history.append(score)
        print(f"  epoch {ep + 1}/{epochs}: loss {score['loss']:.4f}, hold-out BIQ SROCC {score['biq_srocc']:.4f}, "
              f"grade SROCC {score['grade_srocc']:.4f}, detector AUC {score['detector_auc']:.4f} "
              f"({score['seconds']:.0f}s)", flush=True)
        s = score["biq_srocc"] + score["grade_srocc"]
        if s > best or (best_state is None and ep == epochs - 1):
            best, best_state = s, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    with torch.no_grad():  # fold the MOS scale back: the file predicts MOS on 0..1
        net.linear.weight[0] *= sd
        net.linear.bias[0] = net.linear.bias[0] * sd + mu
        net.quality_mlp[2].weight.mul_(sd)
        net.quality_mlp[2].bias.mul_(sd)
    log["history"] = history
    log["kept_epoch"] = 1 + max(range(len(history)), key=lambda i: np.nan_to_num(
        history[i]["biq_srocc"] + history[i]["grade_srocc"], nan=-1e9))
    log["mos_mean"], log["mos_std"] = mu, sd
    return net


@torch.no_grad()
def evaluate_hold(net: QualityNet, k: int, hold: Data, feats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Hold-out figures of a net whose quality column is still standardised (``feats``: the
    hold-out features when the trunk is fixed, computed once)."""
    from sklearn.metrics import roc_auc_score

    if len(hold.mos) < 3 or len(hold.level) < 3:  # smoke runs: nothing to hold out
        return {"biq_srocc": float("nan"), "grade_srocc": float("nan"), "detector_auc": float("nan")}
    fb, fs = feats if feats is not None else (all_features(net, k, hold.biq), all_features(net, k, hold.syn))
    ob = _heads(net, fb, 0.0).float().cpu().numpy()
    os_ = _heads(net, fs, 0.0).float().cpu().numpy()
    lab = hold.heads.cpu().numpy()
    aucs = [roc_auc_score(lab[:, i], os_[:, 1 + i]) for i in range(lab.shape[1]) if 0 < lab[:, i].sum() < len(lab)]
    return {"biq_srocc": _srocc(ob[:, 0], hold.mos.cpu().numpy()),
            "grade_srocc": _srocc(os_[:, 0], -hold.level.cpu().numpy()),
            "detector_auc": float(np.mean(aucs)) if aucs else float("nan")}
