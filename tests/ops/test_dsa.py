"""Tests of jaxdd.ops.dsa: each family's exact geometry/formula, gradients, Siamese draws.

Inputs and checks use numpy so that the only compilations are those of the
jitted functions under test, shared across tests through `JITTED`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxdd.errors import ConfigError
from jaxdd.ops import dsa as dsa_lib
from jaxdd.ops.dsa import FAMILIES, DSAConfig, choose_family, dsa, warp_affine

FAMILY_FNS = {name: getattr(dsa_lib, name) for name in FAMILIES}
# (shape, dtype, config) of every trace of the jitted dsa below: a Python side
# effect runs only while tracing, so this counts compilations.
DSA_TRACES = []


def _traced_dsa(x, *, key, config=dsa_lib.DEFAULT_CONFIG):
    DSA_TRACES.append((x.shape, x.dtype, config))
    return dsa(x, key=key, config=config)


JITTED = {
    name: jax.jit(fn, static_argnames="config")
    for name, fn in {**FAMILY_FNS, "dsa": _traced_dsa}.items()
}
WARP = jax.jit(warp_affine)
CHOOSE = jax.jit(jax.vmap(choose_family))
BATCH = (8, 10, 12, 3)
SMALL = (3, 10, 12, 3)


def _images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _key(seed):
    return jax.random.key(seed)


def _coordinate_images(n, h, w):
    """``[n, h, w, 3]``: channels are the row index, the column index and 1.

    Bilinear sampling reproduces a linear function exactly, so a warped
    coordinate image holds, wherever its third channel is 1, the source
    position each output pixel was read from.
    """
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    one = np.stack([rows, cols, np.ones_like(rows)], axis=-1).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(one, (n, h, w, 3)))


def _fit_affine(warped):
    """Least-squares ``src = M (dst - c) + t + c`` per sample; returns M, t, max residual."""
    warped = np.asarray(warped, np.float64)
    _, h, w, _ = warped.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    dst = np.stack([rows, cols], -1).reshape(-1, 2) - centre
    matrices, shifts, residual = [], [], 0.0
    for sample in warped:
        inside = np.abs(sample[..., 2].reshape(-1) - 1) < 1e-5
        assert inside.sum() > 20, "too few fully inside pixels to fit"
        design = np.concatenate([dst[inside], np.ones((inside.sum(), 1))], axis=1)
        target = sample[..., :2].reshape(-1, 2)[inside] - centre
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        residual = max(residual, np.abs(design @ coef - target).max())
        matrices.append(coef[:2].T)
        shifts.append(coef[2])
    return np.array(matrices), np.array(shifts), residual


def _shift(image, dy, dx):
    """``out[r, c] = image[r - dy, c - dx]``, zero where that is outside."""
    h, w, _ = image.shape
    out = np.zeros_like(image)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _is_flip_of(out, x):
    """Per sample: (equals x flipped along W, equals x)."""
    return np.all(out == x[:, :, ::-1], axis=(1, 2, 3)), np.all(out == x, axis=(1, 2, 3))


# ---------------------------------------------------------------- warp_affine


def test_warp_affine_identity_is_exact():
    x, n = _images(BATCH), BATCH[0]
    out = WARP(
        x, np.broadcast_to(np.eye(2, dtype=np.float32), (n, 2, 2)), np.zeros((n, 2), np.float32)
    )
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("size", [8, 9])
def test_warp_affine_quarter_turn_is_rot90(size):
    x = _images((2, size, size, 2))
    quarter = np.broadcast_to(np.array([[0.0, -1.0], [1.0, 0.0]], np.float32), (2, 2, 2))
    out = WARP(x, quarter, np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(out, np.rot90(x, k=-1, axes=(1, 2)))


def test_warp_affine_half_pixel_averages_neighbours_and_zero_pads():
    x, n = _images(BATCH), BATCH[0]
    identity = np.broadcast_to(np.eye(2, dtype=np.float32), (n, 2, 2))
    out = np.asarray(WARP(x, identity, np.array([[0.0, 0.5]] * n, np.float32)))
    np.testing.assert_allclose(out[:, :, :-1], (x[:, :, :-1] + x[:, :, 1:]) / 2, atol=1e-6)
    # The right neighbour of the last column lies outside: it counts as zero.
    np.testing.assert_allclose(out[:, :, -1], x[:, :, -1] / 2, atol=1e-6)


# ---------------------------------------------------------------- families


@pytest.mark.parametrize(
    "name, config",
    [
        ("scale", DSAConfig(ratio_scale=1.0)),
        ("rotate", DSAConfig(ratio_rotate=0.0)),
        ("crop", DSAConfig(ratio_crop_pad=0.0)),
    ],
)
def test_identity_parameters_give_identity(name, config):
    x = _images(BATCH)
    np.testing.assert_array_equal(JITTED[name](x, key=_key(3), config=config), x)
    moved = np.asarray(JITTED[name](x, key=_key(3)))
    assert np.abs(moved - x).max() > 0.1


def test_scale_is_per_sample_axis_scaling_about_the_centre():
    warped = JITTED["scale"](_coordinate_images(16, 12, 20), key=_key(1))
    matrices, shifts, residual = _fit_affine(warped)
    assert residual < 1e-4
    np.testing.assert_allclose(shifts, 0, atol=1e-4)
    np.testing.assert_allclose(matrices[:, [0, 1], [1, 0]], 0, atol=1e-5)
    factors = matrices[:, [0, 1], [0, 1]]
    assert factors.min() >= 1 / 1.2 - 1e-5 and factors.max() <= 1.2 + 1e-5
    assert factors.std(axis=0).min() > 0.05, "factors must be drawn per sample"
    assert np.abs(factors[:, 0] - factors[:, 1]).max() > 0.05, "and per axis"
    assert factors.min() < 0.95 and factors.max() > 1.1


def test_rotate_is_per_sample_rotation_about_the_centre():
    warped = JITTED["rotate"](_coordinate_images(16, 12, 20), key=_key(2))
    matrices, shifts, residual = _fit_affine(warped)
    assert residual < 1e-4
    np.testing.assert_allclose(shifts, 0, atol=1e-4)
    rad = np.arctan2(matrices[:, 1, 0], matrices[:, 0, 0])
    expected = np.stack([np.cos(rad), -np.sin(rad), np.sin(rad), np.cos(rad)], -1)
    np.testing.assert_allclose(matrices.reshape(-1, 4), expected, atol=1e-5)
    degrees = np.degrees(rad)
    assert np.abs(degrees).max() <= 15 + 1e-3
    assert degrees.min() < -5 and degrees.max() > 5 and np.unique(degrees.round(3)).size == 16


def test_crop_shifts_exactly_with_zeros_entering():
    # 12 x 24: pads int(0.125 * 12 + 0.5) = 2 rows and int(0.125 * 24 + 0.5) = 3 columns.
    x = _images((64, 12, 24, 2))
    out = np.asarray(JITTED["crop"](x, key=_key(4)))
    found = []
    for image, result in zip(x, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-3, 4)
            if np.array_equal(result, _shift(image, dy, dx))
        ]
        assert len(matches) == 1
        found.append(matches[0])
    dys, dxs = zip(*found, strict=True)
    assert set(dys) == set(range(-2, 3)) and set(dxs) == set(range(-3, 4))


def test_flip_is_exact_with_probability_half():
    x = _images((512, 4, 6, 1))
    flipped, kept = _is_flip_of(np.asarray(JITTED["flip"](x, key=_key(5))), x)
    assert np.all(flipped != kept)
    assert 0.42 < flipped.mean() < 0.58
    never = JITTED["flip"](x, key=_key(5), config=DSAConfig(prob_flip=0.0))
    np.testing.assert_array_equal(never, x)


@pytest.mark.parametrize("shape, side", [((10, 16), (5, 8)), ((9, 9), (5, 5))])
def test_cutout_zeroes_one_clipped_rectangle(shape, side):
    h, w = shape
    x = np.random.default_rng(0).uniform(1.0, 2.0, (96, h, w, 2)).astype(np.float32)
    out = np.asarray(JITTED["cutout"](x, key=_key(6)))
    hole = np.all(out == 0, axis=-1)
    np.testing.assert_array_equal(np.where(hole[..., None], 0, x), out)
    clipped = 0
    for mask in hole:
        np.testing.assert_array_equal(mask, np.outer(mask.any(1), mask.any(0)))
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        for idx, size, limit in ((rows, side[0], h), (cols, side[1], w)):
            assert idx.size and idx[-1] - idx[0] + 1 == idx.size
            at_border = idx[0] == 0 or idx[-1] == limit - 1
            assert idx.size == size or (at_border and math.ceil(size / 2) <= idx.size < size)
            clipped += idx.size < size
    assert 0 < clipped < 2 * len(hole)


def test_color_matches_brightness_saturation_contrast_formulas():
    # Composed, the three ops give y = cs (x - m_c) + c (m_c - g) + g + b, with
    # m_c the channel mean, g the image mean, b = u_b - 0.5, s = 2 u_s,
    # c = u_c + 0.5: recover (u_b, u_s, u_c) per sample by least squares.
    x = _images((32, 6, 5, 3))
    out = np.asarray(JITTED["color"](x, key=_key(7)), np.float64)
    draws = []
    for image, result in zip(x.astype(np.float64), out, strict=True):
        m_c = np.broadcast_to(image.mean(-1, keepdims=True), image.shape)
        g = image.mean()
        design = np.stack([image - m_c, m_c - g, np.ones_like(image)], -1).reshape(-1, 3)
        coef, *_ = np.linalg.lstsq(design, result.reshape(-1), rcond=None)
        assert np.abs(design @ coef - result.reshape(-1)).max() < 1e-5
        contrast = coef[1]
        draws.append((coef[2] - g + 0.5, coef[0] / contrast / 2, contrast - 0.5))
    draws = np.array(draws)
    assert draws.min() >= -1e-5 and draws.max() < 1 + 1e-5
    assert draws.std(axis=0).min() > 0.15, "u must be drawn per sample and per op"


# "dsa" runs with two families only: the switch's gradient is what it adds,
# and differentiating all six branches would triple this test's compile time.
@pytest.mark.parametrize("name", FAMILIES + ("dsa",))
def test_gradients_match_finite_differences(name):
    config = DSAConfig(families=("color", "rotate")) if name == "dsa" else DSAConfig()
    rng = np.random.default_rng(0)
    x, weights = rng.standard_normal((2, 3, 7, 9, 3))
    with jax.enable_x64(True):

        @jax.jit
        def loss(images):
            return jnp.sum(jnp.sin(JITTED[name](images, key=_key(8), config=config)) * weights)

        check_grads(loss, (jnp.asarray(x),), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", FAMILIES + ("dsa",))
def test_siamese_draws_depend_only_on_key_and_index(name):
    fn = JITTED[name]
    big = _images(BATCH, seed=1)
    small = big[: SMALL[0]]
    for seed in range(12 if name == "dsa" else 2):
        np.testing.assert_allclose(
            fn(big, key=_key(seed))[: SMALL[0]], fn(small, key=_key(seed)), atol=1e-6
        )
    other = np.asarray(fn(big, key=_key(100)))
    assert np.abs(np.asarray(fn(big, key=_key(101))) - other).max() > 0.1


def test_choose_family_is_uniform_and_dsa_dispatches_to_it():
    keys = jax.random.split(_key(9), 1200)
    indices, param_keys = CHOOSE(keys)
    counts = np.bincount(np.asarray(indices), minlength=6)
    assert counts.size == 6 and counts.min() > 150 and counts.max() < 250

    x = _images(BATCH)
    seen = set()
    for key, index, param_key in zip(keys[:30], indices[:30], param_keys[:30], strict=True):
        name = FAMILIES[int(index)]
        seen.add(name)
        expected = JITTED[name](x, key=param_key)
        np.testing.assert_allclose(JITTED["dsa"](x, key=key), expected, atol=1e-5)
    assert seen == set(FAMILIES)


def test_jit_traces_once_across_keys():
    x = _images(SMALL)
    outputs = [np.asarray(JITTED["dsa"](x, key=_key(seed))) for seed in range(10)]
    assert DSA_TRACES.count((SMALL, jnp.float32, DSAConfig())) == 1
    assert len({o.tobytes() for o in outputs}) > 5
    flip_only = DSAConfig(families=("flip",))
    for seed in range(3):
        JITTED["dsa"](x, key=_key(seed), config=DSAConfig(families=("flip",)))
    assert DSA_TRACES.count((SMALL, jnp.float32, flip_only)) == 1, "equal configs share a trace"


def test_restricted_families_and_config_validation():
    x = _images(BATCH)
    only_flip = DSAConfig(families=("flip",))
    for seed in range(4):
        out = np.asarray(JITTED["dsa"](x, key=_key(seed), config=only_flip))
        flipped, kept = _is_flip_of(out, x)
        assert np.all(flipped | kept)
    with pytest.raises(ConfigError, match="blur"):
        DSAConfig(families=("color", "blur"))
    with pytest.raises(ConfigError):
        DSAConfig(families=())


# dsa's own dtype follows from its branches': `lax.switch` rejects branches
# whose output types differ, so bfloat16 is checked on the families only.
@pytest.mark.parametrize(
    "name, dtype",
    [(n, jnp.float32) for n in FAMILIES + ("dsa",)] + [(n, jnp.bfloat16) for n in FAMILIES],
)
def test_shape_and_dtype_preserved_on_non_square_images(name, dtype):
    x = jnp.asarray(_images(SMALL), dtype)
    out = JITTED[name](x, key=_key(10))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.all(np.isfinite(np.asarray(out, np.float32)))
