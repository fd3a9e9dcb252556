"""Camera acquisition damage: each test checks one physical property the simulation must have."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from training import acquisition as acq
from training.distortions import DISTORTION_HEADS


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(np.asarray(data.astronaut())).convert("RGB")


def _flat(value: int, size: int = 256) -> Image.Image:
    return Image.new("RGB", (size, size), (value, value, value))


def _patch_std(img: Image.Image) -> float:
    """Std of the luma in the centre, away from any border effect."""
    a = np.asarray(img.convert("L"), np.float32)
    h, w = a.shape
    return float(a[h // 4: 3 * h // 4, w // 4: 3 * w // 4].std())


def _mean_over_seeds(fn, img: Image.Image, level: int, seeds=range(4)) -> float:
    return float(np.mean([_patch_std(fn(img, level, np.random.default_rng(s))) for s in seeds]))


def _textured(size: int = 320) -> Image.Image:
    rng = np.random.default_rng(123)
    a = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    a = cv2.resize(a, (size, size), interpolation=cv2.INTER_NEAREST)  # sharp-edged blocks
    return Image.fromarray(a, "RGB")


def _laplacian_var(img: Image.Image) -> float:
    g = np.asarray(img.convert("L"), np.float32)
    return float(cv2.Laplacian(g, cv2.CV_32F)[10:-10, 10:-10].var())


def test_sensor_noise_variance_grows_with_level():
    grey = _flat(128)
    stds = [_mean_over_seeds(acq.sensor_noise, grey, lv) for lv in acq.LEVELS]
    assert all(a < b for a, b in zip(stds, stds[1:])), stds
    assert stds[0] > 0.3  # level 1 is visible at 100 %, not a no-op


def test_sensor_noise_is_signal_dependent():
    # shot noise dominates at these levels: a mid-grey patch collects more
    # photons, hence more absolute noise in raw, than a dark one
    dark = _mean_over_seeds(lambda im, lv, r: acq.camera_pipeline(im, r, *acq.noise_params(lv, r), finish=False),
                            _flat(20), 3)
    mid = _mean_over_seeds(lambda im, lv, r: acq.camera_pipeline(im, r, *acq.noise_params(lv, r), finish=False),
                           _flat(128), 3)
    assert mid > dark * 1.2, (dark, mid)


def test_round_trip_without_noise_is_identity_on_flat_colours():
    # flat patches: demosaicing is exact, so only the inverse pipeline can fail
    for colour in ((120, 100, 90), (30, 60, 200), (10, 10, 10), (200, 180, 150)):
        img = Image.new("RGB", (64, 48), colour)
        out = acq.camera_pipeline(img, np.random.default_rng(7), 0.0, 0.0, finish=False)
        err = np.abs(np.asarray(out, np.float32) - np.asarray(img, np.float32))
        assert err.max() <= 1.0, (colour, err.max())


def test_round_trip_without_noise_is_close_on_a_photo(photo):
    out = acq.camera_pipeline(photo, np.random.default_rng(3), 0.0, 0.0, finish=False)
    err = np.abs(np.asarray(out, np.float32) - np.asarray(photo, np.float32))
    assert np.median(err) <= 2.0  # only demosaicing at edges and highlight clipping differ
    assert err.mean() < 6.0


def test_shake_psf_is_normalised_and_extent_grows_with_level():
    extents = []
    for lv in acq.LEVELS:
        k = acq.shake_psf(lv, np.random.default_rng(lv))
        assert k.min() >= 0
        assert abs(float(k.sum()) - 1.0) < 1e-5
        ys, xs = np.nonzero(k > 1e-6)
        extents.append(max(ys.max() - ys.min(), xs.max() - xs.min()))
    assert all(a < b for a, b in zip(extents, extents[1:])), extents
    assert 3 <= extents[0] <= 7 and 28 <= extents[-1] <= 38, extents


def test_shake_trajectory_is_not_a_straight_line():
    pts = acq.shake_trajectory(32.0, np.random.default_rng(5))
    chord = np.linalg.norm(pts[-1] - pts[0])
    path = np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()
    assert path > chord * 1.05  # a random walk with inertia, not a linear motion blur


def test_camera_shake_blurs_more_with_level():
    img = _textured()
    lap = [_laplacian_var(acq.camera_shake(img, lv, np.random.default_rng(0))) for lv in acq.LEVELS]
    assert lap[0] < _laplacian_var(img)
    assert all(a > b for a, b in zip(lap, lap[1:])), lap


def test_defocus_psf_is_a_normalised_disc_growing_with_level():
    radii = []
    for lv in acq.LEVELS:
        k = acq.defocus_psf(lv, np.random.default_rng(0))
        assert k.min() >= 0 and abs(float(k.sum()) - 1.0) < 1e-5
        c = k.shape[0] // 2
        assert np.allclose(k, k.T) and np.allclose(k, k[::-1])  # round
        radii.append(int((k[c] > 0).sum()))
    assert all(a < b for a, b in zip(radii, radii[1:])), radii


def test_defocus_blurs_more_with_level():
    img = _textured()
    lap = [_laplacian_var(acq.defocus(img, lv, np.random.default_rng(0))) for lv in acq.LEVELS]
    assert all(a > b for a, b in zip(lap, lap[1:])), lap


def test_blur_is_in_linear_light():
    # a half-black/half-white edge blurred in linear light has a midpoint
    # brighter than 50 % grey (gamma-encoded average of 0 and 1 linear)
    a = np.zeros((64, 64, 3), np.uint8)
    a[:, 32:] = 255
    out = np.asarray(acq._convolve_linear(Image.fromarray(a), acq.disc_psf(6.0)), np.float32)
    assert out[32, 31:33].mean() > 160


def test_dim_light_noise_grows_with_level():
    grey = _flat(100)
    stds = [_mean_over_seeds(acq.dim_light, grey, lv) for lv in acq.LEVELS]
    assert all(a < b for a, b in zip(stds, stds[1:])), stds


def test_dim_light_is_the_sensor_at_a_higher_gain():
    # less light + gain g must look like the same sensor with shot * g and
    # read * g^2 (the documented model: read noise grows fastest in the dark)
    img, shot, read, g = _flat(60), 4e-4, 2e-6, 16.0
    dim = _mean_over_seeds(lambda im, lv, r: acq.camera_pipeline(im, r, shot, read, exposure=1 / g, finish=False),
                           img, 1, seeds=range(6))
    iso = _mean_over_seeds(lambda im, lv, r: acq.camera_pipeline(im, r, shot * g, read * g * g, finish=False),
                           img, 1, seeds=range(6))
    base = _mean_over_seeds(lambda im, lv, r: acq.camera_pipeline(im, r, shot, read, finish=False),
                            img, 1, seeds=range(6))
    assert dim > 2.5 * base, (base, dim)
    assert abs(dim - iso) < 0.15 * iso, (dim, iso)


@pytest.mark.parametrize("name", sorted(acq.ACQUISITION))
def test_deterministic_per_seed(name, photo):
    small = photo.resize((200, 160))

    def png(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()

    a = png(acq.apply(small, [(name, 2)], seed=11))
    b = png(acq.apply(small, [(name, 2)], seed=11))
    c = png(acq.apply(small, [(name, 2)], seed=12))
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", sorted(acq.ACQUISITION))
@pytest.mark.parametrize("size", [(301, 199), (300, 200), (33, 3)])
def test_shape_and_mode_preserved_for_odd_sizes(name, size, photo):
    img = photo.resize(size)
    out = acq.ACQUISITION[name](img, 3, np.random.default_rng(0))
    assert out.mode == "RGB" and out.size == size


def test_apply_chains_steps_in_order(photo):
    small = photo.resize((160, 120))
    out = acq.apply(small, [("defocus", 1), ("sensor_noise", 1)], seed=0)
    assert out.size == small.size and out.mode == "RGB"
    assert out.tobytes() != acq.apply(small, [("sensor_noise", 1), ("defocus", 1)], seed=0).tobytes()


def test_heads_match_registry():
    assert set(acq.HEAD_OF) == set(acq.ACQUISITION) == {"sensor_noise", "camera_shake", "defocus", "dim_light"}
    assert all(h in DISTORTION_HEADS for h in acq.HEAD_OF.values())
