"""The HTML review page in a real headless Chromium (Debian's, driven by Playwright).

The page comes from the real command (`imagegate score PATH... --format jsonl --report`), with
the random-weights PLUMBING model: its scores mean nothing; what is checked is that the page
shows exactly what the command decided, filters and sorts it, and works with no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from tests.harness import REPO
from tests.images import encode, photo

CHROMIUM = os.environ.get("IMAGEGATE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _images(root: Path) -> None:
    """Photos that the measured rules judge differently: on white, cluttered, framed, small."""
    white = Image.new("RGB", (1200, 1200), "white")
    white.paste(photo(1000, 1000, seed=1), (100, 100))
    small = Image.new("RGB", (1200, 1200), "white")
    small.paste(photo(500, 500, seed=2), (350, 350))
    shots = {"white.jpg": white, "small-product.jpg": small, "cluttered.jpg": photo(1200, 1000, seed=3),
             "framed.jpg": ImageOps.expand(white, border=60, fill="black"), "tiny.jpg": photo(150, 120, seed=4),
             "wide.jpg": photo(2400, 700, seed=5)}
    for name, img in shots.items():
        (root / name).write_bytes(encode(img, quality=90))
    (root / "broken.jpg").write_bytes(encode(photo(300, 200), quality=90)[:300])


@pytest.fixture(scope="module")
def report(tmp_path_factory, plumbing_model):
    root = tmp_path_factory.mktemp("report")
    imgs = root / "imgs"
    imgs.mkdir()
    _images(imgs)
    out = root / "out.html"
    r = subprocess.run([sys.executable, "-m", "producer_tools.cli", "score", str(imgs), "--model", str(plumbing_model),
                        "--format", "jsonl", "--report", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    return out, rows


@pytest.fixture(scope="module")
def page(report, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} missing: `make setup` installs Debian's chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS)
        pg = ctx.new_page()
        errors, requests = [], []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("request", lambda r: requests.append(r.url))
        pg.goto(report[0].as_uri())
        pg.wait_for_load_state("load")
        pg.errors, pg.requests = errors, requests
        yield pg
        ctx.close()


def visible(pg) -> list[dict]:
    return pg.eval_on_selector_all(".card:not([hidden])", "cs => cs.map(c => ({reasons: c.dataset.reasons.split(' ').filter(Boolean), decision: c.dataset.decision, score: parseFloat(c.dataset.score)}))")


def test_page_loads_offline_without_errors_and_shows_every_image(page, report):
    _, rows = report
    assert page.errors == []
    assert all(u.startswith(("file:", "data:")) for u in page.requests), page.requests  # nothing from a network
    assert page.locator(".card").count() == len(rows) == 7
    assert page.locator(".card img").count() == 6  # the broken file has no thumbnail
    assert page.locator("#shown").inner_text() == "7"
    for d in ("accept", "demote", "reject"):
        n = sum(r["decision"] == d for r in rows)
        assert f"{d} ({n})" in page.locator(f'[data-filter="decision"][data-value="{d}"]').inner_text()


def test_filter_by_each_reason_shows_exactly_the_matching_cards(page, report):
    _, rows = report
    codes = sorted({x["code"] for r in rows for x in r["reasons"]})
    assert {"unreadable", "low_resolution"} <= set(codes)
    for code in codes:
        page.click(f'[data-filter="reason"][data-value="{code}"]')
        shown = visible(page)
        assert len(shown) == sum(any(x["code"] == code for x in r["reasons"]) for r in rows), code
        assert all(code in c["reasons"] for c in shown)
        page.click("#clear")
    assert len(visible(page)) == len(rows)


def test_filter_by_decision_and_sort_by_score(page, report):
    _, rows = report
    page.click('[data-filter="decision"][data-value="reject"]')
    assert [c["decision"] for c in visible(page)] == ["reject"] * sum(r["decision"] == "reject" for r in rows)
    page.click("#clear")
    page.select_option("#sort", "asc")
    scores = [c["score"] for c in visible(page)]
    assert scores == sorted(scores) and len(scores) == len(rows)
    page.select_option("#sort", "desc")
    assert [c["score"] for c in visible(page)] == sorted(scores, reverse=True)


def test_click_shows_the_image_signals(page, report):
    _, rows = report
    page.select_option("#sort", "input")
    framed = next(i for i, r in enumerate(rows) if r["path"].endswith("framed.jpg"))
    page.click(f'.card[data-index="{framed}"]')
    assert page.locator("#detail").is_visible()
    assert page.locator("#signals tr").count() == len(rows[framed]["signals"])
    assert "border" in page.locator("#signals").inner_text()
    page.click("#close")
    assert not page.locator("#detail").is_visible()


def test_screenshot(page, tmp_path):
    page.click("#clear")
    shot = Path(os.environ.get("IMAGEGATE_REPORT_SCREENSHOT", tmp_path / "report.png"))
    page.set_viewport_size({"width": 1100, "height": 760})
    page.screenshot(path=str(shot))
    with Image.open(shot) as im:
        assert im.size == (1100, 760)
        assert len(im.convert("RGB").resize((64, 64)).getcolors(4096) or []) > 20  # cards drawn, not a blank page
    assert page.errors == []
