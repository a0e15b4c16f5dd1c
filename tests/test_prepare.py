import dataclasses

import numpy as np

from jaxdd.prepare import prepare
from jaxdd.trust.dual import TADConfig

SMALL_LOSS = TADConfig(mode="small-loss", keep_ratio=0.5, init_pool="trusted")


def test_without_diversion_the_initialisation_draws_from_all_samples():
    data = prepare("digits", "symmetric:0.4", max_train=400)
    x, labels, clean = data.init_candidates(filtered=True)
    assert data.source is None and data.given_size == len(data.labels) == len(x)
    np.testing.assert_array_equal(labels, data.labels)
    np.testing.assert_array_equal(clean, data.clean)


def test_init_pool_picks_the_trusted_space_or_every_given_label():
    trusted = prepare("digits", "symmetric:0.4", max_train=400, trust=SMALL_LOSS)
    x, labels, _ = trusted.init_candidates(filtered=True)
    assert len(x) == trusted.trusted.sum() < trusted.given_size
    np.testing.assert_array_equal(labels, trusted.labels[trusted.trusted])

    every = prepare(
        "digits",
        "symmetric:0.4",
        max_train=400,
        trust=dataclasses.replace(SMALL_LOSS, init_pool="all"),
    )
    assert len(every.init_candidates(filtered=False)[0]) == every.trusted.sum()  # no filter
    x, labels, clean = every.init_candidates(filtered=True)
    assert len(x) == every.given_size == len(every.source.labels)
    np.testing.assert_array_equal(labels, every.noisy.labels[every.source.idx])  # given labels
    np.testing.assert_array_equal(clean, every.ds.y_train[every.source.idx])
    # the training data itself is still only the trusted space
    assert len(every.labels) == len(trusted.labels)
