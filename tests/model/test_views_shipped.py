"""The shipped v2 model's detail view sees damage that only shows at 100 % zoom.

A collage of six package sample photos at 1:1 (1200 x 800 px, sharp at native resolution) gets
camera-made sensor noise and defocus at native resolution (``training.acquisition``, level 2). The
global view shrinks it 2.3x, which hides much of that damage; the detail view reads native pixels.
Checked against the global-only file trained on the same trunk, so what differs is the view.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import model
from training import acquisition
from training import train as train_v2


def _collage() -> Image.Image:
    from skimage import data
    from sklearn.datasets import load_sample_image

    photos = [data.astronaut(), data.coffee(), data.rocket(), load_sample_image("china.jpg"),
              load_sample_image("flower.jpg"), data.astronaut()[:, ::-1]]
    out = Image.new("RGB", (1200, 800))
    for i, a in enumerate(photos):
        h, w = a.shape[:2]
        y, x = (h - 400) // 2, (w - 400) // 2
        out.paste(Image.fromarray(np.ascontiguousarray(a[y:y + 400, x:x + 400])), ((i % 3) * 400, (i // 3) * 400))
    return out


@pytest.fixture(scope="module")
def scored() -> dict[str, dict[str, dict[str, float]]]:
    clean = _collage()
    imgs = {"clean": clean, "sensor_noise": acquisition.apply(clean, [("sensor_noise", 2)], 3),
            "defocus": acquisition.apply(clean, [("defocus", 2)], 3)}
    out = {}
    for name, path in (("two_view", train_v2.DEFAULT_OUT), ("global", train_v2.GLOBAL_OUT)):
        m = model.load(path, device="cpu", runtime="torch")
        r = m.predict(np.stack([m.preprocess(i) for i in imgs.values()]))
        out[name] = {k: {h: float(r[h][j]) for h in m.heads} for j, k in enumerate(imgs)}
    return out


@pytest.mark.parametrize("damage,head", [("sensor_noise", "noise"), ("defocus", "blur")])
def test_detail_view_sees_native_resolution_damage(scored, damage: str, head: str) -> None:
    two, one = scored["two_view"], scored["global"]
    drop_two = two["clean"]["quality"] - two[damage]["quality"]
    drop_one = one["clean"]["quality"] - one[damage]["quality"]
    assert drop_two > 0, (damage, two["clean"]["quality"], two[damage]["quality"])
    # the detail view makes the damage count for more than the shrunk whole photo alone does
    assert drop_two > drop_one, (damage, drop_two, drop_one)
    assert two[damage][head] > two["clean"][head] + 0.2, (head, two["clean"][head], two[damage][head])
