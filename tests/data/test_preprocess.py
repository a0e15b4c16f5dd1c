"""Tests of jaxdd.data.preprocess: normalisation and ZCA (docs/algorithms.md §0.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.data.preprocess import (
    ZCA,
    denormalize,
    fit_zca,
    normalize,
    pixel_space,
    zca_apply,
    zca_inverse,
)


def _correlated_images(n=600, shape=(4, 4, 2), seed=0):
    """``[n, *shape] float32`` with a strongly non-white, known-rank-full covariance."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    mixing = rng.normal(size=(d, d)) * np.logspace(0, -1.5, d)[None, :]
    flat = rng.normal(size=(n, d)) @ mixing.T + rng.normal(size=(d,))
    return flat.reshape(n, *shape).astype(np.float32)


def test_normalize_matches_formula_and_denormalize_inverts_it():
    x = np.arange(2 * 3 * 3 * 2, dtype=np.uint8).reshape(2, 3, 3, 2) * 7
    mean, std = np.array([0.2, 0.5], np.float32), np.array([0.25, 0.1], np.float32)
    out = normalize(x, mean, std)
    assert out.dtype == jnp.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, (x / 255.0 - mean) / std, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(denormalize(out, mean, std), x / 255.0, atol=1e-6)


def test_normalize_with_dataset_statistics_standardises_channels():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(500, 4, 4, 3), dtype=np.uint8)
    mean = x.reshape(-1, 3).mean(0) / 255.0
    std = x.reshape(-1, 3).std(0) / 255.0
    out = np.asarray(normalize(x, mean, std)).reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-4)


def test_fit_zca_matches_eigendecomposition_of_biased_covariance():
    x = _correlated_images()
    eps = 0.1
    zca = fit_zca(x, eps=eps)
    flat = x.reshape(len(x), -1).astype(np.float64)
    centred = flat - flat.mean(0)
    lam, u = np.linalg.eigh(centred.T @ centred / len(x))  # 1/N, mean removed
    np.testing.assert_allclose(zca.mean, flat.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zca.whiten, (u / np.sqrt(lam + eps)) @ u.T, atol=1e-5)
    np.testing.assert_allclose(zca.unwhiten, (u * np.sqrt(lam + eps)) @ u.T, atol=1e-5)
    np.testing.assert_allclose(zca.whiten, zca.whiten.T, atol=1e-6)
    np.testing.assert_allclose(zca.whiten @ zca.unwhiten, np.eye(flat.shape[1]), atol=1e-4)


def test_whitened_covariance_is_lambda_over_lambda_plus_eps():
    x = _correlated_images()
    eps = 0.1
    zca = fit_zca(x, eps=eps)
    white = np.asarray(zca_apply(zca, x), np.float64).reshape(len(x), -1)
    np.testing.assert_allclose(white.mean(0), 0.0, atol=1e-4)
    cov = white.T @ white / len(x)
    flat = x.reshape(len(x), -1).astype(np.float64)
    lam, u = np.linalg.eigh(np.cov(flat, rowvar=False, bias=True))
    np.testing.assert_allclose(cov, (u * (lam / (lam + eps))) @ u.T, atol=2e-4)
    # Along directions with eigenvalue >> eps the data is white (variance ~1).
    strong = lam > 100 * eps
    assert strong.sum() >= 5
    variances = np.einsum("di,de,ei->i", u[:, strong], cov, u[:, strong])
    np.testing.assert_allclose(variances, 1.0, atol=0.011)


def test_round_trip_and_jit():
    x = _correlated_images(n=300, shape=(3, 3, 3))
    zca = fit_zca(x)
    apply_jit = jax.jit(zca_apply)
    white = apply_jit(zca, x)
    assert white.shape == x.shape and white.dtype == jnp.float32
    np.testing.assert_allclose(white, zca_apply(zca, x), atol=1e-5)
    back = jax.jit(zca_inverse)(zca, white)
    np.testing.assert_allclose(back, x, atol=1e-4 * np.abs(x).max())


def test_rank_deficient_data_fits_finite_transform():
    # N < D: most eigenvalues are 0 (or round below it); eps keeps W finite.
    x = _correlated_images(n=10, shape=(4, 4, 3))
    zca = fit_zca(x, eps=0.1)
    assert isinstance(zca, ZCA)
    assert zca.whiten.shape == (48, 48) and zca.mean.shape == (48,)
    assert np.all(np.isfinite(zca.whiten)) and np.all(np.isfinite(zca.unwhiten))
    np.testing.assert_allclose(zca_inverse(zca, zca_apply(zca, x)), x, atol=1e-4)


@pytest.mark.parametrize("n", [1, 4097])
def test_covariance_blocks_do_not_change_result(n, monkeypatch):
    from jaxdd.data import preprocess

    x = _correlated_images(n=n, shape=(2, 2, 1), seed=3)
    whole = fit_zca(x)
    monkeypatch.setattr(preprocess, "_COV_BLOCK", 7)
    blocked = fit_zca(x)
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pixel_space_round_trip_with_and_without_zca():
    from jaxdd.data.preprocess import pixel_space

    x = np.random.default_rng(0).integers(0, 256, (64, 4, 4, 2), dtype=np.uint8)
    for zca in (False, True):
        space = pixel_space(x, zca=zca)
        encoded = space.encode(x)
        assert encoded.dtype == np.float32 and encoded.shape == x.shape
        np.testing.assert_allclose(space.decode(encoded), x / 255.0, atol=2e-4)
    plain = pixel_space(x, zca=False).encode(x)
    np.testing.assert_allclose(np.asarray(plain).reshape(-1, 2).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(plain).reshape(-1, 2).std(0), 1.0, atol=1e-4)


def test_zca_pixel_space_whitens_unit_pixels_as_the_references():
    # MTT/DATM: ToTensor() only (no Normalize) before kornia's ZCA, ε = 0.1.
    x = np.random.default_rng(3).integers(0, 256, (64, 4, 4, 2), dtype=np.uint8)
    space = pixel_space(x, zca=True)
    unit = x.astype(np.float32) / 255.0
    expected = fit_zca(unit, eps=0.1)
    np.testing.assert_allclose(space.zca.whiten, expected.whiten, atol=1e-5)
    np.testing.assert_allclose(space.encode(x), zca_apply(expected, unit), atol=1e-4)
    np.testing.assert_allclose(space.decode(space.encode(x)), unit, atol=1e-4)
    plain = pixel_space(x, zca=False)
    np.testing.assert_allclose(plain.mean, unit.reshape(-1, 2).mean(0), rtol=1e-5)
    assert plain.zca is None
