import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.models.convnet import ConvNetSpec, init_many, make_convnet
from jaxdd.trust.dual import partition_signal
from jaxdd.trust.referee import (
    deal_folds,
    first_judges,
    fold_targets,
    judges,
    look,
    margins,
    referee_targets,
    relative_losses,
)


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


def test_folds_are_balanced_and_a_referee_judges_only_the_folds_it_never_learnt():
    folds = deal_folds(101, 2, jax.random.key(0))
    assert sorted(np.bincount(folds)) == [50, 51]
    judged = judges(folds, 4, 2)
    for r in range(4):
        np.testing.assert_array_equal(judged[r], folds != r % 2)
    assert judges(folds, 2, 1).all()
    labels, trusted = np.arange(101) % 3, np.arange(101) % 5 > 0
    targets = fold_targets(labels, trusted, 3, judged)
    assert targets.shape == (4, 101, 3)
    # a referee's labelled rows are the trusted samples it does not judge
    np.testing.assert_array_equal(targets.sum(-1) > 0, trusted[None] & ~judged)
    np.testing.assert_array_equal(first_judges(judged), np.where(folds == 0, 1, 0))


def test_look_averages_over_each_samples_judges_and_takes_its_first_judges_features():
    rng = np.random.default_rng(0)
    model = make_convnet(ConvNetSpec(4, (8, 8, 1), width=4, depth=1))
    x = jnp.asarray(rng.normal(size=(30, 8, 8, 1)), jnp.float32)
    labels = rng.integers(0, 4, 30)
    params = init_many(model, 3, key=jax.random.key(1))
    judged = rng.random((3, 30)) < 0.6
    judged[:, 0] = [False, False, True]
    judged[:, 1] = True
    view = look(model, params, x, jnp.asarray(labels), batch=7, judged=judged)
    single = [jax.tree.map(lambda leaf, r=r: leaf[r], params) for r in range(3)]
    probs = np.stack([np.asarray(jax.nn.softmax(model.apply(p, x))) for p in single])
    feats = np.stack([np.asarray(model.features(p, x)) for p in single])
    weight = judged / np.maximum(judged.sum(0), 1)
    np.testing.assert_allclose(
        view.probs, np.einsum("rn,rnc->nc", weight, probs), rtol=1e-5, atol=1e-6
    )
    losses = -np.log(probs[:, np.arange(30), labels])
    np.testing.assert_allclose(view.losses, (weight * losses).sum(0), rtol=1e-4, atol=1e-5)
    first = first_judges(judged)
    np.testing.assert_allclose(view.features, feats[first, np.arange(30)], rtol=1e-5, atol=1e-5)
    assert first[0] == 2 and first[1] == 0
