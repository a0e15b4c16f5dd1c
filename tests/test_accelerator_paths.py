"""The accelerator code paths, run on CPU: they must compute what the CPU paths compute.

On CPU the runs axis loops and loops unroll (docs/architecture.md, "Known
platform traps"); GPUs and TPUs vmap the runs, roll the scans and remat the
student. `jaxdd.ops.loops.accelerator_paths` takes those paths on CPU, so
each is compared here with the default path, DSA on, at tiny size.
"""

import dataclasses
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxdd import evaluate, parallel
from jaxdd.experts import ExpertConfig, train_experts
from jaxdd.methods import datm
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops import loops
from jaxdd.ops.losses import one_hot
from jaxdd.ops.train import TrainConfig

MODEL = make_convnet(ConvNetSpec(10, (8, 8, 1), width=4, depth=2))
REMAT = r" (remat2?|checkpoint)\["  # the primitive of `jax.checkpoint`


def _both(fn):
    """``(accelerator-path result, CPU-path result)`` of ``fn()``."""
    with loops.accelerator_paths():
        assert loops.vectorize_runs() and not loops.on_cpu()
        accelerated = fn()
    assert loops.on_cpu()
    return accelerated, fn()


def test_evaluation_vmapped_and_rolled_equals_looped_and_unrolled(digits):
    x, y, xt, yt = digits
    config = TrainConfig(epochs=2, batch_size=64, num_seeds=2, dsa=True, eval_batch=250)

    def run():
        return evaluate.train_and_evaluate(
            MODEL,
            x[:192],
            one_hot(y[:192], 10),
            xt,
            yt,
            config,
            key=jax.random.key(0),
            lrs=(0.01, 0.05),
            progress=False,
        )

    (fast, fast_params), (slow, slow_params) = _both(run)
    chex.assert_trees_all_close(fast_params, slow_params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.accuracies, slow.accuracies, atol=1 / len(yt) + 1e-9)


def test_vmapped_experts_equal_looped_experts(digits):
    x, y, _, _ = digits
    config = ExpertConfig(num_experts=2, epochs=2, batch_size=64, dsa=True, epoch_size=None)

    def run():
        return train_experts(
            MODEL, x[:192], one_hot(y[:192], 10), config, key=jax.random.key(1), progress=False
        )

    fast, slow = _both(run)
    chex.assert_trees_all_close(fast, slow, rtol=1e-4, atol=1e-5)
    assert jax.tree.leaves(fast)[0].shape[:2] == (2, 3)


def test_datm_rolled_remat_and_sharded_equals_unrolled(digits):
    x, y, _, _ = digits
    config = datm.DATMConfig(
        ipc=2,
        syn_steps=3,
        batch_syn=10,
        dsa=True,
        max_start_epoch=2,
        current_max_start_epoch=1,
        expansion_end_epoch=2,
        iterations=2,
    )
    experts = ExpertConfig(num_experts=2, epochs=3, batch_size=96, dsa=False, epoch_size=None)
    traj = train_experts(
        MODEL, x[:192], one_hot(y[:192], 10), experts, key=jax.random.key(2), progress=False
    )
    images = jnp.asarray(x[:20])
    labels = jax.random.normal(jax.random.key(3), (20, 10))

    def run():
        state = datm.init_state(images, labels, config, key=jax.random.key(4))
        mesh = parallel.runs_mesh(state.images.shape[0])
        state, trajectories = datm.shard_state(state, mesh), parallel.replicate(traj, mesh)
        step = jax.jit(lambda s, t: datm.distill_step(MODEL, config, s, t), donate_argnums=0)
        losses = []
        for _ in range(config.iterations):
            state, metrics = step(state, trajectories)
            losses.append(float(metrics["loss"]))
        return jax.device_get(state), losses, len(state.images.sharding.device_set)

    (fast, fast_losses, fast_devices), (slow, slow_losses, _) = _both(run)
    assert fast_devices == 4  # 20 synthetic images over the 4 simulated devices
    np.testing.assert_allclose(fast_losses, slow_losses, rtol=1e-4)
    chex.assert_trees_all_close(
        (fast.images, fast.labels, fast.syn_lr),
        (slow.images, slow.labels, slow.syn_lr),
        rtol=1e-4,
        atol=1e-5,
    )
    assert int(fast.skipped) == int(slow.skipped) == 0


def test_remat_default_follows_the_path():
    config = dataclasses.replace(datm.DATMConfig(), remat=None)
    with loops.accelerator_paths():
        jaxpr = jax.make_jaxpr(_grad_fn(config))(*_tiny_problem())
    assert re.search(REMAT, str(jaxpr))
    assert not re.search(REMAT, str(jax.make_jaxpr(_grad_fn(config))(*_tiny_problem())))


def _tiny_problem():
    images = jnp.zeros((4, 8, 8, 1))
    labels = jnp.zeros((4, 10))
    params = MODEL.init(jax.random.key(0))
    return images, labels, jnp.float32(0.01), params, params


def _grad_fn(config):
    config = dataclasses.replace(config, syn_steps=2, dsa=False)

    def loss(images, labels, lr, start, target):
        return datm.matching_loss(
            MODEL, config, images, labels, lr, start, target, key=jax.random.key(0)
        )

    return jax.grad(loss)
