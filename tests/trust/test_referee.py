import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.models.convnet import ConvNetSpec, init_many, make_convnet
from jaxdd.trust.dual import partition_signal
from jaxdd.trust.referee import look, margins, referee_targets, relative_losses


def test_relative_loss_is_zero_on_the_argmax_and_the_log_ratio_elsewhere():
    probs = jnp.array([[0.6, 0.3, 0.1], [0.3, 0.3, 0.4], [0.25, 0.7, 0.05]])
    labels = jnp.array([0, 0, 0])
    got = np.asarray(relative_losses(probs, labels))
    assert got == pytest.approx([0.0, np.log(0.4 / 0.3), np.log(0.7 / 0.25)], rel=1e-5)


def test_relative_loss_ignores_how_hard_a_correctly_labelled_sample_is():
    # label 0 on a hard clean sample (flat, but 0 is the argmax) and on an easy
    # sample of class 1 flipped to 0 (the look-alike of asymmetric noise): the
    # plain loss ranks the flipped one as cleaner, the relative loss does not
    probs = jnp.array([[0.3, 0.25, 0.25, 0.2], [0.4, 0.6, 0.0, 0.0]])
    labels = jnp.array([0, 0])
    plain = -np.log(np.asarray(probs)[:, 0])
    relative = np.asarray(relative_losses(probs, labels))
    assert plain[0] > plain[1]
    assert relative[0] == 0.0 < relative[1]


def test_referee_targets_are_one_hot_for_trusted_rows_and_zero_otherwise():
    targets = referee_targets(np.array([2, 0, 1]), np.array([True, False, True]), 3)
    assert np.array_equal(targets, [[0, 0, 1], [0, 0, 0], [0, 1, 0]])


def test_margin_is_the_best_other_class_against_the_label_per_referee():
    logp = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]]]))  # [R=1, N=2, C=3]
    got = np.asarray(margins(logp, jnp.array([0, 0])))
    assert got[0] == pytest.approx([np.log(0.2 / 0.7), np.log(0.5 / 0.2)], rel=1e-5)


def test_averaged_signal_is_the_mean_cross_entropy_over_referees_and_checkpoints():
    rng = np.random.default_rng(0)
    model = make_convnet(ConvNetSpec(4, (8, 8, 1), width=4, depth=1))
    x = jnp.asarray(rng.normal(size=(30, 8, 8, 1)), jnp.float32)
    labels = rng.integers(0, 4, 30)
    checkpoints = [init_many(model, 2, key=jax.random.key(seed)) for seed in range(3)]
    views = [look(model, params, x, jnp.asarray(labels), batch=7) for params in checkpoints]
    got = np.asarray(partition_signal(views, labels, "averaged"))
    expected = np.zeros(30)
    for params in checkpoints:
        for r in range(2):
            logits = np.asarray(model.apply(jax.tree.map(lambda leaf, r=r: leaf[r], params), x))
            logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            expected -= logp[np.arange(30), labels] / 6
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    gaps = np.asarray(partition_signal(views, labels, "margin"))
    np.testing.assert_allclose(gaps, np.mean([np.asarray(v.margins) for v in views], 0), rtol=1e-5)
