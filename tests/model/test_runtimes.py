"""Every runtime scores like the reference: torch eager fp32 on the float preprocessing path.

Real photos from package data (skimage samples), plus blurred/noisy versions so the
distortion heads are exercised away from 0. Tolerances from the issue: quality within
0.5 points, distortion heads within 0.01.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import model
from model import checkpoint, export
from model.testing import write_random_model
from model.views import stack_views
from training import data
from training import distortions as D
from training.train_v1 import DEFAULT_OUT as V1_WEIGHTS

RUNTIMES = ["torch", "onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def photos(clean_photo: Image.Image) -> list[Image.Image]:
    from skimage import data as sk

    rng = np.random.default_rng(3)
    coffee = Image.fromarray(sk.coffee()).convert("RGB")  # 600x400: resized to the input, not cropped
    chelsea = Image.fromarray(sk.chelsea()).convert("RGB")
    return [clean_photo, coffee, chelsea, D.gaussian_blur(clean_photo, 3, rng), D.noise(coffee, 3, rng)]


@pytest.fixture(scope="module")
def reference(photos: list[Image.Image]) -> dict[str, np.ndarray]:
    """The pre-runtime path: float32 preprocessing, QualityNet forward in fp32 torch eager."""
    net, meta = checkpoint.read(model.DEFAULT_WEIGHTS)
    views = tuple(meta.get("views", ("global",)))
    x = torch.stack([data.normalise(torch.from_numpy(stack_views(im, int(meta["input_size"]), views)))
                     for im in photos])
    with torch.inference_mode():
        raw = net(x).float()
    heads = tuple(meta["heads"])
    return {h: ((raw[:, i] * 100).clamp(0, 100) if h == "quality" else torch.sigmoid(raw[:, i])).numpy()
            for i, h in enumerate(heads)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_matches_torch_reference(runtime: str, photos: list[Image.Image],
                                         reference: dict[str, np.ndarray]) -> None:
    p = model.load(device="cpu", runtime=runtime)
    assert p.runtime == runtime and p.device == "cpu"
    batch = np.stack([p.preprocess(im) for im in photos])
    out = p.predict(batch)
    assert set(out) == set(p.heads)
    for h in p.heads:
        assert out[h].dtype == np.float32 and out[h].shape == (len(photos),)
        tol = 0.5 if h == "quality" else 0.01
        diff = np.abs(out[h] - reference[h])
        assert diff.max() <= tol, (runtime, h, out[h], reference[h])
    # The photos really differ in quality, so agreeing on them means something.
    assert reference["quality"].max() - reference["quality"].min() > 10
    assert reference["blur"][3] > 0.5 and reference["noise"][4] > 0.5


def test_preprocess_is_uint8_chw_and_equals_float_path(photos: list[Image.Image]) -> None:
    p = model.load(device="cpu", runtime="onnxruntime")
    s = p.input_size
    for im in photos[:2] + [Image.new("L", (33, 901), 128), Image.new("RGBA", (512, 512), (1, 2, 3, 4))]:
        a = p.preprocess(im)
        assert a.dtype == np.uint8 and a.shape == (3 * len(p.views), s, s) and a.flags.c_contiguous
        ref = data.preprocess_image(im, s)  # training's float path of the global view: same pixels, normalised
        assert torch.equal(data.normalise(torch.from_numpy(a[:3])), ref)


def test_bad_batches_get_clear_errors() -> None:
    p = model.load(device="cpu", runtime="onnxruntime")
    s, c = p.input_size, 3 * len(p.views)
    with pytest.raises(TypeError, match="uint8"):
        p.predict(np.zeros((1, c, s, s), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        p.predict(torch.zeros(1, c, s, s, dtype=torch.uint8))
    with pytest.raises(ValueError, match=f"{c}, {s}, {s}"):
        p.predict(np.zeros((1, c, s, s - 1), np.uint8))
    with pytest.raises(ValueError):
        p.predict(np.zeros((0, c, s, s), np.uint8))


def test_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(model.ModelLoadError, match="unknown runtime 'tflite'.*onnxruntime"):
        model.load(device="cpu", runtime="tflite")


def test_runtime_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", str(tmp_path / "cache"))
    w = write_random_model(tmp_path / "random.pt", input_size=32)
    monkeypatch.setenv("IMAGEGATE_RUNTIME", "torch")
    assert model.load(w, device="cpu").runtime == "torch"
    monkeypatch.setenv("IMAGEGATE_RUNTIME", "onnxruntime")
    assert model.load(w, device="cpu").runtime == "onnxruntime"
    assert model.load(w, device="cpu", runtime="torch").runtime == "torch"  # the argument wins


def test_export_is_reproducible_cached_and_batch_dynamic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random-weights plumbing model: checks the export mechanics, not quality."""
    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", str(tmp_path / "cache"))
    w = write_random_model(tmp_path / "random.pt", input_size=32)
    path, meta = export.ensure(w)
    assert path.is_relative_to(tmp_path / "cache") and meta["name"] == "random-plumbing-only"
    first = path.read_bytes()
    path.unlink()
    path.with_suffix(".json").unlink()
    again, _ = export.ensure(w)
    assert again == path and again.read_bytes() == first  # same weights -> byte-identical graph
    mtime = again.stat().st_mtime_ns
    export.ensure(w)
    assert again.stat().st_mtime_ns == mtime  # cached: not rebuilt
    ref = model.load(w, device="cpu", runtime="torch")
    ort = model.load(w, device="cpu", runtime="onnxruntime")
    rng = np.random.default_rng(0)
    for n in (1, 5):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        a, b = ref.predict(x), ort.predict(x)
        for h in ref.heads:
            assert a[h].shape == (n,) and np.allclose(a[h], b[h], atol=1e-3), h


def test_decode_gives_model_input_from_the_drafted_jpeg(photos: list[Image.Image], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4x-oversized JPEG is DCT-downscaled while decoding, and lands as the model's uint8 input
    (a single-view model: the v2 default reads full resolution, see test_views_model.py)."""
    import io

    from consumer import decode as dec

    p = model.load(V1_WEIGHTS, device="cpu", runtime="onnxruntime")
    s = p.input_size
    big = photos[0].resize((4 * s + 8, 4 * s))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=92)
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(dec, "measure", lambda rgb, size: (seen.append(rgb.size), {})[1])
    d = dec.decode(buf.getvalue(), p.preprocess, s, dec.DecodeLimits())
    assert isinstance(d.tensor, np.ndarray) and d.tensor.dtype == np.uint8 and d.tensor.shape == (3, s, s)
    assert s <= min(seen[0]) and max(seen[0]) < 2 * s + 8  # decoded at 1/2 or 1/4 scale, never full size
    full = p.preprocess(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.abs(d.tensor.astype(int) - full.astype(int)).mean() < 2.0  # same picture as a full decode


def test_cpu_forward_runs_in_chunks_with_the_same_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random-weights plumbing model: a batch larger than the CPU chunk is split, rows stay in order."""
    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", str(tmp_path / "cache"))
    p = model.load(write_random_model(tmp_path / "random.pt", input_size=32), device="cpu", runtime="onnxruntime")
    assert p.chunk == 4
    calls: list[int] = []
    run = p.backend.run
    monkeypatch.setattr(p.backend, "run", lambda b: (calls.append(len(b)), run(b))[1])
    x = np.random.default_rng(1).integers(0, 256, (19, 3, 32, 32), dtype=np.uint8)
    chunked = p.predict(x)
    assert calls == [4, 4, 4, 4, 3]
    p.chunk = None
    whole = p.predict(x)
    for h in p.heads:
        assert np.allclose(chunked[h], whole[h], atol=1e-5), h
