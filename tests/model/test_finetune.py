"""Partial fine-tuning (``training.finetune``) and the v2 training entry point (``training.train``).

The cache is only worth having if the network computes exactly what training saw: the cached
front + trained tail must give ``QualityNet.features`` for the same images, and a weights file
must bring back the tuned blocks over the pinned ImageNet trunk. The split test runs the real
``training.train.main`` on a fake BIQ folder with the encoder replaced by a stand-in that only
records which photos it was given (no trunk runs, no datasets, no Debian packages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import checkpoint
from model.architecture import HEADS, QualityNet, load_imagenet_lite0, trunk_digest
from model.views import DETAIL, GLOBAL
from training import data, finetune, synthetic
from training import train as train_v2
from training.features import ARCH

SIZE = 64  # Lite0 is fully convolutional: a small input keeps these tests fast


def _photos(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lo = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(lo).resize((150, 110), Image.BICUBIC)
        noise = rng.normal(0, 12, (110, 150, 3))
        out.append(Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8)))
    return out


def _net(views=(GLOBAL, DETAIL)) -> QualityNet:
    net = QualityNet(ARCH, SIZE, HEADS, 16, views)
    load_imagenet_lite0(net.trunk)
    return net.eval()


@pytest.mark.parametrize("k", [5, 15])
def test_cached_front_plus_tail_equals_the_network_features(k: int) -> None:
    net = _net()
    imgs = _photos(3)
    cache = finetune.encode(net, k, finetune.Rendered([lambda im=im: im for im in imgs], SIZE, net.views),
                            torch.device("cpu"))
    got = finetune.all_features(net, k, cache, bf16=False)
    x = torch.stack([finetune.Rendered([lambda im=im: im], SIZE, net.views)[0] for im in imgs])
    with torch.no_grad():
        want = net.features(data.normalise(x))
    assert got.shape == want.shape == (3, 2 * net.trunk.out_dim)
    # Front in OpenVINO fp32, the cached activation in fp16, the tail in torch fp32: equal up to the
    # fp16 rounding of the cache (a wrong layout or a skipped block differs by whole units).
    assert torch.allclose(got, want, rtol=1e-2, atol=1e-2), float((got - want).abs().max())
    # and the views are really different inputs (a detail view equal to the global one would hide a bug)
    d = net.trunk.out_dim
    assert not torch.allclose(got[:, :d], got[:, d:], atol=1e-2)


def test_saved_file_holds_only_the_tuned_blocks_and_loads_them_over_the_wheel(tmp_path: Path) -> None:
    net = QualityNet(ARCH, SIZE, HEADS, 16, (GLOBAL, DETAIL))
    load_imagenet_lite0(net.trunk)
    wheel = {k: v.clone() for k, v in net.trunk.state_dict().items()}
    with torch.no_grad():  # "training" changed block 15 and the head conv only
        for p in list(net.trunk.blocks[15].parameters()) + list(net.trunk.head.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
    out = train_v2.save(net, 15, tmp_path / "m.pt", {"name": "t", "version": "0", "arch": ARCH, "input_size": SIZE,
                                                     "heads": list(HEADS), "quality_hidden": 16,
                                                     "views": [GLOBAL, DETAIL], "mean": [0.5] * 3, "std": [0.5] * 3})
    blob = torch.load(out, weights_only=True)
    stored = {k for k in blob["state_dict"] if k.startswith("trunk.")}
    assert stored and all(k.startswith(("trunk.blocks.15.", "trunk.head.")) for k in stored)
    assert blob["metadata"]["trunk"]["tuned"] == ["blocks.15", "head"]
    back, meta = checkpoint.read(out)
    sd = back.trunk.state_dict()
    for k, v in net.trunk.state_dict().items():
        if k.startswith(("blocks.15.", "head.")):
            assert torch.allclose(sd[k], v, rtol=2e-3, atol=2e-3), k  # fp16 storage of large matrices
            if v.dim() >= 2:
                assert not torch.allclose(sd[k], wheel[k], atol=1e-3), k  # the tuned values, not the wheel's
        else:
            assert torch.equal(sd[k], wheel[k]), k
    ref = QualityNet(ARCH, SIZE)
    load_imagenet_lite0(ref.trunk)
    assert meta["trunk"]["sha1"] == trunk_digest(ref.trunk)  # the digest of the untouched wheel trunk


class _Stop(Exception):
    pass


def test_v2_training_never_opens_a_validation_photo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_biq) -> None:
    paths, _ = fake_biq
    n = len(paths)
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")  # no encoding saved from an earlier run
    monkeypatch.setattr(synthetic, "sources", lambda: ())  # no Debian photos needed
    opened: list[str] = []
    real_open = Image.open

    def spy_open(fp, *a, **kw):
        opened.append(Path(str(fp)).name)
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(Image, "open", spy_open)

    def fake_encode(net, k, images, device, workers=0, batch=32, progress=""):
        for i in range(len(images)):
            images.loaders[i]()  # render as the real encoder would (opens the photo)
        m = len(images)
        return finetune.Cache(torch.zeros(m, 2, 4), torch.zeros(m, 2, 1, 1, 1, dtype=torch.float16))

    seen = {}

    def fake_fit(net, k, train, hold, **kw):
        seen["n_train"], seen["n_hold"] = len(train.mos), len(hold.mos)
        raise _Stop

    monkeypatch.setattr(finetune, "encode", fake_encode)
    monkeypatch.setattr(finetune, "fit", fake_fit)
    with pytest.raises(_Stop):
        train_v2.main(["--device", "cpu", "--workers", "0", "--out", str(tmp_path / "a.pt"),
                       "--global-out", str(tmp_path / "b.pt")])
    tr, va = data.biq_split(n)
    val_names = {paths[i].name for i in va}
    train_names = {paths[i].name for i in tr}
    biq_opened = {x for x in opened if x.startswith("biq")}
    assert biq_opened and not (biq_opened & val_names), sorted(biq_opened & val_names)
    assert train_names <= biq_opened  # every training photo was encoded
    assert seen["n_train"] + seen["n_hold"] == len(tr) and seen["n_hold"] > 0
