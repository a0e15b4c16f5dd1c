import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops.losses import soft_cross_entropy
from jaxdd.ops.train import TrainConfig, init_state, make_train_step

MODEL = make_convnet(ConvNetSpec(3, (6, 6, 1), width=4, depth=1))


def test_unlabelled_rows_do_not_enter_the_supervised_loss():
    logits = jax.random.normal(jax.random.key(0), (4, 3))
    targets = jax.nn.one_hot(jnp.array([0, 1, 2, 0]), 3)
    masked = targets.at[2:].set(0.0)
    expected = soft_cross_entropy(logits[:2], targets[:2])
    np.testing.assert_allclose(soft_cross_entropy(logits, masked), expected, rtol=1e-6)
    assert float(soft_cross_entropy(logits, jnp.zeros((4, 3)))) == 0.0


def _step_grads(config, targets):
    x = jax.random.normal(jax.random.key(1), (8, 6, 6, 1))
    state = init_state(MODEL, config, 0.1, key=jax.random.key(2))
    step = make_train_step(MODEL, config, total_steps=10)
    new, loss = step(state, jnp.int32(0), x, targets)
    return state, new, loss


def test_consistency_term_trains_on_unlabelled_samples():
    config = TrainConfig(batch_size=8, dsa=True, consistency=0.0)
    unlabelled = jnp.zeros((8, 3))
    state, new, loss = _step_grads(config, unlabelled)
    assert float(loss) == 0.0  # nothing to learn without labels or consistency
    shrink = 1 - 0.1 * config.weight_decay  # lr 0.1: only weight decay moves the params
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params), strict=True):
        np.testing.assert_allclose(b, a * shrink, rtol=1e-6, atol=1e-8)
    state, new, loss = _step_grads(dataclasses.replace(config, consistency=10.0), unlabelled)
    assert float(loss) > 0.0
    moved = [
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params), strict=True)
    ]
    assert max(moved) > 1e-6
