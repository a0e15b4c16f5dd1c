import numpy as np

from jaxdd.prepare import prepare
from jaxdd.trust.dual import TADConfig

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
