"""Tests of jaxdd.trust.gmm: parameter recovery, masking, ordering, degenerate groups."""

import jax
import numpy as np

from jaxdd.trust.gmm import GMM, fit_gmm, log_likelihood, posterior

# Every test goes through these, so that each shape compiles once per session.
FIT = jax.jit(fit_gmm, static_argnames=("iterations", "reg"))
POSTERIOR = jax.jit(posterior)
LOG_LIKELIHOOD = jax.jit(log_likelihood)
KNOWN = dict(n=4000, weight0=0.6, means=(0.2, 0.7), stds=(0.05, 0.1))
# A start with the high-mean component first: EM keeps that order, so only the
# final sort can make component 0 the low one.
SWAPPED = GMM(
    weights=np.array([[0.5, 0.5]], np.float32),
    means=np.array([[0.8, 0.1]], np.float32),
    variances=np.array([[0.01, 0.01]], np.float32),
)


def _mixture(n, weight0, means, stds, seed):
    rng = np.random.default_rng(seed)
    first = rng.random(n) < weight0
    values = np.where(first, rng.normal(means[0], stds[0], n), rng.normal(means[1], stds[1], n))
    return values.astype(np.float32)


def test_em_recovers_a_known_mixture():
    values = _mixture(**KNOWN, seed=0)
    gmm = FIT(values[None], np.ones((1, 4000), bool))
    np.testing.assert_allclose(gmm.weights[0], [0.6, 0.4], rtol=0.03)
    np.testing.assert_allclose(gmm.means[0], [0.2, 0.7], rtol=0.03)
    np.testing.assert_allclose(np.sqrt(gmm.variances[0]), [0.05, 0.1], rtol=0.05)


def test_groups_are_fitted_independently_and_padding_is_ignored():
    specs = [KNOWN, dict(n=1800, weight0=0.3, means=(1.0, 3.0), stds=(0.3, 0.5))]
    specs.append(dict(n=700, weight0=0.5, means=(-2.0, 2.0), stds=(1.0, 1.0)))
    counts = [spec["n"] for spec in specs]
    padded = np.full((3, 4000), 1e6, np.float32)
    padded[1, 2500:] = np.nan
    padded[2, 2000:] = -np.inf
    mask = np.zeros((3, 4000), bool)
    for g, spec in enumerate(specs):
        padded[g, : spec["n"]] = _mixture(**spec, seed=g)
        mask[g, : spec["n"]] = True
    together = FIT(padded, mask)
    assert all(np.all(np.isfinite(p)) for p in together)
    for g, n in enumerate(counts):
        alone = FIT(padded[g : g + 1, :n], np.ones((1, n), bool))
        for got, want in zip(together, alone, strict=True):
            np.testing.assert_allclose(got[g], want[0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(together.means[1], [1.0, 3.0], rtol=0.05)
    np.testing.assert_allclose(together.means[2], [-2.0, 2.0], rtol=0.1)


def test_component_zero_is_the_low_mean_one_even_from_a_swapped_start():
    values = _mixture(**KNOWN, seed=1)[None]
    gmm = FIT(values, np.ones_like(values, bool), init=SWAPPED)
    np.testing.assert_allclose(gmm.means[0], [0.2, 0.7], rtol=0.03)
    np.testing.assert_allclose(gmm.weights[0], [0.6, 0.4], rtol=0.05)


def test_groups_with_fewer_than_two_values_are_finite():
    values = np.full((2, 500), np.inf, np.float32)
    values[:, :3] = [[np.nan, 5.0, 7.0], [3.0, np.nan, 9.0]]
    mask = np.zeros((2, 500), bool)
    mask[1, 0] = True
    gmm = FIT(values, mask)
    assert all(np.all(np.isfinite(p)) for p in gmm)
    np.testing.assert_array_equal(gmm.means, [[0.0, 0.0], [3.0, 3.0]])
    np.testing.assert_array_equal(gmm.weights, [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(gmm.variances, 1e-4)
    resp = POSTERIOR(gmm, np.where(mask, values, 0.0))
    assert np.all(np.isfinite(resp))
    assert np.all(np.isfinite(LOG_LIKELIHOOD(gmm, values, mask)))


def test_posteriors_sum_to_one_and_likelihood_matches_numpy():
    values = np.stack([_mixture(500, 0.5, (0, 1), (0.2, 0.3), seed=s) for s in (3, 4)])
    mask = np.ones_like(values, bool)
    mask[1, 400:] = False
    gmm = FIT(values, mask)
    resp = np.asarray(POSTERIOR(gmm, values))
    np.testing.assert_allclose(resp.sum(-1), 1.0, rtol=1e-6)
    w, m, v = (np.asarray(p, np.float64)[:, None, :] for p in gmm)
    density = w * np.exp(-0.5 * (values[..., None] - m) ** 2 / v) / np.sqrt(2 * np.pi * v)
    np.testing.assert_allclose(resp, density / density.sum(-1, keepdims=True), atol=1e-5)
    want = np.where(mask, np.log(density.sum(-1)), 0.0).sum(-1)
    np.testing.assert_allclose(LOG_LIKELIHOOD(gmm, values, mask), want, rtol=1e-4)


def test_every_em_step_does_not_decrease_the_likelihood():
    values = _mixture(**KNOWN, seed=5)[None]
    mask = np.ones_like(values, bool)
    gmm = SWAPPED
    lls = [float(LOG_LIKELIHOOD(gmm, values, mask)[0])]
    for _ in range(10):
        gmm = FIT(values, mask, iterations=1, init=gmm)
        lls.append(float(LOG_LIKELIHOOD(gmm, values, mask)[0]))
    assert np.all(np.diff(lls) > -1e-5 * abs(lls[0]))
    assert lls[-1] > lls[0] + 10.0
