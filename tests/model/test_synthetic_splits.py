"""Which photos train and which only evaluate (v2 splits), and the source-root override.

The camera and high-resolution tables mean something only if none of their photos, nor any
image made from them, reached training. Built on a fake package tree under
IMAGEGATE_SOURCES_ROOT, so no Debian package is needed and the override is exercised too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import synthetic


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "usr/share/backgrounds"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(30):  # a third small (0.3 MP), the rest at least 2 MP
        size = (640, 480) if i % 3 == 0 else (1800, 1200)
        Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3))).save(d / f"photo{i:02d}.jpg", quality=70)
    monkeypatch.setenv("IMAGEGATE_SOURCES_ROOT", str(tmp_path))
    synthetic.sources.cache_clear()
    yield tmp_path
    synthetic.sources.cache_clear()


def test_sources_under_a_root_keep_their_logical_paths(fake_root: Path) -> None:
    srcs = [s for s in synthetic.sources() if s.package.startswith("lomiri")]
    assert len(srcs) == 30
    assert all(s.file.startswith("/usr/share/backgrounds/photo") for s in srcs)  # keys and seeds unchanged
    img = synthetic.load_source(srcs[1], full=True)
    assert img.size == Image.open(fake_root / srcs[1].file.lstrip("/")).size  # read from under the root


def test_held_out_photos_never_reach_training_items(fake_root: Path) -> None:
    srcs = synthetic.sources()
    split = {i: s.split for i, s in enumerate(srcs)}
    hires = {i for i, s in split.items() if s == "hires"}
    test = {i for i, s in split.items() if s == "test"}
    assert hires and test  # the fake tree has photos of every kind
    assert all(synthetic._pixels(srcs[i].file) >= synthetic.HIRES_MIN_PIXELS for i in hires)
    trained = {it.source for it in synthetic.build_items("train") + synthetic.build_items("train", view=1)
               + synthetic.build_acq_items("train")}
    assert trained and not trained & (hires | test)
    evaluated = {it.source for it in synthetic.build_acq_items("hires")}
    assert evaluated >= hires  # every hires photo is in the high-resolution table ...
    assert all(synthetic._pixels(srcs[i].file) >= synthetic.HIRES_MIN_PIXELS for i in evaluated)  # ... and only >= 2 MP
    assert {it.source for it in synthetic.build_acq_items("test")} <= test


def test_acquisition_items_are_native_graded_and_labelled() -> None:
    items = [synthetic.Item(0, [("sensor_noise", 3)], 1, native=True), synthetic.Item(0, [("defocus", 2)], 2, native=True),
             synthetic.Item(0, [], 3, native=True)]
    lab = synthetic.labels(items)
    assert list(lab["level"]) == [3, 2, 0]
    assert list(lab["noise"]) == [1, 0, 0] and list(lab["blur"]) == [0, 1, 0]
    assert items[0].key.endswith(":native") and items[0].key != synthetic.Item(0, [("sensor_noise", 3)], 1).key
