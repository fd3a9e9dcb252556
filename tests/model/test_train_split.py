"""`python -m training.train` fits only on the BIQ2021 training split; the validation split stays unseen.

The model card's validation figures mean something only if no validation photo reached a fit,
neither directly (BIQ features + MOS for the quality head) nor through the synthetic table
(distorted BIQ photos and their clean sources, negatives for the detectors). This runs the real
`training.train.main` on a small fake BIQ folder with the feature extractor replaced by a stand-in
whose "features" are the photo's index, and stops at `fit_heads` to read what it was given. No
feature extraction, no datasets, no Debian image packages: it takes seconds.
"""

from __future__ import annotations


import numpy as np
import pytest

from model.architecture import QualityNet
from training import data, features, synthetic
from training import train_v1 as train_mod

from tests.model.conftest import FAKE_BIQ_N as N_BIQ


class _Fitted(Exception):
    """Raised by the fit_heads spy: everything after the fit is out of scope here."""




@pytest.fixture
def seen_by_fit(fake_biq, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Run training.train.main up to fit_heads; return its BIQ rows, MOS, groups and synthetic rows.

    Each feature row is [BIQ_SOURCE_BASE + photo index] for anything made from BIQ photo i
    (the clean photo or a distorted version of it), so the rows say which photos reached the fit.
    """
    paths, _ = fake_biq
    index = {p.name: i for i, p in enumerate(paths)}

    def fake_cached_features(name, ids, net, loaders, size, tag, device="cpu"):
        rows = []
        for key in list(ids)[: len(loaders)]:  # ids may carry extra cache ids after the items
            base = key.split(":")[1] if key.startswith("biq:") else key  # distorted BIQ item / clean BIQ photo
            rows.append([float(synthetic.BIQ_SOURCE_BASE + index[base])])
        return np.asarray(rows, np.float32).reshape(len(rows), 1)

    seen: dict[str, np.ndarray] = {}

    def spy_fit_heads(fb, mos, biq_groups, fs, items, seed, log, mlp_members=3):
        seen.update(fb=np.asarray(fb), mos=np.asarray(mos), groups=np.asarray(biq_groups), fs=np.asarray(fs),
                    item_sources=np.array([it.source for it in items]))
        raise _Fitted

    monkeypatch.setattr(data, "cached_features", fake_cached_features)
    monkeypatch.setattr(features, "pretrained_net", lambda size, device="cpu": QualityNet("tiny-random", size))
    monkeypatch.setattr(synthetic, "sources", lambda: ())  # no package photos: BIQ is what is checked here
    monkeypatch.setattr(train_mod, "fit_heads", spy_fit_heads)
    with pytest.raises(_Fitted):
        train_mod.main(["--device", "cpu", "--datasets-dir", str(paths[0].parent)])
    return seen


def test_the_split_is_fixed_disjoint_and_complete() -> None:
    tr, va = data.biq_split(N_BIQ)
    assert len(va) == round(data.VAL_FRACTION * N_BIQ) > 0
    assert set(tr).isdisjoint(va) and set(tr) | set(va) == set(range(N_BIQ))
    tr2, va2 = data.biq_split(N_BIQ)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)


def test_quality_fit_sees_exactly_the_training_photos(fake_biq, seen_by_fit) -> None:
    _, mos = fake_biq
    tr, va = data.biq_split(N_BIQ)
    photos = [int(i) for i in seen_by_fit["fb"][:, 0] - synthetic.BIQ_SOURCE_BASE]
    leaked = sorted(set(photos) & {int(i) for i in va})
    assert not leaked, f"validation photos {leaked} reached the fit"
    assert np.array_equal(photos, tr)
    assert np.array_equal(seen_by_fit["mos"], mos[tr])  # MOS rows line up with the feature rows
    assert np.array_equal(seen_by_fit["groups"], synthetic.BIQ_SOURCE_BASE + tr)


def test_synthetic_table_uses_training_photos_only(seen_by_fit) -> None:
    tr, va = data.biq_split(N_BIQ)
    from_rows = {int(i) for i in seen_by_fit["fs"][:, 0] - synthetic.BIQ_SOURCE_BASE}
    from_items = {int(i) for i in seen_by_fit["item_sources"] - synthetic.BIQ_SOURCE_BASE}
    assert from_rows, "no distorted BIQ photo reached the synthetic table: this test would prove nothing"
    assert from_rows == from_items  # feature rows and labels describe the same photos
    leaked = sorted(from_rows & {int(i) for i in va})
    assert not leaked, f"validation photos {leaked} are in the synthetic table"
    assert from_rows <= {int(i) for i in tr}
