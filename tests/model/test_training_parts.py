"""Training-side pieces that need neither the datasets nor the Debian image packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import synthetic
from training.evaluate import _per_series_srocc
from training.train_v1 import DEFAULT_OUT, NAME, VERSION, _rank_loss, variant
from training.train_v1 import main as train_main


def _fake_biq(tmp_path: Path) -> tuple[list[Path], np.ndarray]:
    rng = np.random.default_rng(0)
    paths, mos = [], []
    for i in range(12):
        size = (512, 512) if i != 5 else (640, 480)
        p = tmp_path / f"ss03_{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
        mos.append(i / 12)
    return paths, np.array(mos)


def test_biq_items_use_only_good_512px_training_photos(tmp_path: Path) -> None:
    paths, mos = _fake_biq(tmp_path)
    train_idx = np.array([0, 2, 4, 5, 6, 8, 10, 11])  # 1, 3, 7, 9 play the validation split
    r0 = synthetic.build_biq_items(paths, mos, train_idx, seed=0, rnd=0)
    r1 = synthetic.build_biq_items(paths, mos, train_idx, seed=0, rnd=1)
    med = np.median(mos[train_idx])
    used = {it.source - synthetic.BIQ_SOURCE_BASE for it in r0 + r1}
    assert used == {i for i in train_idx if mos[i] >= med and i != 5}  # 5 is not 512 x 512
    for it in r0:  # round 0: two distinct single distortions per photo
        assert len(it.steps) == 1 and 1 <= it.level <= 4
    for i in used:
        kinds0 = [it.steps[0][0] for it in r0 if it.source == synthetic.BIQ_SOURCE_BASE + i]
        assert len(kinds0) == 2 and kinds0[0] != kinds0[1]
        steps1 = [it.steps for it in r1 if it.source == synthetic.BIQ_SOURCE_BASE + i]
        assert sorted(len(s) for s in steps1) == [1, 2]  # round 1: one single, one mixture
    keys = [it.key for it in r0 + r1]
    assert len(set(keys)) == len(keys)
    assert [it.key for it in synthetic.build_biq_items(paths, mos, train_idx, seed=0, rnd=0)] == keys[: len(r0)]
    img = synthetic.CropBank().render(r0[0])
    assert img.size == (512, 512) and img.mode == "RGB"
    assert not np.array_equal(np.asarray(img), np.asarray(Image.open(r0[0].path).convert("RGB")))


def test_rank_loss_is_zero_only_when_worse_grades_score_lower_by_the_margin() -> None:
    level = torch.tensor([0.0, 1.0, 2.0])
    assert float(_rank_loss(torch.tensor([1.0, 0.5, 0.0]), level, margin=0.4)) == 0.0
    assert float(_rank_loss(torch.tensor([1.0, 0.7, 0.0]), level, margin=0.4)) > 0.0  # 1 vs 0 within margin
    assert float(_rank_loss(torch.tensor([0.0, 0.5, 1.0]), level, margin=0.4)) > 1.0  # order reversed
    assert float(_rank_loss(torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0]), margin=0.4)) == 0.0  # ties free


def test_per_series_srocc_ranks_within_one_photo_and_type_only() -> None:
    kinds = np.array(["clean", "blur", "blur", "noise", "noise"] * 2)
    level = np.array([0, 1, 2, 1, 2] * 2)
    source = np.repeat([0, 1], 5)
    good = np.array([9, 8, 7, 8, 7, 2, 1, 0, 1, 0], float)  # photo 1 scores low overall: irrelevant here
    assert _per_series_srocc(good, level, source, kinds) == 1.0
    bad = good.copy()
    bad[[1, 2]] = bad[[2, 1]]  # photo 0, blur: level 2 above level 1
    assert _per_series_srocc(bad, level, source, kinds) < 1.0


def test_zoomed_training_views_are_512px_and_never_upscaled(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def spy(self: Image.Image, size: tuple[int, int], *a, **k) -> Image.Image:
        sizes.append(size)
        return resize(self, size, *a, **k)

    monkeypatch.setattr(Image.Image, "resize", spy)
    big = Image.new("RGB", (1800, 1200))
    small = Image.new("RGB", (900, 600))
    for k in range(30):
        assert synthetic.clean_crop(big, np.random.default_rng([0, k]), jitter=True, zoom=True).size == (512, 512)
    shorts_big = [min(s) for s in sizes]
    sizes.clear()
    for k in range(30):
        assert synthetic.clean_crop(small, np.random.default_rng([1, k]), jitter=True, zoom=True).size == (512, 512)
    shorts_small = [min(s) for s in sizes]
    # Large photo: short side drawn over 512..768 px; a 600 px photo is never enlarged.
    assert 512 <= min(shorts_big) and max(shorts_big) <= synthetic.ZOOM_MAX_SHORT and len(set(shorts_big)) > 15
    assert 512 <= min(shorts_small) and max(shorts_small) <= 600


def test_extra_views_are_training_only_and_leave_view_0_keys_unchanged() -> None:
    with pytest.raises(ValueError):
        synthetic.build_items("test", 0, view=1)
    assert synthetic.Item(3, [("jpeg", 2)], 7).key == "3:[('jpeg', 2)]:7"  # view 0: cache keys as before
    assert synthetic.Item(3, [("jpeg", 2)], 7, view=2).key == "3:[('jpeg', 2)]:7:v2"


def test_other_input_sizes_get_their_own_version_and_file() -> None:
    name, version, out = variant(512)
    assert (name, version, out) == (NAME, VERSION, DEFAULT_OUT)
    name384, version384, out384 = variant(384)
    # The worker keys Redis results and scored-event ids by version: the two must never collide.
    assert version384 != VERSION and name384 != NAME
    assert out384 != DEFAULT_OUT and out384.parent == DEFAULT_OUT.parent


@pytest.mark.parametrize("size", ["100", "32"])
def test_train_refuses_input_sizes_the_trunk_cannot_take(size: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        train_main(["--input-size", size])
    assert e.value.code == 2 and "--input-size" in capsys.readouterr().err
