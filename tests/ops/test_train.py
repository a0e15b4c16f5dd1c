import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops.losses import soft_cross_entropy
from jaxdd.ops.train import TrainConfig, gsam_gradient, init_state, make_train_step

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


def test_gsam_direction_matches_a_hand_computed_step():
    # L(w) = ½ Σ a w² + Σ b w: ∇L = a w + b, so every quantity has a closed form.
    a, b = np.array([1.0, 3.0, 0.5]), np.array([0.2, -1.0, 0.4])
    w = np.array([0.7, -0.3, 1.5])
    rho, alpha = 0.05, 0.3

    def loss_and_grad(params):
        p = params["w"]
        return 0.5 * jnp.sum(a * p**2) + jnp.sum(b * p), {"w": a * p + b}

    g = a * w + b
    g_adv = a * (w + rho * g / np.linalg.norm(g)) + b
    g_perp = g - (g @ g_adv) / (g_adv @ g_adv) * g_adv
    loss, direction = gsam_gradient(
        loss_and_grad, {"w": jnp.asarray(w, jnp.float32)}, rho=rho, alpha=alpha
    )
    np.testing.assert_allclose(direction["w"], g_adv - alpha * g_perp, rtol=1e-5)
    np.testing.assert_allclose(loss, 0.5 * np.sum(a * w**2) + b @ w, rtol=1e-6)
    assert np.abs(g_perp @ g_adv) < 1e-9  # g⊥ really is orthogonal to g_adv


def test_gsam_train_step_descends_the_gsam_direction_of_its_batch():
    # batch = the whole set and no DSA: the step's batch loss is the mean CE
    # over all 8 samples, whatever their order, so it can be re-computed here.
    base = TrainConfig(batch_size=8, dsa=False, momentum=0.0, weight_decay=0.0)
    targets = jax.nn.one_hot(jnp.arange(8) % 3, 3)
    x = jax.random.normal(jax.random.key(1), (8, 6, 6, 1))
    state, plain, _ = _step_grads(base, targets)
    _, new, loss = _step_grads(dataclasses.replace(base, sam_rho=0.05, sam_alpha=0.3), targets)

    def loss_and_grad(params):
        return jax.value_and_grad(lambda p: soft_cross_entropy(MODEL.apply(p, x), targets))(params)

    sgd = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, loss_and_grad(state.params)[1])
    chex.assert_trees_all_close(plain.params, sgd, rtol=1e-4, atol=1e-6)
    ref_loss, direction = gsam_gradient(loss_and_grad, state.params, rho=0.05, alpha=0.3)
    gsam = jax.tree.map(lambda p, d: p - 0.1 * d, state.params, direction)
    chex.assert_trees_all_close(new.params, gsam, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    moved = jax.tree.map(lambda p, q: float(np.abs(p - q).max()), new.params, plain.params)
    assert max(jax.tree.leaves(moved)) > 1e-5  # GSAM really took a different step from SGD
