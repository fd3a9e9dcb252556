"""Product-photo evaluation set: ``python -m training.product_eval [--write DIR] [--mismatches]``.

Why it exists: the model card measures technical quality, but listings are decided by the
whole path (decode -> signals -> model -> policy profile). This set is generated in code
from photos the project already ships with (scikit-image / scikit-learn package data; no
download, nothing cached in the repo): objects are cut out and composited on pure white and
on cluttered backgrounds at several fills, then given borders, overlaid text, blur, darkness,
noise, compression, low contrast, small sizes and odd aspect ratios. Each image carries the
decision and reason codes expected under every bundled profile, known by construction (the
fill is what we rendered, the border is what we drew), never read back from a measurement.

It prints, per profile, the confusion table of expected vs. produced decisions, and the
precision and recall of every reason code over all (image, profile) pairs. It sits above
`consumer` on purpose: what it evaluates is the worker's own decode and policy, with the
shipped model (``model.load()``), so it imports them at run time.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

PROFILES = ("default", "lenient", "main_image")
LONG = 1200  # long side of a full-size render, px (main images need >= 1000)
DECODE_CODES = ("unreadable", "unsupported_format", "too_large", "fetch_failed")


@dataclass(frozen=True)
class Expect:
    decision: str
    codes: frozenset[str] = frozenset()


@dataclass
class Case:
    name: str
    data: bytes | None  # None: the upload is missing (what the worker reports as fetch_failed)
    expect: dict[str, Expect] = field(default_factory=dict)


def _grabcut(a: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """Foreground mask (0/255) of the object inside `rect`, largest connected part only."""
    import cv2

    cv2.setRNGSeed(0)
    mask = np.zeros(a.shape[:2], np.uint8)
    cv2.grabCut(a[:, :, ::-1].copy(), mask, rect, np.zeros((1, 65)), np.zeros((1, 65)), 4, cv2.GC_INIT_WITH_RECT)
    fg = ((mask == 1) | (mask == 3)).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg)
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if n > 1 else 1
    return (lab == keep).astype(np.uint8) * 255


def _rgba(a: np.ndarray, mask: np.ndarray) -> Image.Image:
    img = Image.fromarray(np.dstack([a[:, :, :3], mask]).astype(np.uint8), "RGBA")
    return img.crop(img.getbbox())


@lru_cache(maxsize=1)
def cutouts() -> dict[str, Image.Image]:
    """Objects cut out of package photos (RGBA, cropped to the object)."""
    import skimage.data as d
    from sklearn.datasets import load_sample_image

    out = {}
    logo = d.logo()  # RGBA already: the scikit-image logo, a flat "sticker" product
    out["logo"] = _rgba(logo, ((logo[:, :, 3] > 0) & (logo[:, :, :3].min(axis=2) < 235)).astype(np.uint8) * 255)
    retina = d.retina()  # a round object on black
    out["retina"] = _rgba(retina, ((retina.astype(np.float32) @ [0.299, 0.587, 0.114]) > 25).astype(np.uint8) * 255)
    flower = load_sample_image("flower.jpg")
    out["flower"] = _rgba(flower, _grabcut(flower, (130, 40, 420, 400)))
    coffee = d.coffee()  # cup and saucer: an ellipse around the saucer
    yy, xx = np.mgrid[0:coffee.shape[0], 0:coffee.shape[1]]
    out["coffee"] = _rgba(coffee, ((((xx - 168) / 168.0) ** 2 + ((yy - 178) / 150.0) ** 2) <= 1).astype(np.uint8) * 255)
    astro = d.astronaut()[::2, ::2]  # half size: grabCut is ~4x faster and the figure stays sharp
    out["astronaut"] = _rgba(astro, _grabcut(np.ascontiguousarray(astro), (5, 5, 245, 250)))
    return out


@lru_cache(maxsize=1)
def clutter() -> tuple[Image.Image, ...]:
    """Busy, non-white backgrounds from package photos."""
    import skimage.data as d
    from sklearn.datasets import load_sample_image

    return (Image.fromarray(load_sample_image("china.jpg")), Image.fromarray(d.gravel()).convert("RGB"),
            Image.fromarray(d.immunohistochemistry()), Image.fromarray(d.grass()).convert("RGB"),
            Image.fromarray(d.brick()).convert("RGB"))


def compose(obj: Image.Image, fill: float, bg: Image.Image | None = None, size: tuple[int, int] | None = None,
            shift: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    """Object centred (then shifted by a share of the canvas) so its bounding box covers `fill` of the frame.

    The canvas takes the object's aspect ratio unless `size` is given, so `fill` is exact.
    """
    ow, oh = obj.size
    if size is None:
        r = min(2.0, max(0.5, ow / oh))
        size = (LONG, round(LONG / r)) if r >= 1 else (round(LONG * r), LONG)
    w, h = size
    s = min((fill * w * h / (ow * oh)) ** 0.5, w / ow, h / oh)
    o = obj.resize((max(1, round(ow * s)), max(1, round(oh * s))), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, "white") if bg is None else bg.resize(size, Image.Resampling.BICUBIC)
    x = (w - o.width) // 2 + round(shift[0] * w)
    y = (h - o.height) // 2 + round(shift[1] * h)
    canvas.paste(o, (x, y), o)
    return canvas


def frame(img: Image.Image, depth: float, colour: str) -> Image.Image:
    """The photo inside an added frame `depth` of its short side deep (what sellers add in photo apps)."""
    return ImageOps.expand(img, border=max(1, round(depth * min(img.size))), fill=colour)


def overlay_text(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    big = ImageFont.load_default(size=max(12, img.height // 7))
    small = ImageFont.load_default(size=max(10, img.height // 16))
    draw.text((img.width * 0.05, img.height * 0.05), "SALE -50%", fill=(220, 0, 0), font=big, stroke_width=3, stroke_fill="white")
    draw.text((img.width * 0.05, img.height * 0.8), "FREE SHIPPING", fill=(255, 200, 0), font=small, stroke_width=2, stroke_fill="black")
    for i in range(4):  # a tiled watermark
        draw.text((img.width * 0.1, img.height * (0.3 + 0.12 * i)), "shop.example.com", fill=(128, 128, 128), font=small)
    return out


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h (no pixel data): the decoder must refuse it from the header."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))


def _long_side(size: tuple[int, int], n: int) -> tuple[int, int]:
    w, h = size
    return (n, round(n * h / w)) if w >= h else (round(n * w / h), n)


def _short_side(size: tuple[int, int], n: int) -> tuple[int, int]:
    w, h = size
    return (round(n * w / h), n) if w >= h else (n, round(n * h / w))


def _all(decision: str, *codes: str) -> dict[str, Expect]:
    return {p: Expect(decision, frozenset(codes)) for p in PROFILES}


def _per(default: tuple, lenient: tuple, main: tuple) -> dict[str, Expect]:
    """Each argument: (decision, *codes) for that profile."""
    return {p: Expect(v[0], frozenset(v[1:])) for p, v in zip(PROFILES, (default, lenient, main))}


def build() -> list[Case]:
    """The whole set (~100 images): per object, each variant with its expectation per profile.

    Expectations follow the bundled profiles' intent (consumer/policies/default.json): main_image
    rejects a non-white background, a border and a product under 40 % of the frame and demotes
    85-40 %; default demotes a border; quality problems demote; the severe ones that leave
    nothing to sell with (heavy blur, darkness, a washed-out grey image) reject in default and
    main_image, and demote in lenient.
    """
    from consumer.policy import CROPPED_CODE

    cases: list[Case] = []
    bgs = clutter()
    for k, (name, obj) in enumerate(sorted(cutouts().items())):
        good = compose(obj, 0.9)
        add = lambda v, img, exp, q=92: cases.append(Case(f"{name}/{v}", _jpeg(img, q), exp))  # noqa: E731
        add("white-fill90", good, _all("accept"))
        add("white-fill95-1000px", compose(obj, 0.95, size=_short_side(good.size, 1000)), _all("accept"))  # zoom minimum
        add("white-fill90-q70", good, _all("accept"), q=70)
        add("white-fill60", compose(obj, 0.6), _per(("accept",), ("accept",), ("demote", "product_too_small")))
        add("white-fill25", compose(obj, 0.25), _per(("accept",), ("accept",), ("reject", "product_too_small")))
        for j in (0, 1):
            bg = bgs[(2 * k + j) % len(bgs)]
            add(f"clutter{j}-fill90", compose(obj, 0.9, bg), _per(("accept",), ("accept",), ("reject", "background_not_white")))
        add("frame-black", frame(good, 0.04, "black"), _per(("demote", "border"), ("accept",), ("reject", "border")))
        add("clutter-frame-white", frame(compose(obj, 0.9, bgs[(0, 1, 3)[k % 3]]), 0.05, "white"),
            _per(("demote", "border"), ("accept",), ("reject", "border", "background_not_white")))
        lb = Image.new("RGB", (good.width, good.height), "black")
        inner = good.resize((good.width, round(good.height * 0.8)))
        lb.paste(inner, (0, (good.height - inner.height) // 2))
        add("letterbox", lb, _per(("demote", "border"), ("accept",), ("reject", "border")))
        add("text", overlay_text(good), _per(("demote", "text_or_watermark"), ("demote", "text_or_watermark"),
                                              ("reject", "text_or_watermark")))
        add("blur", good.filter(ImageFilter.GaussianBlur(12)),
            _per(("reject", "blurry", "low_quality"), ("demote", "blurry", "low_quality"), ("reject", "blurry", "low_quality")))
        dark = Image.eval(good, lambda v: int(v * 0.12))  # contrast falls with the light: low_contrast is real
        add("dark", dark, _per(("reject", "underexposed", "low_contrast", "low_quality"), ("demote", "underexposed", "low_quality"),
                                ("reject", "underexposed", "low_contrast", "low_quality", "background_not_white")))
        bright = Image.eval(compose(obj, 0.9, bgs[(k + 1) % len(bgs)]), lambda v: min(255, int(150 + v * 0.9)))
        add("bright", bright, _per(("demote", "overexposed"), ("demote", "overexposed"),
                                    ("reject", "overexposed", "background_not_white")))
        rng = np.random.default_rng(k)
        noisy = np.clip(np.asarray(good, np.float32) + rng.normal(0, 45, (good.height, good.width, 1)), 0, 255)
        add("noise", Image.fromarray(noisy.astype(np.uint8)),
            _per(("demote", "noisy", "low_quality"), ("demote", "noisy", "low_quality"),
                 ("reject", "noisy", "low_quality", "background_not_white")))
        add("jpeg-q3", good, _per(("demote", "compression_artifacts", "low_quality"),
                                  ("demote", "compression_artifacts", "low_quality"),
                                  ("demote", "compression_artifacts", "low_quality")), q=3)
        grey = Image.new("RGB", good.size, (128, 128, 128))
        add("low-contrast", Image.blend(good, grey, 0.96),
            _per(("reject", "low_contrast", "low_quality"), ("demote", "low_contrast", "low_quality"),
                 ("reject", "low_contrast", "low_quality", "background_not_white")))
        add("small-600", good.resize(_long_side(good.size, 600)),
            _per(("demote", "low_resolution"), ("accept",), ("demote", "low_resolution")))
        add("tiny-120", good.resize((120, 120)),
            _all("reject", "low_resolution") | {"main_image": Expect("reject", frozenset({"low_resolution"}))})
        wide = compose(obj, 1.0, size=(2400, 800))
        fill_wide = min(1.0, obj.width / obj.height * 800 / 2400) if obj.width / obj.height * 800 <= 2400 else 1.0
        main_wide = ("reject" if fill_wide < 0.4 else "demote", "bad_aspect_ratio", "low_resolution",  # 800 < 1000
                     *(("product_too_small",) if fill_wide < 0.85 else ()))
        add("wide-3to1", wide, _per(("demote", "bad_aspect_ratio"), ("accept",), main_wide))
        # Runs off the right edge; the part left in frame fills ~0.8 (< 0.85). Not for the astronaut: her
        # white helmet at the edge reads as white background. Generated once the contract has the code
        # (and main_image a product_cropped limit): until then no rule can emit it.
        if CROPPED_CODE is not None and name != "astronaut":
            add("cropped", compose(obj, 0.9, shift=(0.15, 0.0)),
                _per(("accept",), ("accept",), ("demote", "product_cropped", "product_too_small")))
    good = compose(cutouts()["flower"], 0.9)
    cases.append(Case("decode/truncated.jpg", _jpeg(good)[:600], _all("reject", "unreadable")))
    cases.append(Case("decode/document.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", _all("reject", "unsupported_format")))
    cases.append(Case("decode/bomb.png", _png_header(20000, 20000), _all("reject", "too_large")))
    cases.append(Case("decode/missing.jpg", None, _all("reject", "fetch_failed")))
    return cases


@dataclass
class Result:
    case: Case
    profile: str
    decision: str
    codes: frozenset[str]
    signals: dict[str, float]


def run(cases: list[Case], predictor, policy, batch_size: int = 16) -> list[Result]:
    """Every case through the worker's decode -> model -> policy, judged under every profile (role main)."""
    from consumer.decode import DecodeError, DecodeLimits, decode
    from consumer.events import ReasonCode
    from consumer.work import merge_signals

    out: list[Result] = []
    pending: list[tuple[Case, object]] = []

    def flush() -> None:
        if not pending:
            return
        outputs = predictor.predict(np.stack([d.tensor for _, d in pending]))
        for i, (case, d) in enumerate(pending):
            signals = merge_signals(d.signals, outputs, i)
            for p in PROFILES:
                v = policy.judge(signals, p, "main")
                out.append(Result(case, p, v.decision.value, frozenset(r.code.value for r in v.reasons), signals))
        pending.clear()

    for case in cases:
        try:
            if case.data is None:
                raise DecodeError("image not found at its URL (HTTP 404)", ReasonCode.FETCH_FAILED)
            pending.append((case, decode(case.data, predictor.preprocess, predictor.input_size, DecodeLimits(),
                                          full_resolution=predictor.needs_full_resolution)))
        except DecodeError as e:
            for p in PROFILES:
                v = policy.reject(p, e.code, str(e))
                out.append(Result(case, p, v.decision.value, frozenset(r.code.value for r in v.reasons), {}))
        if len(pending) >= batch_size:
            flush()
    flush()
    return out


def confusion(results: list[Result], profile: str) -> str:
    labels = ("accept", "demote", "reject")
    n = Counter((r.case.expect[profile].decision, r.decision) for r in results if r.profile == profile)
    rows = [f"| expected \\ produced ({profile}) | " + " | ".join(labels) + " | agreement |", "|---|---|---|---|---|"]
    for e in labels:
        total = sum(n[(e, p)] for p in labels)
        rows.append(f"| {e} | " + " | ".join(str(n[(e, p)]) for p in labels) + f" | {n[(e, e)]}/{total} |")
    return "\n".join(rows)


def per_reason(results: list[Result]) -> tuple[str, list[str]]:
    """Markdown table of precision/recall per code over (image, profile) pairs, and codes never produced."""
    from consumer.events import ReasonCode

    rows = ["| reason code | expected | produced | both | precision | recall |", "|---|---|---|---|---|---|"]
    never = []
    for code in (c.value for c in ReasonCode):
        exp = sum(code in r.case.expect[r.profile].codes for r in results)
        got = sum(code in r.codes for r in results)
        tp = sum(code in r.codes and code in r.case.expect[r.profile].codes for r in results)
        if got == 0:
            never.append(code)
        prec = f"{tp / got:.2f}" if got else "-"
        rec = f"{tp / exp:.2f}" if exp else "-"
        rows.append(f"| `{code}` | {exp} | {got} | {tp} | {prec} | {rec} |")
    return "\n".join(rows), never


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate decode -> model -> policy on generated product photos.")
    ap.add_argument("--weights", type=Path, default=None, help="model file (default: shipped weights)")
    ap.add_argument("--policy-file", type=Path, default=None, help="policy file (default: the bundled one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--write", type=Path, help="also write the images here (for `imagegate score DIR --report`)")
    ap.add_argument("--mismatches", action="store_true", help="list every (image, profile) whose decision or reasons differ")
    args = ap.parse_args(argv)

    from consumer.config import DEFAULT_POLICY_FILE
    from consumer.policy import Policy

    from model.predictor import load

    predictor = load(args.weights, args.device)
    policy = Policy.from_file(args.policy_file or DEFAULT_POLICY_FILE)
    policy.check_model(predictor.heads)
    cases = build()
    if args.write:
        for c in cases:
            if c.data is not None:
                p = args.write / c.name.replace("/", "__")
                p = p if p.suffix else p.with_suffix(".jpg")
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(c.data)
    results = run(cases, predictor, policy)
    print(f"# Product-photo evaluation: {len(cases)} images x {len(PROFILES)} profiles, model {predictor.name} "
          f"{predictor.version}, policy {policy.version}\n")
    for p in PROFILES:
        print(confusion(results, p) + "\n")
    table, never = per_reason(results)
    print(table)
    print("\nreason codes never produced: " + (", ".join(never) if never else "none"))
    exact = sum(r.decision == r.case.expect[r.profile].decision for r in results)
    print(f"decisions as expected: {exact}/{len(results)}")
    if args.mismatches:
        print("\n| image | profile | expected | produced |\n|---|---|---|---|")
        for r in results:
            e = r.case.expect[r.profile]
            if r.decision != e.decision or r.codes != e.codes:
                print(f"| {r.case.name} | {r.profile} | {e.decision} {sorted(e.codes)} | {r.decision} {sorted(r.codes)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
