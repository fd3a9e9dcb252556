from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import model
from training import distortions as D


def test_preprocess_shape_dtype_deterministic(shipped: model.Predictor) -> None:
    S = shipped.input_size
    for img in (Image.new("RGB", (640, 480), (10, 200, 30)), Image.new("L", (33, 901), 128),
                Image.new("RGBA", (512, 512), (1, 2, 3, 4))):
        t = shipped.preprocess(img)
        assert t.shape == (3 * len(shipped.views), S, S) and t.dtype == np.uint8 and t.flags.c_contiguous
        assert np.array_equal(t, shipped.preprocess(img))
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8))
    t = shipped.preprocess(rgb)
    assert int(t.min()) < 30 and int(t.max()) > 225  # pixels as they are: the graph normalises


def test_batch_equals_singles(shipped: model.Predictor, clean_photo: Image.Image) -> None:
    rng = np.random.default_rng(1)
    imgs = [clean_photo, D.noise(clean_photo, 2, rng), D.gaussian_blur(clean_photo, 2, rng),
            clean_photo.resize((300, 200))]
    batch = np.stack([shipped.preprocess(i) for i in imgs])
    together = shipped.predict(batch)
    for i in range(len(imgs)):
        alone = shipped.predict(batch[i : i + 1])
        for h in shipped.heads:
            tol = 0.05 if h == "quality" else 1e-3
            assert abs(float(together[h][i]) - float(alone[h][0])) <= tol, h
    again = shipped.predict(batch)
    for h in shipped.heads:
        assert np.array_equal(again[h], together[h])  # deterministic on CPU
        v = together[h]
        assert v.shape == (len(imgs),) and v.dtype == np.float32
        assert np.all((v >= 0) & (v <= (100 if h == "quality" else 1)))


HEAD_CASES = [("blur", "gaussian_blur"), ("blur", "motion_blur"), ("noise", "noise"), ("compression", "jpeg"),
              ("underexposure", "underexposure"), ("overexposure", "overexposure"), ("overlay", "overlay")]
DISTORTION_HEADS = ("blur", "noise", "compression", "underexposure", "overexposure", "overlay")
# How far a head that does NOT match the damage may rise above its clean value.
OTHER_HEAD_MARGIN = 0.1
# Known, physically plausible cross-talk, allowed up to the stated rise: level-3 JPEG blocking and
# ringing add high-frequency energy the noise head also sees (measured: +0.12 on the 512 px model,
# +0.45 on the 384 px one). Any other pair must stay within OTHER_HEAD_MARGIN.
CROSSTALK = {("jpeg", "noise"): 0.6}


@pytest.fixture(scope="module")
def pair_predictions(shipped: model.Predictor, clean_photo: Image.Image) -> dict[str, dict[str, float]]:
    imgs = {"clean": clean_photo}
    for _, dist in HEAD_CASES:
        imgs[dist] = D.apply(clean_photo, [(dist, 3)], seed=7)
    out = shipped.predict(np.stack([shipped.preprocess(i) for i in imgs.values()]))
    return {k: {h: float(out[h][j]) for h in shipped.heads} for j, k in enumerate(imgs)}


def test_every_distortion_head_is_checked(shipped: model.Predictor) -> None:
    assert set(shipped.heads) == {"quality", *DISTORTION_HEADS}
    assert {h for h, _ in HEAD_CASES} == set(DISTORTION_HEADS)


@pytest.mark.parametrize("head,dist", HEAD_CASES)
def test_head_moves_right_way(pair_predictions: dict[str, dict[str, float]], head: str, dist: str) -> None:
    """The matching head rises, quality falls, and every other head stays near its clean value:
    a model whose heads all fire on any damage must fail here."""
    clean, bad = pair_predictions["clean"], pair_predictions[dist]
    assert bad[head] > clean[head] + 0.2, (head, clean[head], bad[head])
    assert bad["quality"] < clean["quality"], (dist, clean["quality"], bad["quality"])
    risen = {other: round(bad[other] - clean[other], 3) for other in DISTORTION_HEADS
             if other != head and bad[other] - clean[other] > CROSSTALK.get((dist, other), OTHER_HEAD_MARGIN)}
    assert not risen, f"{dist} also raised other heads (rise over clean): {risen}"
