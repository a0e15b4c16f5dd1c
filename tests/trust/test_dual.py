import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd import report
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.prepare import prepare
from jaxdd.trust.dual import (
    TADConfig,
    TrustSplit,
    _round_step,
    _train,
    class_prior_weights,
    diversion_weights,
    run_tad,
)
from jaxdd.trust.referee import RefereeView, deal_folds, judges, look


@pytest.fixture(scope="module")
def tad_digits(tmp_path_factory):
    run = report.RunDir(tmp_path_factory.mktemp("runs"), "tad")
    # One fold, with its step counts: with two, each referee of this 1.3k-image
    # set learns from ~150 trusted labels in round 1 (cross-fitting is tested
    # on its own below and by the other tests here, which run two folds).
    config = TADConfig(folds=1, warmup_steps=100, steps_per_round=50)
    data = prepare("digits", "symmetric:0.4", trust=config, run=run)
    return data, run


def test_tad_on_noisy_digits_meets_the_trust_targets(tad_digits):
    data, _ = tad_digits
    split, rounds = data.split, data.split.rounds
    assert len(rounds) == 3
    final = rounds[-1]
    assert final["precision"] >= 0.95
    assert final["trusted_fraction"] >= 0.5
    recalled = sum(r["recalled"] for r in rounds)
    right = sum(r["recalled"] * r["recalibration_accuracy"] for r in rounds if r["recalled"])
    # one-fold referees have learnt the trusted labels, so the trusted members'
    # estimate is high and admission is sparing: few recalls, nearly all right
    assert recalled > 0 and right / recalled >= 0.8
    # the diverted data is exactly the trusted space with its labels
    assert len(data.idx) == split.trusted.sum() == len(data.labels)
    assert np.mean(data.labels == data.clean) == pytest.approx(final["precision"])
    # the trusted space grows over the rounds as tau relaxes
    assert rounds[0]["trusted"] <= rounds[-1]["trusted"]
    # recalls never make the trusted space noisier, and the schedule really acts
    for stats in rounds:
        assert stats["remaining_noise"] <= stats["noise_before_recall"]
        assert stats["tau_moves"] >= 0.05
    # the label-free estimate of the given labels' noise is near the injected 40 %
    assert abs(rounds[-1]["estimated_label_noise"] - 0.4) < 0.08


def test_the_trusted_space_only_grows_except_by_revocation(tad_digits):
    # added = T_k \ T_{k-1} and revoked ⊆ T_{k-1} \ T_k, so the sizes add up
    # exactly when T_{k-1} \ T_k is the revoked set: T_k ⊇ T_{k-1} \ revoked_k
    rounds = tad_digits[0].split.rounds
    previous = 0
    for stats in rounds:
        assert stats["trusted"] == previous + stats["added"] - stats["revoked"] - stats["expelled"]
        assert stats["trusted"] == stats["before_recall"] + stats["admitted"]
        previous = stats["trusted"]
    assert rounds[0]["revoked"] == 0
    assert all(stats["expelled"] == 0 for stats in rounds)  # expel_below = 0: off


def test_tad_writes_diagnostics_plots_and_the_split(tad_digits):
    data, run = tad_digits
    events = [e for e in run.read_events() if e["event"] == "trust"]
    assert [e["round"] for e in events] == [0, 1, 2]
    for name in ("trust_losses.png", "trust_rounds.png"):
        assert (run.path / name).read_bytes()[:4] == b"\x89PNG"
    saved = np.load(run.path / "trust_split.npz")
    split = data.split
    np.testing.assert_array_equal(saved["trusted"], split.trusted)
    np.testing.assert_array_equal(saved["labels"], split.labels)
    assert len(saved["index"]) == len(saved["given"]) == len(split.trusted)
    assert np.mean(saved["labels"][saved["trusted"]] == saved["clean"][saved["trusted"]]) == (
        pytest.approx(split.rounds[-1]["precision"])
    )


def test_small_loss_keeps_the_ratio_and_cleans_labels():
    config = TADConfig(mode="small-loss", keep_ratio=0.5)
    data = prepare("digits", "symmetric:0.4", trust=config)
    kept = data.split.trusted
    assert abs(kept.mean() - 0.5) < 0.01
    assert np.mean(data.labels == data.clean) > 0.85  # vs ~0.61 before selection
    assert data.split.rounds[0]["recalled"] == 0


def test_class_prior_weights_restore_the_prior_before_diversion():
    given = np.array([0, 0, 0, 0, 1, 1, 1, 1])  # prior: half and half
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0])  # one sample recalled into class 0
    keep = np.array([1, 1, 1, 1, 1, 0, 0, 1], bool)  # kept: five of class 0, one of class 1
    weights = class_prior_weights(labels, keep.astype(float), given, 2)
    assert not weights[~keep].any()
    weights = weights[keep]
    assert weights.mean() == pytest.approx(1.0)
    kept = labels[keep]
    assert weights[kept == 0].sum() == pytest.approx(weights[kept == 1].sum())
    assert np.allclose(weights[kept == 0], weights[kept == 0][0])


def test_rebalancing_weights_reach_the_training_targets(tad_digits):
    data, _ = tad_digits
    weights, num_classes = data.weights, data.ds.num_classes
    assert weights.shape == data.labels.shape
    mass = np.bincount(data.labels, weights=weights, minlength=num_classes)
    prior = np.bincount(data.noisy.labels, minlength=num_classes)  # digits: no subset cap
    assert np.allclose(mass / mass.sum(), prior / prior.sum(), atol=1e-5)
    assert np.allclose(data.targets().sum(-1), weights)
    assert np.allclose(data.targets(weighted=False).sum(-1), 1.0)


def test_no_rebalancing_leaves_equal_weights():
    data = prepare("digits", "symmetric:0.4", trust=TADConfig(mode="small-loss", rebalance=False))
    assert data.weights is None and np.allclose(data.targets().sum(-1), 1.0)


def test_weight_diversion_keeps_untrusted_samples_at_their_trust_score():
    trusted = np.array([True, True, False, False])
    split = TrustSplit(
        trusted=trusted,
        labels=np.array([0, 1, 0, 1]),
        scores=np.array([0.9, 0.95, 0.2, 0.0]),
        losses=np.zeros(4),
        loss_labels=np.array([0, 1, 0, 1]),
        rounds=[],
    )
    given = np.array([0, 1, 0, 1])
    plain = TADConfig(diversion="weight", rebalance=False)
    assert np.allclose(diversion_weights(split, given, 2, plain), [1.0, 1.0, 0.2, 0.0])
    select = TADConfig(diversion="select", rebalance=False)
    assert np.allclose(diversion_weights(split, given, 2, select), [1.0, 1.0, 0.0, 0.0])
    balanced = diversion_weights(split, given, 2, TADConfig(diversion="weight"))
    assert balanced[0] + balanced[2] == pytest.approx(balanced[1])  # class masses equal
    assert balanced[3] == 0.0


def test_weight_diversion_trains_on_all_data_but_initialises_from_the_trusted_space():
    config = TADConfig(diversion="weight", rounds=2, warmup_steps=100, steps_per_round=50)
    data = prepare("digits", "symmetric:0.4", trust=config)
    assert len(data.labels) > data.trusted.sum() >= 0.45 * len(data.labels)
    assert set(data.init_pool) == set(np.flatnonzero(data.trusted))
    # within a class (rebalancing scales each class), the untrusted weigh less
    for c in np.unique(data.labels):
        mine = data.labels == c
        trusted, untrusted = mine & data.trusted, mine & ~data.trusted
        if untrusted.any():
            assert np.all(data.weights[untrusted] < data.weights[trusted].min())


def _view(features, probs):
    n = len(probs)
    return RefereeView(jnp.zeros(n), jnp.zeros(n), jnp.asarray(probs), jnp.asarray(features))


def _three_clusters(seed=0):
    rng = np.random.default_rng(seed)
    clean = np.repeat(np.arange(3), 40)
    features = (8.0 * np.eye(3)[clean] + rng.normal(size=(120, 3))).astype(np.float32)
    probs = (0.02 + 0.94 * np.eye(3)[clean]).astype(np.float32)
    return features, clean, probs


def test_a_recall_the_new_referees_no_longer_support_is_revoked():
    features, clean, probs = _three_clusters()
    given = clean.copy()
    given[0] = 2  # sample 0 (a class-0 sample) was given label 2 ...
    labels = clean.copy()
    labels[0] = 1  # ... and recalled, wrongly, to class 1 in an earlier round
    trusted = np.ones(120, bool)
    recalled = np.zeros(120, bool)
    recalled[[0, 1]] = True  # sample 1 was recalled to its true class 0
    masks, new_labels, _, _ = _round_step(
        _view(features, probs), labels, given, trusted, recalled, 1, TADConfig()
    )
    np.testing.assert_array_equal(np.flatnonzero(masks["revoked"]), [0])
    assert not masks["trusted"][0] and masks["trusted"][1:].all()
    assert new_labels[0] == 2 and new_labels[1] == 0  # back to the given label


def test_the_split_does_not_depend_on_the_clean_labels(digits):
    x, y = digits[0][:300], digits[1][:300]
    noisy = np.where(np.arange(300) % 3 == 0, (y + 1) % 10, y).astype(np.int32)
    model = make_convnet(ConvNetSpec(10, x.shape[1:], width=8, depth=1))
    config = TADConfig(rounds=2, warmup_steps=8, steps_per_round=4, batch_size=64)
    rng = np.random.default_rng(1)
    runs = [
        run_tad(model, jnp.asarray(x), noisy, 10, config, key=jax.random.key(0), clean_labels=c)
        for c in (y, rng.integers(0, 10, 300))
    ]
    for name in ("trusted", "labels", "scores", "losses", "loss_labels", "recalled"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))
    sizes = ("trusted", "added", "revoked", "proposed", "admitted")
    assert [[r[k] for k in sizes] for r in runs[0].rounds] == [
        [r[k] for k in sizes] for r in runs[1].rounds
    ]


def test_a_cross_fitted_judgement_does_not_depend_on_the_samples_own_label(digits):
    # Flipping the labels of fold 0 changes only the referees that learn from
    # fold 0, which never judge it: fold 0's views are bit-identical.
    x, y = jnp.asarray(digits[0][:128]), digits[1][:128].astype(np.int32)
    model = make_convnet(ConvNetSpec(10, x.shape[1:], width=4, depth=1))
    config = TADConfig(referees=2, folds=2, batch_size=32, signal_epochs=1)
    folds = deal_folds(128, 2, jax.random.key(5))
    judged = judges(folds, 2, 2)
    flipped = np.where(folds == 0, (y + 3) % 10, y).astype(np.int32)
    views = []
    for labels in (y, flipped):
        states = _train(
            model, x, labels, np.ones(128, bool), 10, config, 2, None, jax.random.key(0), judged
        )
        views.append(look(model, states[-1].params, x, jnp.asarray(y), judged=judged))
    own = folds == 0
    np.testing.assert_array_equal(np.asarray(views[0].probs)[own], np.asarray(views[1].probs)[own])
    assert not np.allclose(np.asarray(views[0].probs)[~own], np.asarray(views[1].probs)[~own])


def test_expulsion_removes_only_partition_members_a_later_round_doubts(digits):
    x, y = digits[0][:300], digits[1][:300]
    noisy = np.where(np.arange(300) % 3 == 0, (y + 1) % 10, y).astype(np.int32)
    model = make_convnet(ConvNetSpec(10, x.shape[1:], width=8, depth=1))
    config = TADConfig(rounds=3, warmup_steps=8, steps_per_round=8, batch_size=64)
    kept = []

    def on_round(stats):
        kept.append(stats)

    split = run_tad(
        model,
        jnp.asarray(x),
        noisy,
        10,
        dataclasses.replace(config, expel_below=0.5),
        key=jax.random.key(0),
        on_round=on_round,
    )
    assert kept[0]["expelled"] == 0  # round 0 has no earlier trusted space
    assert sum(s["expelled"] for s in kept[1:]) > 0
    previous = 0
    for stats in kept:
        assert stats["trusted"] == previous + stats["added"] - stats["revoked"] - stats["expelled"]
        previous = stats["trusted"]
    # an expelled sample keeps its given label (only recalls change labels)
    untrusted = ~split.trusted & ~split.recalled
    np.testing.assert_array_equal(split.labels[untrusted], noisy[untrusted])
