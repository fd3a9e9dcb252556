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

from .distortions import DISTORTIONS, LEVELS, apply, head_labels

CROP = 512
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
    for d in sorted(glob.glob("/usr/share/wallpapers/*/contents/images")):
        if d.split("/")[4] not in _PLASMA_PHOTOS:
            continue
        best = None
        for f in sorted(glob.glob(f"{d}/*")):
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
    for f in sorted(glob.glob("/usr/share/backgrounds/mate/*/*")):
        if f.split("/")[-2] not in _MATE_PHOTO_DIRS:
            continue
        stem = os.path.basename(f).split("_")[0].split(".")[0]
        if stem in seen or "Transparent" in f:
            continue
        seen.add(stem)
        out.append(Source("mate-backgrounds", v, f, "GPL-2+"))
    lic = _lomiri_licences()
    for f in sorted(glob.glob("/usr/share/backgrounds/*.jpg")):
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
        if os.path.exists(f):
            out.append(Source("opencv-doc", v, f, "Apache-2.0 AND BSD-3-Clause (package copyright)"))

    def test_by_hash(s: Source) -> Source:
        h = int(hashlib.sha1(os.path.basename(s.file).encode()).hexdigest(), 16)
        return Source(s.package, s.version, s.file, s.licence, "test" if h % 5 == 0 else "train")

    out = [test_by_hash(s) for s in out if os.path.exists(s.file)]
    import skimage
    import sklearn

    out += [Source("scikit-image", skimage.__version__, f"skimage.data.{k}", lic, "test") for k, lic in _SKIMAGE.items()]
    out += [Source("scikit-learn", sklearn.__version__, f"sklearn.datasets.load_sample_image('{k}')", lic, "test")
            for k, lic in _SKLEARN.items()]
    return tuple(out)


def load_source(s: Source) -> Image.Image:
    if s.package == "scikit-image":
        import skimage.data

        return Image.fromarray(getattr(skimage.data, s.file.rsplit(".", 1)[1])()).convert("RGB")
    if s.package == "scikit-learn":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(s.file.split("'")[1])).convert("RGB")
    img = Image.open(s.file)
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

    @property
    def level(self) -> int:
        """Severity grade used as synthetic quality target (0 = clean)."""
        return max((lv for _, lv in self.steps), default=0)

    @property
    def key(self) -> str:
        if self.path:
            return f"biq:{os.path.basename(self.path)}:{self.steps}:{self.seed}"
        return f"{self.source}:{self.steps}:{self.seed}" + (f":v{self.view}" if self.view else "")


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
    idx = np.asarray(sorted(int(i) for i in train_idx))
    med = float(np.median(mos[idx]))
    names = list(DISTORTIONS)
    items: list[Item] = []
    for i in idx:
        if mos[i] < med:
            continue
        with Image.open(paths[i]) as im:
            if im.size != (CROP, CROP):
                continue
        src, path = BIQ_SOURCE_BASE + int(i), str(paths[i])
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


class CropBank:
    """Clean 512x512 crops, decoded once per source (wallpapers are large)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._crops: dict[tuple[int, int], Image.Image] = {}

    def crop(self, idx: int, view: int = 0) -> Image.Image:
        if (idx, view) not in self._crops:
            s = sources()[idx]
            rng = np.random.default_rng([self.seed, idx] + ([view] if view else []))
            self._crops[(idx, view)] = clean_crop(load_source(s), rng, jitter=s.split == "train", zoom=view > 0)
        return self._crops[(idx, view)]

    def render(self, item: Item) -> Image.Image:
        if item.path:  # BIQ photo: distorted as published (512 x 512), not cached (used once)
            with Image.open(item.path) as im:
                return apply(im.convert("RGB"), item.steps, item.seed)
        return apply(self.crop(item.source, item.view), item.steps, item.seed)


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
