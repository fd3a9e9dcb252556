"""A two-view model (global + detail) through every runtime, the predictor's checks and the decoder.

Random-weights plumbing models only (model.testing): their scores mean nothing, but every
runtime must compute the same numbers from the same [N, 6, S, S] input.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model
from model import views
from model.testing import write_random_model
from tests.images import photo

RUNTIMES = ["torch", "onnxruntime", "openvino"]
TWO = (views.GLOBAL, views.DETAIL)
S = 64


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("views")
    return {1: write_random_model(d / "one.pt", S), 2: write_random_model(d / "two.pt", S, TWO)}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "export-cache"))


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [photo(900, 700, seed=i) for i in range(4)] + [photo(100, 80, seed=9)]


def test_two_view_model_runs_the_same_in_every_runtime(files: dict[int, Path], images: list[Image.Image]) -> None:
    preds = {rt: model.load(files[2], device="cpu", runtime=rt) for rt in RUNTIMES}
    for p in preds.values():
        assert p.views == TWO and p.needs_full_resolution
    batch = np.stack([preds["torch"].preprocess(im) for im in images])
    assert batch.shape == (len(images), 6, S, S)
    out = {rt: p.predict(batch) for rt, p in preds.items()}
    ref = out["torch"]
    assert ref["quality"].max() - ref["quality"].min() > 1  # inputs differ, so agreement means something
    for rt in RUNTIMES[1:]:
        for h in preds[rt].heads:
            tol = 0.05 if h == "quality" else 1e-3
            assert np.abs(out[rt][h] - ref[h]).max() <= tol, (rt, h, out[rt][h], ref[h])


def test_detail_view_changes_the_score(files: dict[int, Path], images: list[Image.Image]) -> None:
    """The second half of the input reaches the heads: same global view, other detail view -> other scores."""
    p = model.load(files[2], device="cpu", runtime="onnxruntime")
    a = p.preprocess(images[0])
    b = a.copy()
    b[3:] = p.preprocess(images[1])[3:]
    out = p.predict(np.stack([a, b]))
    assert abs(float(out["quality"][0] - out["quality"][1])) > 1e-3


def test_predict_rejects_single_view_input_for_a_two_view_model(files: dict[int, Path]) -> None:
    p = model.load(files[2], device="cpu", runtime="torch")
    with pytest.raises(ValueError, match=r"expected \[N>0, 6, 64, 64\] \(2 views global\+detail.*got \(2, 3, 64, 64\)"):
        p.predict(np.zeros((2, 3, S, S), np.uint8))
    with pytest.raises(ValueError, match=r"got \(0, 6, 64, 64\)"):
        p.predict(np.zeros((0, 6, S, S), np.uint8))
    one = model.load(files[1], device="cpu", runtime="torch")
    with pytest.raises(ValueError, match=r"expected \[N>0, 3, 64, 64\], got \(1, 6, 64, 64\)"):
        one.predict(np.zeros((1, 6, S, S), np.uint8))


def test_two_view_preprocess_starts_with_the_single_view_input(files: dict[int, Path], images: list[Image.Image]) -> None:
    one = model.load(files[1], device="cpu", runtime="torch")
    two = model.load(files[2], device="cpu", runtime="torch")
    assert one.views == (views.GLOBAL,) and not one.needs_full_resolution
    for im in images + [Image.new("RGBA", (300, 200), (1, 2, 3, 4))]:
        a, b = one.preprocess(im), two.preprocess(im)
        assert a.shape == (3, S, S) and b.shape == (6, S, S) and b.dtype == np.uint8 and b.flags.c_contiguous
        assert np.array_equal(b[:3], a)
        assert np.array_equal(b[3:], np.asarray(views.detail_view(im.convert("RGB"), S)).transpose(2, 0, 1))


def test_export_sidecar_keeps_the_views(files: dict[int, Path]) -> None:
    from model import export

    _, meta = export.ensure(files[2])
    assert meta["views"] == list(TWO)
    _, meta1 = export.ensure(files[1])
    assert meta1["views"] == [views.GLOBAL]


@pytest.mark.parametrize("n_views", [1, 2])
def test_decode_hands_a_two_view_model_the_full_resolution_jpeg(files: dict[int, Path], n_views: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from consumer import decode as dec

    p = model.load(files[n_views], device="cpu", runtime="torch")
    big = photo(2400, 1800, seed=4)
    data = io.BytesIO()
    big.save(data, "JPEG", quality=92)
    seen: list[tuple[int, int]] = []
    reserved: list[int] = []

    def spy(img: Image.Image) -> np.ndarray:
        seen.append(img.size)
        return p.preprocess(img)

    budget = dec.DecodeBudget(1 << 30)
    hold = budget.hold
    monkeypatch.setattr(budget, "hold", lambda n: (reserved.append(n), hold(n))[1])
    d = dec.decode(data.getvalue(), spy, p.input_size, dec.DecodeLimits(), budget,
                   full_resolution=p.needs_full_resolution)
    assert d.tensor.shape == (3 * n_views, S, S) and d.signals["width"] == 2400
    if n_views == 2:
        assert seen == [(2400, 1800)]  # no DCT downscale: the detail view reads native pixels
        assert reserved == [dec.decode_cost("RGB", 2400, 1800)]
        full = np.asarray(Image.open(io.BytesIO(data.getvalue())).convert("RGB"))
        crop = S // views.DETAIL_GRID
        l, t, r, b = views.detail_boxes(Image.fromarray(full), crop)[0]
        assert np.array_equal(d.tensor[3:, :crop, :crop], full[t:b, l:r].transpose(2, 0, 1))
    else:
        assert seen[0][0] < 2400 and min(seen[0]) >= S  # DCT-downscaled as before (1/8 scale here)
        assert reserved == [dec.decode_cost("RGB", *seen[0])]
    assert budget.used == 0


def test_int8_calibration_feeds_the_models_views(files: dict[int, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The experimental int8 export calibrates on [N, 6, S, S] for a 2-view model (generated images
    stand in for the BIQ2021 calibration sample). ``training.quantize`` builds it where
    ``model.export`` (and so the *-int8 runtimes) read it."""
    from model import export
    from training import quantize

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"cal{i}.jpg")
        photo(300, 200, seed=20 + i).save(paths[-1], quality=90)
    monkeypatch.setattr(quantize, "calibration_paths", lambda n=0, root=None: paths)
    built = quantize.build(files[2])
    path, meta = export.ensure(files[2], "int8")
    assert (path, meta) == built and path == export.artefact(files[2], "int8")
    assert path.is_file() and meta["views"] == list(TWO) and meta["precision"] == "int8"
    p = model.load(files[2], device="cpu", runtime="onnxruntime-int8")
    out = p.predict(np.stack([p.preprocess(photo(400, 300, seed=i)) for i in range(2)]))
    assert all(np.isfinite(v).all() for v in out.values())


def test_int8_is_read_never_built_on_demand(files: dict[int, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibration needs the training photos, which a worker has not: a missing int8 graph is a
    clear error naming the command that builds it, and nothing is written to the cache."""
    from model import export
    from model.runtimes import RuntimeUnavailable

    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(RuntimeUnavailable, match=r"python -m training\.quantize"):
        export.ensure(files[1], "int8")
    with pytest.raises(model.ModelLoadError, match=r"python -m training\.quantize"):
        model.load(files[1], device="cpu", runtime="onnxruntime-int8")
    assert not export.artefact(files[1], "int8").exists()
    assert not export.artefact(files[1], "int8").with_suffix(".json").exists()
