"""Tests of jaxdd.trust.recalibrate: recall on separated clusters, agreement, linear algebra."""

import jax
import numpy as np

from jaxdd.trust.recalibrate import (
    admit_recalls,
    class_anchors,
    cosine,
    estimate_transition,
    label_posterior,
    mahalanobis,
    recalibrate,
    shared_precision,
)

RECALIBRATE = jax.jit(recalibrate, static_argnames=("num_classes", "margin"))
PRECISION = jax.jit(shared_precision)
NUM_CLASSES, DIM, PER_CLASS = 5, 16, 120


def _clusters(seed=0, untrusted_fraction=0.3):
    """Separated Gaussian clusters with a shared anisotropic covariance.

    Returns features, clean labels, given labels (wrong on every untrusted
    sample), the trusted mask and confident referee probabilities that follow
    the clean label except on 15% of the samples, where they confidently name
    another class.
    """
    rng = np.random.default_rng(seed)
    clean = np.repeat(np.arange(NUM_CLASSES), PER_CLASS)
    centres = 3.0 * rng.normal(size=(NUM_CLASSES, DIM))
    mixing = rng.normal(size=(DIM, DIM)) / np.sqrt(DIM)
    features = centres[clean] + rng.normal(size=(clean.size, DIM)) @ mixing + 2.0
    trusted = rng.random(clean.size) >= untrusted_fraction
    shift = rng.integers(1, NUM_CLASSES, clean.size)
    given = np.where(trusted, clean, (clean + shift) % NUM_CLASSES)
    referee_wrong = rng.random(clean.size) < 0.15
    shift = rng.integers(1, NUM_CLASSES, clean.size)
    referee = np.where(referee_wrong, (clean + shift) % NUM_CLASSES, clean)
    logits = 5.0 * np.eye(NUM_CLASSES)[referee] + 0.3 * rng.normal(size=(clean.size, NUM_CLASSES))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return (
        features.astype(np.float32),
        clean,
        given.astype(np.int32),
        trusted,
        probs.astype(np.float32),
    )


def test_recalled_samples_get_their_true_class():
    features, clean, given, trusted, probs = _clusters()
    out = RECALIBRATE(features, given, trusted, probs, num_classes=NUM_CLASSES, kappa=0.9)
    recalled, new_labels = np.asarray(out.recalled), np.asarray(out.new_labels)
    assert not np.any(recalled & trusted)
    np.testing.assert_array_equal(new_labels[trusted], given[trusted])
    np.testing.assert_array_equal(new_labels[~recalled], given[~recalled])
    assert np.mean(new_labels[recalled] == clean[recalled]) >= 0.95
    assert recalled.sum() >= 0.75 * (~trusted).sum()
    assert np.mean(np.asarray(out.candidate) == clean) >= 0.95
    assert np.all(np.asarray(out.confidence)[recalled] > 0.9)
    assert out.new_labels.dtype == out.candidate.dtype == np.int32


def test_a_sample_the_referee_disagrees_on_is_not_recalled():
    features, clean, given, trusted, probs = _clusters()
    untrusted = np.flatnonzero(~trusted)[:20]
    # The referee leans to the next class but still gives the true class 0.46 > kappa,
    # so only the agreement rule can keep these samples out.
    probs[untrusted] = 0.02 / 3
    probs[untrusted, clean[untrusted]] = 0.46
    probs[untrusted, (clean[untrusted] + 1) % NUM_CLASSES] = 0.52
    out = RECALIBRATE(features, given, trusted, probs, num_classes=NUM_CLASSES, kappa=0.4)
    np.testing.assert_array_equal(np.asarray(out.candidate)[untrusted], clean[untrusted])
    assert np.all(np.asarray(out.confidence)[untrusted] > 0.4)
    assert not np.any(np.asarray(out.recalled)[untrusted])
    assert np.sum(out.recalled) >= 0.75 * ((~trusted).sum() - 20)


def test_kappa_one_recalls_nothing():
    features, _, given, trusted, probs = _clusters()
    out = RECALIBRATE(features, given, trusted, probs, num_classes=NUM_CLASSES, kappa=1.0)
    assert not np.any(out.recalled)
    np.testing.assert_array_equal(out.new_labels, given)


def test_a_class_without_trusted_samples_is_never_chosen():
    features, clean, given, trusted, probs = _clusters()
    trusted = trusted & (given != NUM_CLASSES - 1)
    out = RECALIBRATE(features, given, trusted, probs, num_classes=NUM_CLASSES, kappa=0.5)
    assert not np.any(np.asarray(out.candidate) == NUM_CLASSES - 1)
    assert not np.any(np.asarray(out.new_labels)[out.recalled] == NUM_CLASSES - 1)
    assert np.all(np.isfinite(out.confidence))
    assert np.sum(out.recalled) > 0


def test_class_anchors_average_trusted_samples_only():
    features = np.array([[1, 2], [3, 4], [100, 100], [5, 0], [7, 7]], np.float32)
    labels = np.array([0, 0, 0, 2, 1])
    trusted = np.array([True, True, False, True, False])
    anchors, present = class_anchors(features, labels, trusted, 3)
    np.testing.assert_allclose(anchors, [[2, 3], [0, 0], [5, 0]])
    np.testing.assert_array_equal(present, [True, False, True])


def test_shared_precision_is_the_inverse_of_the_shrunk_pooled_covariance():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(9, 3)).astype(np.float32)
    features[8] = 1e3
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    trusted = np.arange(9) < 8
    anchors = np.stack([features[:4].mean(0), features[4:8].mean(0)])
    precision = np.asarray(PRECISION(features, labels, trusted, anchors, 0.2, 1e-6))
    centred = features[:8] - anchors[labels[:8]]
    covariance = centred.T @ centred / 8
    target = np.trace(covariance) / 3
    shrunk = 0.8 * covariance + (0.2 * target + 1e-6) * np.eye(3)
    np.testing.assert_allclose(precision, np.linalg.inv(shrunk), rtol=1e-4)
    np.testing.assert_array_equal(precision, precision.T)
    assert np.linalg.eigvalsh(precision).min() > 0


def test_shared_precision_is_stable_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(2)
    dim, n = 1024, 64
    features = rng.normal(size=(n, dim)).astype(np.float32)
    labels = np.arange(n) % 4
    trusted = np.ones(n, bool)
    anchors, _ = class_anchors(features, labels, trusted, 4)
    precision = np.asarray(PRECISION(features, labels, trusted, anchors, 0.1, 1e-6), np.float64)
    assert np.all(np.isfinite(precision))
    centred = features - np.asarray(anchors)[labels]
    covariance = centred.T.astype(np.float64) @ centred / n
    shrunk = 0.9 * covariance + (0.1 * np.trace(covariance) / dim + 1e-6) * np.eye(dim)
    residual = np.abs(precision @ shrunk - np.eye(dim)).max()
    assert residual < 1e-3
    assert np.linalg.eigvalsh(precision).min() > 0


def test_mahalanobis_and_cosine_match_naive_numpy():
    rng = np.random.default_rng(3)
    features = (rng.normal(size=(7, 5)) + 50.0).astype(np.float32)
    anchors = (rng.normal(size=(3, 5)) + 50.0).astype(np.float32)
    root = rng.normal(size=(5, 5))
    precision = (root @ root.T + np.eye(5)).astype(np.float32)
    diff = features[:, None, :].astype(np.float64) - anchors[None, :, :]
    want = np.einsum("ncd,de,nce->nc", diff, precision.astype(np.float64), diff)
    np.testing.assert_allclose(mahalanobis(features, anchors, precision), want, rtol=1e-4)
    unit_features = features / np.linalg.norm(features, axis=1, keepdims=True)
    unit_anchors = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine(features, anchors), unit_features @ unit_anchors.T, 1e-5)
    zero = cosine(features, np.zeros((1, 5), np.float32))
    np.testing.assert_array_equal(zero, 0.0)


def test_margin_confidence_keeps_out_samples_torn_between_two_classes():
    features, clean, given, trusted, _ = _clusters()
    n = clean.size
    torn = np.arange(n) % 2 == 0  # the referee hesitates between the class and its neighbour
    probs = np.full((n, NUM_CLASSES), 0.01, np.float32)
    probs[np.arange(n), clean] = np.where(torn, 0.55, 0.96)
    probs[np.arange(n), (clean + 1) % NUM_CLASSES] += np.where(torn, 0.42, 0.01)
    plain = RECALIBRATE(features, given, trusted, probs, num_classes=NUM_CLASSES, kappa=0.5)
    margin = RECALIBRATE(
        features, given, trusted, probs, num_classes=NUM_CLASSES, kappa=0.5, margin=True
    )
    plain, margin = np.asarray(plain.recalled), np.asarray(margin.recalled)
    assert plain[torn & ~trusted].mean() > 0.9
    assert not margin[torn].any()
    np.testing.assert_array_equal(margin[~torn], plain[~torn])


def _trusted_and_recalls(recall_confidence):
    """Two classes of 50 trusted members each (referee probability 0.9 on their label)
    and 20 recalls into class 0 with the given referee probabilities."""
    trusted = np.r_[np.ones(100, bool), np.zeros(20, bool)]
    labels = np.r_[np.zeros(50, int), np.ones(70, int)]  # the recalls' given label is 1
    own = np.r_[np.full(100, 0.9), recall_confidence]
    probs = np.stack([np.where(labels == 0, own, 1 - own), np.where(labels == 0, 1 - own, own)], 1)
    probs[100:] = np.stack([recall_confidence, 1 - recall_confidence], 1)
    candidate = np.r_[labels[:100], np.zeros(20, int)]
    recalled = ~trusted
    return recalled, candidate, trusted, labels, probs


def test_recalls_less_credible_than_the_trusted_space_are_rejected():
    recalled, candidate, trusted, labels, probs = _trusted_and_recalls(np.full(20, 0.7))
    assert not admit_recalls(recalled, candidate, trusted, labels, probs, 2).any()


def test_recalls_as_credible_as_the_trusted_space_are_admitted():
    recalled, candidate, trusted, labels, probs = _trusted_and_recalls(np.full(20, 0.95))
    np.testing.assert_array_equal(
        admit_recalls(recalled, candidate, trusted, labels, probs, 2), recalled
    )


def test_a_mixed_batch_admits_its_most_credible_part_and_keeps_the_estimate():
    confidence = np.r_[np.full(10, 0.99), np.full(10, 0.5)]
    recalled, candidate, trusted, labels, probs = _trusted_and_recalls(confidence)
    admitted = admit_recalls(recalled, candidate, trusted, labels, probs, 2)
    # (9.9 + 0.5 k) / (10 + k) >= 0.9 up to k = 2
    assert admitted[100:110].all() and admitted[110:].sum() == 2
    rows = np.arange(120)
    joined = trusted | admitted
    new_labels = np.where(admitted, candidate, labels)
    assert probs[rows, new_labels][joined].mean() >= probs[rows, labels][trusted].mean()
    assert not admitted[trusted].any()


def test_supported_flags_the_recall_criteria_on_trusted_samples_too():
    features, clean, given, trusted, probs = _clusters()
    out = RECALIBRATE(features, given, trusted, probs, num_classes=NUM_CLASSES, kappa=0.9)
    supported, recalled = np.asarray(out.supported), np.asarray(out.recalled)
    np.testing.assert_array_equal(recalled, supported & ~trusted)
    assert supported[trusted].mean() > 0.7


def _noisy_population(seed=0, n=6000, num_classes=4):
    """True classes, labels drawn through a known transition, a referee that knows the class.

    The referee misreads a third of class 2 as class 3, confidently (a
    look-alike in the images that the label noise does not share).
    """
    rng = np.random.default_rng(seed)
    transition = np.full((num_classes, num_classes), 0.1)
    np.fill_diagonal(transition, 0.7)
    transition[0] = [0.5, 0.4, 0.05, 0.05]  # class 0 is often labelled 1
    true = rng.integers(0, num_classes, n)
    given = np.array([rng.choice(num_classes, p=transition[c]) for c in true])
    logits = 4.0 * np.eye(num_classes)[true] + rng.normal(size=(n, num_classes))
    misread = (true == 2) & (rng.random(n) < 1 / 3)
    logits[misread] = np.array([0.0, 0.0, 3.0, 4.5]) + rng.normal(size=(misread.sum(), 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return true, given, probs, transition


def test_the_anchor_point_estimate_recovers_the_transition_matrix():
    _, given, probs, transition = _noisy_population()
    estimate = estimate_transition(probs, given, 4)
    np.testing.assert_allclose(estimate.sum(1), 1.0)
    # 180 anchors per class: binomial std ≤ 0.04
    np.testing.assert_allclose(estimate, transition, atol=0.1)


def test_label_posterior_is_bayes_rule_with_the_noise_model():
    transition = np.array([[0.6, 0.4], [0.1, 0.9]])
    probs = np.array([[0.8, 0.2], [0.8, 0.2]])
    given = np.array([0, 1])
    posterior = label_posterior(probs, given, transition)
    # sample 1: P(true 0 | x, given 1) = 0.8·0.4 / (0.8·0.4 + 0.2·0.9)
    np.testing.assert_allclose(posterior[1, 0], 0.32 / (0.32 + 0.18))
    np.testing.assert_allclose(posterior[0, 0], 0.48 / (0.48 + 0.02))
    np.testing.assert_allclose(posterior.sum(1), 1.0)


def test_admission_on_the_label_posterior_keeps_the_trusted_space_as_clean():
    # Recalls proposed wherever the referee contradicts the label: judged on the
    # referee's probability they are admitted wholesale and the trusted space gets
    # noisier; judged on the label posterior the admitted ones are as clean as it.
    true, given, probs, transition = _noisy_population(seed=1)
    guess = probs.argmax(1)
    trusted = (guess == given) & (probs.max(1) > 0.9)
    recalled = ~trusted & (guess != given) & (probs.max(1) > 0.5)
    before = np.mean(true[trusted] == given[trusted])
    posterior = label_posterior(probs, given, estimate_transition(probs, given, 4))
    for estimate, cleaner in ((probs, False), (posterior, True)):
        admitted = admit_recalls(recalled, guess, trusted, given, estimate, 4)
        labels = np.where(admitted, guess, given)
        after = np.mean(true[trusted | admitted] == labels[trusted | admitted])
        assert admitted.any()
        assert (after >= before) == cleaner


def test_referees_of_the_noisy_labels_are_corrected_back_before_bayes_rule():
    # A referee trained on the given labels outputs Tᵀ p(true | x); undoing it
    # gives the posterior of a referee of the true classes.
    transition = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    true_probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
    given = np.array([1, 1, 0])
    expected = label_posterior(true_probs, given, transition)
    got = label_posterior(true_probs @ transition, given, transition, noisy=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
