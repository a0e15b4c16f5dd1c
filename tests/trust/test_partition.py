"""Tests of jaxdd.trust.partition: separation, scale invariance, one compile, the baseline."""

from functools import partial

import jax
import numpy as np
import pytest

from jaxdd.errors import ConfigError
from jaxdd.trust.partition import (
    make_partition,
    normalise_per_class,
    partition,
    per_class_table,
    small_loss_selection,
    threshold_schedule,
)

NUM_CLASSES = 4
# (losses shape, num_classes, max_class_size) of every trace of the jitted
# partition below: a Python side effect runs only while tracing.
TRACES = []


def _traced_partition(losses, labels, tau, *, num_classes, max_class_size):
    TRACES.append((losses.shape, num_classes, max_class_size))
    return partition(losses, labels, num_classes, tau, max_class_size=max_class_size)


PARTITION = jax.jit(_traced_partition, static_argnames=("num_classes", "max_class_size"))
NORMALISE = jax.jit(normalise_per_class, static_argnames="num_classes")
SELECT = jax.jit(small_loss_selection, static_argnames="num_classes")


def _noisy_losses(seed, sizes=(300, 250, 200, 150), scales=(1.0, 3.0, 0.01, 10.0)):
    """Per-class losses: 70% clean (half-normal, low), 30% noisy (high), per-class scale."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    clean = rng.random(labels.size) >= 0.3
    losses = np.where(clean, np.abs(rng.normal(0, 0.3, labels.size)), rng.normal(2.5, 0.5))
    losses = np.abs(losses) * np.asarray(scales)[labels]
    return losses.astype(np.float32), labels.astype(np.int32), clean


def _auc(scores, positive):
    ranks = np.argsort(np.argsort(scores)) + 1.0
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def test_trust_scores_separate_clean_from_noisy_samples():
    losses, labels, clean = _noisy_losses(seed=0)
    trusted, scores = PARTITION(
        losses, labels, np.float32(0.5), num_classes=NUM_CLASSES, max_class_size=300
    )
    trusted, scores = np.asarray(trusted), np.asarray(scores)
    assert _auc(scores, clean) > 0.95
    assert clean[trusted].mean() > 0.95
    assert trusted[clean].mean() > 0.8
    best = np.array([scores[labels == c].max() for c in range(NUM_CLASSES)])[labels]
    np.testing.assert_array_equal(trusted, (scores > 0.5) | (scores >= best))
    for c in range(NUM_CLASSES):
        assert _auc(scores[labels == c], clean[labels == c]) > 0.95


def test_per_class_normalisation_makes_the_loss_scale_irrelevant():
    base, _, _ = _noisy_losses(seed=1, sizes=(200,), scales=(1.0,))
    losses = np.concatenate([base, 0.01 * base, 10.0 * base + 3.0])
    labels = np.repeat(np.arange(3), 200).astype(np.int32)
    normalised = np.asarray(NORMALISE(losses, labels, num_classes=3)).reshape(3, 200)
    np.testing.assert_allclose(normalised.min(1), 0.0)
    np.testing.assert_allclose(normalised.max(1), 1.0)
    np.testing.assert_allclose(normalised, np.broadcast_to(normalised[0], (3, 200)), atol=1e-5)
    _, scores = PARTITION(losses, labels, np.float32(0.5), num_classes=3, max_class_size=200)
    scores = np.asarray(scores).reshape(3, 200)
    np.testing.assert_allclose(scores[1:], np.broadcast_to(scores[0], (2, 200)), atol=1e-4)
    constant = NORMALISE(np.full(4, 7.0, np.float32), np.zeros(4, np.int32), num_classes=3)
    np.testing.assert_array_equal(constant, 0.0)


def test_partition_compiles_once_and_runs_without_host_transfers():
    losses, labels, _ = _noisy_losses(seed=0)
    key = (losses.shape, NUM_CLASSES, 300)
    jaxpr = jax.make_jaxpr(lambda x, y, t: partition(x, y, NUM_CLASSES, t, max_class_size=300))(
        losses, labels, 0.5
    )
    assert "callback" not in str(jaxpr)
    fn = partial(PARTITION, num_classes=NUM_CLASSES, max_class_size=300)
    device_labels = jax.device_put(labels)
    inputs = [
        (jax.device_put(losses * scale), jax.device_put(np.float32(tau)))
        for scale, tau in ((1.0, 0.5), (2.0, 0.7), (0.5, 0.9))
    ]
    results = []
    with jax.transfer_guard("disallow"):
        for device_losses, tau in inputs:
            results.append(fn(device_losses, device_labels, tau))
    assert TRACES.count(key) == 1
    for (trusted, scores), tau in zip(results, (0.5, 0.7, 0.9), strict=True):
        np.testing.assert_array_equal(trusted, np.asarray(scores) > tau)
    counts = [int(np.sum(trusted)) for trusted, _ in results]
    assert counts[0] >= counts[1] >= counts[2] > 0
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-5)


def test_make_partition_matches_partition_on_device():
    losses, labels, _ = _noisy_losses(seed=2)
    fixed = make_partition(labels, NUM_CLASSES)
    device_losses, tau = jax.device_put(losses), jax.device_put(np.float32(0.6))
    fixed(device_losses, tau)
    with jax.transfer_guard("disallow"):
        trusted, scores = fixed(device_losses, tau)
    want_trusted, want_scores = PARTITION(
        losses, labels, np.float32(0.6), num_classes=NUM_CLASSES, max_class_size=300
    )
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    np.testing.assert_array_equal(trusted, want_trusted)


def test_per_class_table_lists_each_class_in_index_order():
    labels = np.array([2, 0, 2, 2, 0, 3, 2], np.int32)
    index, mask = per_class_table(labels, 5)
    assert index.shape == mask.shape == (5, 4)
    assert index.dtype == np.int32
    for c in range(5):
        members = np.flatnonzero(labels == c)
        np.testing.assert_array_equal(index[c][mask[c]], members)
        assert mask[c].sum() == members.size
        assert np.all(mask[c][: members.size])
    np.testing.assert_array_equal(index[~mask], 0)


def test_threshold_schedule_moves_linearly_from_start_to_end():
    assert threshold_schedule(0, 5) == pytest.approx(0.9)
    assert threshold_schedule(2, 5) == pytest.approx(0.7)
    assert threshold_schedule(4, 5) == pytest.approx(0.5)
    assert threshold_schedule(0, 1) == pytest.approx(0.9)
    assert threshold_schedule(3, 4, tau_start=0.8, tau_end=0.6) == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="round_k"):
        threshold_schedule(5, 5)


@pytest.mark.parametrize(
    ("keep_ratio", "sizes", "expected"),
    [(0.3, [7, 10, 13, 6], [2, 3, 4, 2]), (0.5, [7, 10, 13, 5], [4, 5, 7, 3])],
)
def test_small_loss_selection_keeps_the_rounded_fraction_of_smallest_losses(
    keep_ratio, sizes, expected
):
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat(np.arange(4), sizes)).astype(np.int32)
    losses = rng.exponential(size=labels.size).astype(np.float32)
    kept = np.asarray(SELECT(losses, labels, num_classes=4, keep_ratio=keep_ratio))
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=4), expected)
    for c in range(4):
        in_class = labels == c
        assert losses[in_class & kept].max() < losses[in_class & ~kept].min()


def test_a_class_with_one_signal_value_is_trusted_whole_and_leaves_the_others_alone():
    losses, labels, _ = _noisy_losses(seed=3, sizes=(300, 250), scales=(1.0, 2.0))
    # A third class on which every referee agrees with every label: one value.
    all_losses = np.concatenate([losses, np.zeros(120, np.float32)])
    all_labels = np.concatenate([labels, np.full(120, 2, np.int32)])
    trusted, scores = PARTITION(
        all_losses, all_labels, np.float32(0.9), num_classes=3, max_class_size=300
    )
    trusted, scores = np.asarray(trusted), np.asarray(scores)
    np.testing.assert_array_equal(scores[-120:], 1.0)
    assert trusted[-120:].all()
    alone_trusted, alone = PARTITION(
        losses, labels, np.float32(0.9), num_classes=3, max_class_size=300
    )
    np.testing.assert_allclose(scores[:-120], alone, atol=1e-6)
    np.testing.assert_array_equal(trusted[:-120], alone_trusted)
    # A single-sample class is constant too.
    one = PARTITION(
        np.float32([0.1, 0.9, 0.3]),
        np.int32([0, 0, 1]),
        np.float32(0.9),
        num_classes=2,
        max_class_size=2,
    )
    assert bool(one[0][2])


@pytest.mark.parametrize("seed", range(6))
def test_no_class_is_ever_dropped_whole(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 400).astype(np.int32)
    # Heavy-tailed, badly separated, with ties: mixtures that fit poorly.
    losses = np.round(rng.standard_cauchy(400) ** 2, 1).astype(np.float32)
    trusted, _ = PARTITION(losses, labels, np.float32(0.999), num_classes=5, max_class_size=400)
    trusted = np.asarray(trusted)
    for c in np.unique(labels):
        assert trusted[labels == c].any(), c


def _two_gaussians(n, weight, means, sd, seed):
    rng = np.random.default_rng(seed)
    low = rng.random(n) < weight
    return np.where(low, rng.normal(means[0], sd, n), rng.normal(means[1], sd, n)), low


def _predicted_fraction(tau, weight, means, sd):
    """P(posterior of the low component > τ) under the true two-Gaussian mixture."""
    from scipy.stats import norm

    grid = np.linspace(means[0] - 6 * sd, means[1] + 6 * sd, 200_001)
    low, high = weight * norm.pdf(grid, means[0], sd), (1 - weight) * norm.pdf(grid, means[1], sd)
    cut = grid[np.argmax(low / (low + high) < tau)]  # the posterior falls with the loss
    return weight * norm.cdf(cut, means[0], sd) + (1 - weight) * norm.cdf(cut, means[1], sd)


def test_tau_moves_the_predicted_fraction_on_a_known_mixture():
    weight, means, sd = 0.6, (1.0, 2.0), 0.3
    losses, _ = _two_gaussians(20_000, weight, means, sd, seed=0)
    losses = losses.astype(np.float32)
    labels = np.zeros(len(losses), np.int32)
    fractions = {}
    for tau in (0.9, 0.5):
        trusted, _ = PARTITION(
            losses, labels, np.float32(tau), num_classes=1, max_class_size=len(losses)
        )
        fractions[tau] = float(np.mean(np.asarray(trusted)))
        assert fractions[tau] == pytest.approx(
            _predicted_fraction(tau, weight, means, sd), abs=0.02
        )
    # Overlapping components: moving τ from 0.9 to 0.5 trusts over 5 % more of the data.
    assert fractions[0.5] - fractions[0.9] > 0.05
