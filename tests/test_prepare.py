import dataclasses

import numpy as np

from jaxdd.prepare import carve_validation, prepare
from jaxdd.trust.dual import TADConfig, TrustSplit

# Tiny referees: these tests check which samples each pool holds, not how well they are chosen.
SMALL_LOSS = TADConfig(mode="small-loss", keep_ratio=0.5, width=8, warmup_steps=10)


def test_without_diversion_the_initialisation_draws_from_all_samples():
    data = prepare("digits", "symmetric:0.4", max_train=400)
    x, labels, clean = data.init_candidates(every_sample=True)
    assert data.source is None and data.given_size == len(data.labels) == len(x)
    np.testing.assert_array_equal(labels, data.labels)
    np.testing.assert_array_equal(clean, data.clean)


def test_init_pool_picks_the_trusted_space_or_every_given_label():
    trusted = prepare("digits", "symmetric:0.4", max_train=400, trust=SMALL_LOSS)
    x, labels, _ = trusted.init_candidates(every_sample=False)
    assert len(x) == trusted.trusted.sum() < trusted.given_size
    np.testing.assert_array_equal(labels, trusted.labels[trusted.trusted])

    x, labels, clean = trusted.init_candidates(every_sample=True)
    assert len(x) == trusted.given_size == len(trusted.source.labels)
    np.testing.assert_array_equal(labels, trusted.noisy.labels[trusted.source.idx])  # given
    np.testing.assert_array_equal(clean, trusted.ds.y_train[trusted.source.idx])
    # the training data itself is still only the trusted space
    assert len(trusted.labels) == trusted.trusted.sum() < len(x)


def test_carve_validation_is_stratified_disjoint_and_seed_free_in_its_counts():
    labels = np.repeat(np.arange(4), [50, 30, 11, 1])
    train, val = carve_validation(labels, 0.2, seed=0)
    assert np.intersect1d(train, val).size == 0
    assert np.union1d(train, val).size == len(labels)
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=4), [10, 6, 2, 0])
    other = carve_validation(labels, 0.2, seed=1)[1]
    assert not np.array_equal(val, other)  # other samples ...
    counts = np.bincount(labels[other], minlength=4)
    np.testing.assert_array_equal(counts, [10, 6, 2, 0])  # ... as many


def test_the_validation_split_is_held_out_of_every_stage_and_keeps_given_labels():
    full = prepare("digits", "symmetric:0.4", max_train=400)
    data = prepare("digits", "symmetric:0.4", max_train=400, val_fraction=0.25, trust=SMALL_LOSS)
    source = data.source
    held = np.round(0.25 * np.bincount(full.labels)).sum()  # a quarter of every class
    assert len(data.val_idx) == len(data.val_labels) == len(data.val_x) == held
    assert np.union1d(source.idx, data.val_idx).size == len(full.idx)  # the same cap, split
    assert np.intersect1d(source.idx, data.val_idx).size == 0
    assert len(data.split.trusted) == len(source.idx)  # the trust split never saw it
    np.testing.assert_array_equal(data.val_labels, data.noisy.labels[data.val_idx])  # given
    np.testing.assert_allclose(data.val_x, data.space.encode(data.ds.x_train[data.val_idx]))
    assert full.validation is None


def test_the_split_cache_computes_a_split_once_per_data_and_trust_settings(tmp_path, monkeypatch):
    from jaxdd import prepare as prepare_module

    calls = []

    def fake_tad(model, x, labels, num_classes, config, *, key, clean_labels, on_round):
        """A split without referees (the cache is what is tested): a seeded random half."""
        calls.append(1)
        trusted = np.random.default_rng(len(calls)).random(len(labels)) < 0.5
        stats = {"round": 0, "trusted": int(trusted.sum())}
        on_round(stats)
        scores = trusted.astype(np.float32)
        return TrustSplit(trusted, labels, scores, -scores, labels, [stats], trusted & False)

    monkeypatch.setattr(prepare_module, "run_tad", fake_tad)
    first = prepare(
        "digits", "symmetric:0.4", max_train=400, trust=SMALL_LOSS, split_cache=tmp_path
    )
    again = prepare(
        "digits",
        "symmetric:0.4",
        max_train=400,
        trust=dataclasses.replace(SMALL_LOSS, init_pool="trusted"),  # does not shape the split
        split_cache=tmp_path,
    )
    assert len(calls) == 1
    for name in ("trusted", "labels", "scores", "losses"):
        np.testing.assert_array_equal(getattr(first.split, name), getattr(again.split, name))
    assert first.split.rounds == again.split.rounds
    np.testing.assert_array_equal(first.idx, again.idx)
    other = dataclasses.replace(SMALL_LOSS, keep_ratio=0.6)
    prepare("digits", "symmetric:0.4", max_train=400, trust=other, split_cache=tmp_path)
    prepare("digits", "symmetric:0.2", max_train=400, trust=SMALL_LOSS, split_cache=tmp_path)
    assert len(calls) == 3
    assert len(list(tmp_path.glob("split-*/trust_split.npz"))) == 3
