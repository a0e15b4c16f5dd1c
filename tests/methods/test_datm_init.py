"""DATM's initialisation: which real images the synthetic set starts from (§1.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.methods.datm_init import choose_images, initialise
from jaxdd.models.base import stateless_model

C = 3


def _oracle_model():
    """An 'expert' whose prediction is written in pixel (0, 0, 0) of the image."""

    def apply(params, x):
        return 10.0 * jax.nn.one_hot(x[:, 0, 0, 0].astype(jnp.int32), C) + params["bias"][None]

    return stateless_model(None, apply, None, None)


def _data(n_per_class=40, wrong_every=2):
    """Labels 0..C-1 in blocks; the expert predicts the label except on every `wrong_every`-th."""
    labels = np.repeat(np.arange(C), n_per_class)
    pred = labels.copy()
    pred[::wrong_every] = (labels[::wrong_every] + 1) % C
    x = np.zeros((len(labels), 2, 2, 1), np.float32)
    x[:, 0, 0, 0] = pred
    traj = {"bias": np.zeros((2, 3, C), np.float32)}  # [E, T + 1, C]
    return x, labels, pred, traj


def test_correct_init_keeps_only_images_the_expert_predicts_as_their_label():
    x, labels, pred, traj = _data()
    idx, filled = choose_images(_oracle_model(), traj, x, labels, C, 5, how="correct", seed=0)
    assert filled == 0
    assert len(idx) == C * 5 and len(set(idx.tolist())) == C * 5
    np.testing.assert_array_equal(labels[idx], np.repeat(np.arange(C), 5))  # class-major
    assert np.all(pred[idx] == labels[idx])


def test_fallback_fills_with_random_members_and_counts_them():
    x, labels, pred, traj = _data(n_per_class=200, wrong_every=1)  # the expert is always wrong
    picks = [
        choose_images(_oracle_model(), traj, x, labels, C, 4, how="correct", seed=s)
        for s in range(3)
    ]
    for idx, filled in picks:
        assert filled == C * 4
        np.testing.assert_array_equal(labels[idx], np.repeat(np.arange(C), 4))
    # The fill is a random draw of each class (not its first members) and follows the seed.
    assert not np.array_equal(picks[0][0], picks[1][0])
    first_members = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(C)])
    assert not np.array_equal(np.sort(picks[0][0]), first_members)


def test_real_init_is_a_seeded_random_draw_per_class():
    x, labels, _, traj = _data()
    a, _ = choose_images(_oracle_model(), traj, x, labels, C, 6, how="real", seed=1)
    b, _ = choose_images(_oracle_model(), traj, x, labels, C, 6, how="real", seed=1)
    c, _ = choose_images(_oracle_model(), traj, x, labels, C, 6, how="real", seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(labels[a], np.repeat(np.arange(C), 6))


def test_initialise_gives_expert_logits_or_one_hot_and_refuses_bad_input():
    x, labels, _, traj = _data()
    soft = initialise(
        _oracle_model(), traj, x, labels, C, 2, how="correct", soft_labels=True, seed=0
    )
    assert soft.labels.shape == (C * 2, C)
    np.testing.assert_array_equal(soft.labels.argmax(-1), labels[soft.indices])
    assert soft.labels.max() == pytest.approx(10.0)  # the experts' logits, not one-hot
    hard = initialise(_oracle_model(), traj, x, labels, C, 2, how="real", soft_labels=False, seed=0)
    np.testing.assert_array_equal(hard.labels, np.eye(C)[labels[hard.indices]])
    with pytest.raises(ValueError, match="unknown init"):
        initialise(_oracle_model(), traj, x, labels, C, 2, how="bogus", soft_labels=True, seed=0)
    with pytest.raises(ValueError, match="ipc"):
        choose_images(_oracle_model(), traj, x, labels, C, 41, how="real", seed=0)


def test_real_init_soft_labels_are_the_first_experts_logits():
    # DATM's pix_init "real": one expert (buffer[0], final snapshot) labels
    # every image, right or wrong; "correct" averages the experts right about it.
    x, labels, pred, traj = _data()
    traj = {"bias": np.zeros((2, 3, C), np.float32)}
    traj["bias"][1, -1] = [3.0, 0.0, 0.0]  # the second expert leans to class 0
    soft = initialise(_oracle_model(), traj, x, labels, C, 4, how="real", soft_labels=True, seed=1)
    np.testing.assert_allclose(soft.labels, 10.0 * np.eye(C)[pred[soft.indices]])
    assert (pred[soft.indices] != labels[soft.indices]).any()  # wrong ones keep expert 0's view
    mean = initialise(
        _oracle_model(), traj, x, labels, C, 4, how="correct", soft_labels=True, seed=1
    )
    assert mean.labels[:, 0].max() > 10.0  # the second expert's bias enters the average
