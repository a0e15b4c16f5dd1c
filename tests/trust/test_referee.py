import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.trust.referee import referee_targets, relative_losses


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
