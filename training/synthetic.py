"""Clean source photos from installed packages and the synthetic train/test sets.

Sources are files shipped by Debian packages and Python wheels (no download at
run time).  The TEST set is built from source images that are never used for
training: the scikit-image / scikit-learn samples plus a fixed hash-selected
~20 % of the package wallpapers.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from . import acquisition
from .distortions import DISTORTION_HEADS, DISTORTIONS, HEAD_OF, LEVELS

CROP = 512
HIRES_MIN_PIXELS = 2_000_000  # a "high-resolution" photo for the native-resolution evaluation
# Every damage either registry knows, and the detector head each one turns on.
ALL_DAMAGES = {**DISTORTIONS, **acquisition.ACQUISITION}
ALL_HEAD_OF = {**HEAD_OF, **acquisition.HEAD_OF}
ZOOM_MAX_SHORT = 768  # largest short side (px) an extra training view is resized to
MIXES = (("noise", "jpeg"), ("gaussian_blur", "noise"), ("underexposure", "noise"), ("downscale", "jpeg"),
         ("overlay", "jpeg"), ("overexposure", "low_contrast"), ("motion_blur", "noise"), ("overlay", "gaussian_blur"))

# Sources must be *photographs* of real scenes or objects (the product's domain).  The wallpaper
# packages also ship vector art, gradients, paintings, renders and even blank PNGs (MATE's Silk,
# Spring and Waves are pure white once their alpha is dropped): on those a "level 4 blur" changes
# nothing, so their grades are not ground truth.  Chosen by looking at every file; see the card.
_OPENCV_PHOTOS = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
                  "fruits.jpg", "graf1.png", "left.jpg", "leuvenA.jpg", "orange.jpg", "squirrel_cls.jpg",
                  "stuff.jpg", "chicky_512.png")  # not: Blender_Suzanne1 (render), pca_test1, starry_night
_PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                  "Kite", "OneStandsOut", "Path", "summer_1am")  # the other Plasma wallpapers are vector art
_MATE_PHOTO_DIRS = ("nature",)  # mate/abstract and mate/desktop are graphics
_LOMIRI_NOT_PHOTOS = ("Fossa_by_Jasper_Roks.jpg", "Infinite-Sea_by_Aury88.jpg",
                      "Painting-Colors_by__herobrine7gamer.jpg", "umang_by_Abhishek_Mudgal.jpg")
_SKIMAGE = {"astronaut": "public domain (NASA)", "coffee": "CC0 (Rachel Michetti)", "rocket": "public domain (NASA)"}
_SKLEARN = {"china.jpg": "CC-BY (author, per scikit-learn docs)", "flower.jpg": "CC-BY (author, per scikit-learn docs)"}


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    file: str
    licence: str
    split: str = field(default="train")


def source_root() -> str:
    """Prefix under which the packaged files are read (``IMAGEGATE_SOURCES_ROOT``; default: /).

    Why: a training machine without the Debian packages (a lent GPU host) reads a copy of the
    same files; the logical path, which keys every item and its seed, stays the same.
    """
    return os.environ.get("IMAGEGATE_SOURCES_ROOT", "").rstrip("/")


def _exists(path: str) -> bool:
    return os.path.exists(source_root() + path)


def _pixels(path: str) -> int:
    try:
        with Image.open(source_root() + path) as im:
            return im.size[0] * im.size[1]
    except OSError:
        return 0


def _deb_version(pkg: str) -> str:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _lomiri_licences() -> dict[str, str]:
    out: dict[str, str] = {}
    path = "/usr/share/doc/lomiri-wallpapers/copyright"
    if not os.path.exists(path):
        return out
    cur: list[str] = []
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("Files:"):
            cur = [os.path.basename(f) for f in line.split(":", 1)[1].split()]
        elif line.startswith("License:"):
            for f in cur:
                out[f] = line.split(":", 1)[1].strip()
    return out


def _pick_plasma() -> list[str]:
    """Per wallpaper, the smallest variant whose short side is >= 1000 px (fast to decode)."""
    files = []
    root = source_root()
    for d in sorted(x[len(root):] for x in glob.glob(root + "/usr/share/wallpapers/*/contents/images")):
        if d.split("/")[4] not in _PLASMA_PHOTOS:
            continue
        best = None
        for f in sorted(x[len(root):] for x in glob.glob(f"{root}{d}/*")):
            try:
                w, h = (int(v) for v in os.path.splitext(os.path.basename(f))[0].split("x"))
            except ValueError:
                continue
            if min(w, h) >= 1000 and w >= h and (best is None or w * h < best[0]):
                best = (w * h, f)
        if best:
            files.append(best[1])
    return files


@lru_cache(maxsize=1)
def sources() -> tuple[Source, ...]:
    """All clean sources with package, version, file, licence and fixed split."""
    out: list[Source] = []
    v = _deb_version("plasma-workspace-wallpapers")
    out += [Source("plasma-workspace-wallpapers", v, f, "GPL-2+") for f in _pick_plasma()]
    v = _deb_version("mate-backgrounds")
    seen = set()
    root = source_root()
    for f in sorted(x[len(root):] for x in glob.glob(root + "/usr/share/backgrounds/mate/*/*")):
        if f.split("/")[-2] not in _MATE_PHOTO_DIRS:
            continue
        stem = os.path.basename(f).split("_")[0].split(".")[0]
        if stem in seen or "Transparent" in f:
            continue
        seen.add(stem)
        out.append(Source("mate-backgrounds", v, f, "GPL-2+"))
    lic = _lomiri_licences()
    for f in sorted(x[len(root):] for x in glob.glob(root + "/usr/share/backgrounds/*.jpg")):
        if os.path.basename(f) in _LOMIRI_NOT_PHOTOS:
            continue
        pkg = "lomiri-wallpapers"
        for cand in ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "lomiri-wallpapers"):
            listing = f"/var/lib/dpkg/info/{cand}.list"
            if os.path.exists(listing) and f in open(listing).read():
                pkg = cand
                break
        out.append(Source(pkg, _deb_version(pkg), f, lic.get(os.path.basename(f), "see /usr/share/doc/lomiri-wallpapers/copyright")))
    v = _deb_version("opencv-doc")
    for n in _OPENCV_PHOTOS:
        f = f"/usr/share/doc/opencv-doc/examples/data/{n}"
        if _exists(f):
            out.append(Source("opencv-doc", v, f, "Apache-2.0 AND BSD-3-Clause (package copyright)"))

    def split_by_hash(s: Source) -> Source:
        # test: ~20 % of all photos (since v1). hires (since v2): another ~40 % of the photos of
        # at least 2 MP, held out of all training for the native-resolution evaluation.
        h = int(hashlib.sha1(os.path.basename(s.file).encode()).hexdigest(), 16)
        split = "test" if h % 5 == 0 else "hires" if h % 5 in (1, 2) and _pixels(s.file) >= HIRES_MIN_PIXELS else "train"
        return Source(s.package, s.version, s.file, s.licence, split)

    out = [split_by_hash(s) for s in out if _exists(s.file)]
    import skimage
    import sklearn

    out += [Source("scikit-image", skimage.__version__, f"skimage.data.{k}", lic, "test") for k, lic in _SKIMAGE.items()]
    out += [Source("scikit-learn", sklearn.__version__, f"sklearn.datasets.load_sample_image('{k}')", lic, "test")
            for k, lic in _SKLEARN.items()]
    return tuple(out)


def load_source(s: Source, full: bool = False) -> Image.Image:
    """The clean source photo; ``full``: at its native resolution (no DCT-scaled JPEG decode)."""
    if s.package == "scikit-image":
        import skimage.data

        return Image.fromarray(getattr(skimage.data, s.file.rsplit(".", 1)[1])()).convert("RGB")
    if s.package == "scikit-learn":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(s.file.split("'")[1])).convert("RGB")
    img = Image.open(source_root() + s.file)
    if not full:
        img.draft("RGB", (CROP * 2, CROP * 2))  # fast JPEG decode at reduced scale where possible
    return img.convert("RGB")


def clean_crop(img: Image.Image, rng: np.random.Generator, jitter: bool, zoom: bool = False) -> Image.Image:
    """Resize so the short side is 512..640 px (512 for test), then crop 512x512.

    ``zoom`` (extra training views): the short side is drawn from 512 to 768 px (never beyond
    the photo's own), so large photos also give other, slightly closer views of the scene.  Not
    closer than that: a tight crop of a shallow-depth-of-field photo can be all bokeh, which
    would enter training as a "clean" image.
    """
    w, h = img.size
    if zoom:
        short = int(rng.integers(CROP, max(CROP, min(w, h, ZOOM_MAX_SHORT)) + 1))
    else:
        short = int(rng.integers(CROP, 641)) if jitter else CROP
    s = short / min(w, h)
    img = img.resize((max(CROP, round(w * s)), max(CROP, round(h * s))), Image.BICUBIC)
    w, h = img.size
    x = int(rng.integers(0, w - CROP + 1)) if jitter else (w - CROP) // 2
    y = int(rng.integers(0, h - CROP + 1)) if jitter else (h - CROP) // 2
    return img.crop((x, y, x + CROP, y + CROP))


BIQ_SOURCE_BASE = 100_000  # Item.source for BIQ2021-sourced items: BIQ_SOURCE_BASE + image index


@dataclass
class Item:
    source: int  # index into sources(), or BIQ_SOURCE_BASE + BIQ2021 image index (distorted ones carry ``path``)
    steps: list[tuple[str, int]]
    seed: int
    path: str = ""
    view: int = 0  # which crop of a package photo (0 = the original one; see ``build_items``)
    native: bool = False  # damage applied to the whole photo at its native resolution (v2)

    @property
    def level(self) -> int:
        """Severity grade used as synthetic quality target (0 = clean)."""
        return max((lv for _, lv in self.steps), default=0)

    @property
    def key(self) -> str:
        if self.path:
            return f"biq:{os.path.basename(self.path)}:{self.steps}:{self.seed}"
        return (f"{self.source}:{self.steps}:{self.seed}" + (f":v{self.view}" if self.view else "")
                + (":native" if self.native else ""))


def build_items(split: str, seed: int = 0, view: int = 0) -> list[Item]:
    """Train: clean + every distortion at 2 random levels + 2 mixtures per source.
    Test: clean + every distortion at every level (single distortions only).

    ``view`` > 0 (training only): the same recipe on another crop of each training photo
    (``clean_crop`` with ``zoom``).  Why: the test photos are package photographs, and the 45
    training ones are the closest scenes to them; more views of each give the ranking loss
    more of that domain than a single crop.  Each view is cached on its own.
    """
    if view and split != "train":
        raise ValueError("extra views exist for the training split only")
    items: list[Item] = []
    for i, s in enumerate(sources()):
        if s.split != split:
            continue
        # One generator per source, keyed by its file: adding or removing a source leaves the
        # items (and cached features) of every other source unchanged.
        key = [seed, 0 if split == "train" else 1, zlib.crc32(s.file.encode())] + ([view] if view else [])
        rng = np.random.default_rng(key)
        items.append(Item(i, [], int(rng.integers(2**31)), view=view))
        for name in DISTORTIONS:
            levels = LEVELS if split == "test" else sorted(rng.choice(LEVELS, 2, replace=False).tolist())
            for lv in levels:
                items.append(Item(i, [(name, int(lv))], int(rng.integers(2**31)), view=view))
        if split == "train":
            for j in rng.choice(len(MIXES), 2, replace=False):
                a, b = MIXES[int(j)]
                items.append(Item(i, [(a, int(rng.integers(1, 5))), (b, int(rng.integers(1, 5)))],
                                  int(rng.integers(2**31)), view=view))
    return items


def biq_damage_sources(paths: list, mos: np.ndarray, train_idx: np.ndarray) -> list[int]:
    """BIQ2021 training photos that are damaged for the synthetic sets, in index order: those
    rated at or above the median training MOS (clean enough to be grade 0) and stored at
    512 x 512 (so the clean photo's encoding is exactly that of the image the damage is applied to)."""
    idx = sorted(int(i) for i in train_idx)
    med = float(np.median(mos[np.asarray(idx)]))
    out = []
    for i in idx:
        if mos[i] < med:
            continue
        with Image.open(paths[i]) as im:
            if im.size == (CROP, CROP):
                out.append(i)
    return out


def build_biq_items(paths: list, mos: np.ndarray, train_idx: np.ndarray, seed: int = 0, rnd: int = 0
                    ) -> list[Item]:
    """Distorted versions of BIQ2021 *training-split* photos (never validation ones).

    Why: a few dozen package photos are too few different scenes for a content-independent
    notion of damage; thousands of real photos are not.  Only photos rated at or above the
    median training MOS and stored at 512 x 512 (so the clean version's cached features are
    exactly those of the image the distortion is applied to) are used.  Round 0 gives each two
    distinct single distortions at random levels 1-4; every later round one more single
    distortion and one mixture of two (from ``MIXES``).  Rounds are separate so each is cached
    on its own.
    """
    rng = np.random.default_rng([seed, 2021, rnd])
    names = list(DISTORTIONS)
    items: list[Item] = []
    for i in biq_damage_sources(paths, mos, train_idx):
        src, path = BIQ_SOURCE_BASE + i, str(paths[i])
        if rnd == 0:
            for j in rng.choice(len(names), 2, replace=False):
                items.append(Item(src, [(names[int(j)], int(rng.integers(1, 5)))], int(rng.integers(2**31)), path))
        else:
            items.append(Item(src, [(names[int(rng.integers(len(names)))], int(rng.integers(1, 5)))],
                              int(rng.integers(2**31)), path))
            a, b = MIXES[int(rng.integers(len(MIXES)))]
            items.append(Item(src, [(a, int(rng.integers(1, 5))), (b, int(rng.integers(1, 5)))],
                              int(rng.integers(2**31)), path))
    return items


ACQ_MIXES = (("sensor_noise", "jpeg"), ("camera_shake", "sensor_noise"), ("defocus", "sensor_noise"),
             ("dim_light", "camera_shake"), ("defocus", "jpeg"))


def build_acq_items(split: str, seed: int = 0, train_levels: int = 2) -> list[Item]:
    """Camera-made damage (``training.acquisition``) on whole package photos at native resolution.

    train: per training photo the clean photo, every acquisition damage at ``train_levels``
    random levels and one mixture. Evaluation splits ("test", "hires"): the clean photo and every damage at every
    level; "hires" keeps only photos of at least HIRES_MIN_PIXELS (the high-resolution table).
    Why native: the grade is what a shopper sees at 100 % zoom, and a 12 MP photo shrunk to
    512 px hides most of it; only the full-resolution view can see it.
    """
    items: list[Item] = []
    names = list(acquisition.ACQUISITION)
    for i, s in enumerate(sources()):
        if s.split != split and not (split == "hires" and s.split == "test"):
            continue
        if split == "hires" and (s.package in ("scikit-image", "scikit-learn") or _pixels(s.file) < HIRES_MIN_PIXELS):
            continue
        rng = np.random.default_rng([seed, 14, zlib.crc32(s.file.encode()), 0 if split == "train" else 1])
        items.append(Item(i, [], int(rng.integers(2**31)), native=True))
        for name in names:
            levels = sorted(rng.choice(LEVELS, train_levels, replace=False).tolist()) if split == "train" else LEVELS
            for lv in levels:
                items.append(Item(i, [(name, int(lv))], int(rng.integers(2**31)), native=True))
        if split == "train":
            a, b = ACQ_MIXES[int(rng.integers(len(ACQ_MIXES)))]
            items.append(Item(i, [(a, int(rng.integers(1, 5))), (b, int(rng.integers(1, 5)))],
                              int(rng.integers(2**31)), native=True))
    return items


def build_biq_acq_items(paths: list, mos: np.ndarray, train_idx: np.ndarray, seed: int = 0, rnd: int = 0
                        ) -> list[Item]:
    """One camera-made damage per BIQ2021 training photo per round (same photos as ``build_biq_items``).

    Why: thousands of scenes teach what sensor noise and shake look like apart from content; the
    photos are 512 px, so here the global and the detail view both see native pixels.
    """
    rng = np.random.default_rng([seed, 14, 2021, rnd])
    names = list(acquisition.ACQUISITION)
    items: list[Item] = []
    for i in biq_damage_sources(paths, mos, train_idx):
        items.append(Item(BIQ_SOURCE_BASE + i, [(names[int(rng.integers(len(names)))], int(rng.integers(1, 5)))],
                          int(rng.integers(2**31)), str(paths[i])))
    return items


def apply_steps(img: Image.Image, steps: list[tuple[str, int]], seed: int) -> Image.Image:
    """Apply ``[(damage, level), ...]`` in order with one seeded generator; damages from either
    registry (``distortions`` for the classic ones, ``acquisition`` for the camera-made ones)."""
    rng = np.random.default_rng(seed)
    out = img.convert("RGB")
    for name, level in steps:
        out = ALL_DAMAGES[name](out, level, rng)
    return out


def head_labels(steps: list[tuple[str, int]]) -> dict[str, int]:
    """0/1 label per distortion head for a list of applied steps (either registry)."""
    on = {ALL_HEAD_OF[name] for name, _ in steps}
    return {h: int(h in on) for h in DISTORTION_HEADS}


class CropBank:
    """Clean 512x512 crops, decoded once per source (wallpapers are large)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._crops: dict[tuple[int, int], Image.Image] = {}
        self._full: tuple[int, Image.Image] | None = None

    def crop(self, idx: int, view: int = 0) -> Image.Image:
        if (idx, view) not in self._crops:
            s = sources()[idx]
            rng = np.random.default_rng([self.seed, idx] + ([view] if view else []))
            self._crops[(idx, view)] = clean_crop(load_source(s), rng, jitter=s.split == "train", zoom=view > 0)
        return self._crops[(idx, view)]

    def full(self, idx: int) -> Image.Image:
        """The whole source photo at native resolution; only the last one is kept (they are large
        and items of one photo come together)."""
        if self._full is None or self._full[0] != idx:
            self._full = (idx, load_source(sources()[idx], full=True))
        return self._full[1]

    def render(self, item: Item) -> Image.Image:
        if item.path:  # BIQ photo: distorted as published (512 x 512), not cached (used once)
            with Image.open(item.path) as im:
                return apply_steps(im.convert("RGB"), item.steps, item.seed)
        if item.native:
            return apply_steps(self.full(item.source), item.steps, item.seed)
        return apply_steps(self.crop(item.source, item.view), item.steps, item.seed)


def labels(items: list[Item]) -> dict[str, np.ndarray]:
    """Per-head 0/1 arrays plus 'level' (synthetic severity) for a list of items."""
    rows = [head_labels(it.steps) for it in items]
    out = {h: np.array([r[h] for r in rows], np.int64) for h in rows[0]} if rows else {}
    out["level"] = np.array([it.level for it in items], np.int64)
    out["source"] = np.array([it.source for it in items], np.int64)
    return out


def manifest_markdown() -> str:
    """Markdown table of every clean source (package, version, file, licence, split) for the model card."""
    lines = ["| Package | Version | File | Licence | Split |", "|---|---|---|---|---|"]
    for s in sources():
        lines.append(f"| {s.package} | {s.version} | `{s.file}` | {s.licence} | {s.split} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(manifest_markdown())
