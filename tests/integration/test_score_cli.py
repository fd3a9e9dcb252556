"""`imagegate score` must give the worker's own verdicts.

The model is the random-weights plumbing model (`model.testing`): its values are meaningless, but
its outputs swing widely with the input, so "equal within tolerance" can only hold when both
paths scored the same pixels of the same image. The parity test checks that premise on its own
inputs (every pair of images is told apart by far more than the tolerance) before comparing.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from producer_tools.publish import make_event
from tests.harness import REPO
from tests.images import encode, photo

# Model outputs (0..1 heads, 0..100 quality) must agree this closely between the two paths; any
# two different test images differ by at least SEPARATION x this (checked in the test), so one
# image's result given for another's is off by far more than the tolerance. (The closest pair is a
# photo and its 80x60 downscale, nearly the same 64 px model input: ~0.009 apart.)
OUTPUT_TOL = 1e-4
SEPARATION = 20
HEADS = ("quality", "blur", "noise", "compression", "underexposure", "overexposure", "overlay")


def run_score(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producer_tools.cli", "score", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def rows_by_name(stdout: str) -> dict[str, dict]:
    return {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line) for line in stdout.splitlines()}


def test_score_cli_formats_and_bad_files(tmp_path, plumbing_model):
    p = photo(320, 240)
    (tmp_path / "a.jpg").write_bytes(encode(p, quality=90))
    (tmp_path / "b.png").write_bytes(encode(p, "PNG"))
    (tmp_path / "c.webp").write_bytes(encode(p, "WEBP"))
    (tmp_path / "broken.jpg").write_bytes(encode(p, quality=90)[:400])  # truncated
    r = run_score(str(tmp_path), "--model", str(plumbing_model), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    rows = rows_by_name(r.stdout)
    assert set(rows) == {"a.jpg", "b.png", "c.webp", "broken.jpg"}
    assert rows["broken.jpg"]["decision"] == "reject" and rows["broken.jpg"]["reasons"][0]["code"] == "unreadable"
    assert all(0 <= rows[n]["score"] <= 100 and rows[n]["signals"]["width"] == 320 for n in ("a.jpg", "b.png", "c.webp"))
    table = run_score(str(tmp_path / "a.jpg"), "--model", str(plumbing_model))
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["image", "score", "decision"]
    assert "a.jpg" in table.stdout


def test_score_cli_applies_the_configured_pixel_budget(tmp_path, plumbing_model):
    """IMAGEGATE_MAX_PIXELS reaches `imagegate score`'s decode (4 MP budget: 4.1 MP refused, 4.0 MP scored)."""
    flat = Image.new("RGB", (2000, 2000), (90, 120, 150))
    (tmp_path / "at-limit.png").write_bytes(encode(flat, "PNG"))
    (tmp_path / "over-limit.png").write_bytes(encode(flat.resize((2050, 2000)), "PNG"))
    r = run_score(str(tmp_path), "--model", str(plumbing_model), "--format", "jsonl",
                  env={"IMAGEGATE_MAX_PIXELS": "4000000"})
    assert r.returncode == 0, r.stderr
    rows = rows_by_name(r.stdout)
    over = rows["over-limit.png"]
    assert over["decision"] == "reject" and [x["code"] for x in over["reasons"]] == ["too_large"], over
    assert "limit is 4000000" in over["error"]
    assert rows["at-limit.png"]["signals"]["width"] == 2000 and rows["at-limit.png"]["error"] is None


def add_contrasting_images(root) -> None:
    """Beside the photo variants: inputs far apart from each other and from photos."""
    rng = np.random.default_rng(5)
    (root / "noise.png").write_bytes(encode(Image.fromarray(rng.integers(0, 256, (300, 400, 3), np.uint8)), "PNG"))
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, ::8] = 255
    (root / "stripes.png").write_bytes(encode(Image.fromarray(stripes), "PNG"))
    (root / "bright.jpg").write_bytes(encode(Image.eval(photo(640, 480, seed=9), lambda v: 160 + v // 3), quality=90))
    (root / "grey.webp").write_bytes(encode(Image.new("RGB", (500, 500), (128, 128, 128)), "WEBP"))


def separation(rows: dict[str, dict]) -> tuple[float, tuple[str, str]]:
    """Smallest difference, over all pairs of images, of their largest model-output difference."""
    def outputs(r):
        return np.array([r["signals"][h] / (100.0 if h == "quality" else 1.0) for h in HEADS])

    return min((float(np.abs(outputs(rows[a]) - outputs(rows[b])).max()), (a, b))
               for a, b in itertools.combinations(sorted(rows), 2))


@pytest.mark.integration
def test_score_cli_matches_the_worker(pipeline, origin, images, plumbing_model):
    add_contrasting_images(images)
    names = sorted(p.name for p in images.iterdir())
    r = run_score(str(images), "--model", str(plumbing_model), "--format", "jsonl", "--policy", "lenient")
    assert r.returncode == 0, r.stderr
    offline = rows_by_name(r.stdout)
    assert set(offline) == set(names) and not any(row["error"] for row in offline.values())
    gap, pair = separation(offline)
    assert gap > SEPARATION * OUTPUT_TOL, f"{pair} differ by only {gap}: a mix-up could pass this test"

    w = pipeline.worker(IMAGEGATE_MAX_BATCH_SIZE="5").start()
    out = pipeline.collector()
    events = {make_event(f"{origin.url}/img/{n}", image_id=n, policy="lenient").event_id: n for n in names}
    pipeline.publish([make_event(f"{origin.url}/img/{n}", image_id=n, policy="lenient", event_id=eid)
                      for eid, n in events.items()])
    assert out.wait_for(set(events), 120) == set(), w.log_tail()
    assert out.dlq == [], [h.get("imagegate_error", b"").decode() for _, h in out.dlq]
    assert {b["source_event_id"] for b in out.scored} == set(events)
    for body in out.scored:
        name = events[body["source_event_id"]]
        want = offline[name]
        assert body["decision"] == want["decision"], name
        assert body["score"] == pytest.approx(want["score"], abs=0.01), name
        assert [x["code"] for x in body["reasons"]] == [x["code"] for x in want["reasons"]], name
        assert set(body["signals"]) == set(want["signals"]), name
        for k, v in want["signals"].items():
            tol = OUTPUT_TOL * (100 if k == "quality" else 1)
            assert body["signals"][k] == pytest.approx(v, abs=tol), (name, k)
    assert w.stop() == 0


def test_score_cli_gives_a_two_view_model_the_full_resolution_image(tmp_path, monkeypatch):
    """No stack needed: `imagegate score` decodes for the detail view at full size, like the worker's
    Decode step (consumer.pipeline passes the same predictor.needs_full_resolution)."""
    import io

    import model
    from model.testing import write_random_model

    two = write_random_model(tmp_path / "two-view.pt", input_size=64, views=("global", "detail"))
    data = encode(photo(2000, 1500, seed=2), quality=92)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "big.jpg").write_bytes(data)
    env = {"IMAGEGATE_RUNTIME": "onnxruntime", "IMAGEGATE_CACHE_DIR": str(tmp_path / "cache")}
    r = run_score(str(tmp_path / "imgs"), "--model", str(two), "--format", "jsonl", env=env)
    assert r.returncode == 0, r.stderr
    got = rows_by_name(r.stdout)["big.jpg"]["signals"]

    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", env["IMAGEGATE_CACHE_DIR"])
    p = model.load(two, device="cpu", runtime="onnxruntime")
    full = Image.open(io.BytesIO(data)).convert("RGB")
    drafted = Image.open(io.BytesIO(data))
    drafted.draft("RGB", (64, 64))
    want = p.predict(p.preprocess(full)[None])
    wrong = p.predict(p.preprocess(drafted.convert("RGB"))[None])
    # The premise: a drafted decode would give a visibly different detail view and outputs.
    assert max(abs(float(want[h][0] - wrong[h][0])) for h in HEADS) > SEPARATION * OUTPUT_TOL
    for h in HEADS:
        assert abs(got[h] - float(want[h][0])) <= OUTPUT_TOL, (h, got[h], want[h][0])
