"""The runs driver: the vectorised (accelerator) path on CPU, donation, DSA under vmap,
batch-norm statistics in the state."""

import dataclasses
import logging

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.models.zoo import make_network, network_spec
from jaxdd.ops.losses import one_hot
from jaxdd.ops.train import TrainConfig, batch_indices, init_state, make_train_step
from jaxdd.training import Runner

MODEL = make_convnet(ConvNetSpec(10, (8, 8, 1), width=4, depth=2))
# 3 epochs × 3 steps = 9 steps: several 2-step CPU chunks per segment, DSA on.
CONFIG = TrainConfig(epochs=3, batch_size=32, lr_milestones=(), dsa=True, num_seeds=2)


def _runner(digits, vectorize):
    x, y, _, _ = digits
    return Runner(MODEL, x[:96], one_hot(y[:96], 10), CONFIG, vectorize=vectorize)


def _keys():
    return jax.random.split(jax.random.key(3), 2), jnp.full((2,), 0.05, jnp.float32)


def test_vectorised_runs_equal_looped_runs_with_dsa(digits):
    finals = []
    for vectorize in (True, False):
        runner = _runner(digits, vectorize)
        state = runner.init(*_keys())
        finals.append(list(runner.run(state, progress=False))[-1][1].params)
    chex.assert_trees_all_close(finals[0], finals[1], rtol=2e-4, atol=2e-5)


def test_no_donated_buffer_is_read_again(digits):
    runner = _runner(digits, vectorize=True)
    initial = runner.init(*_keys())
    kept = [(e, s) for e, s, _ in runner.run(initial, period=1, progress=False)]
    assert [e for e, _ in kept] == [1, 2, 3]
    # Every yielded state and the caller's input are still readable, and distinct.
    leaves = [np.asarray(jax.tree.leaves(s.params)[0]) for _, s in [(0, initial), *kept]]
    for a, b in zip(leaves, leaves[1:], strict=False):
        assert not np.array_equal(a, b)
    # Resuming from a kept state reproduces the uninterrupted run.
    resumed = list(runner.run(kept[0][1], start_epoch=1, progress=False))[-1][1]
    chex.assert_trees_all_close(resumed.params, kept[-1][1].params, rtol=1e-5, atol=1e-6)


def test_shared_family_key_keeps_one_dsa_family_per_step_under_vmap():
    x = jnp.zeros((8, 8, 8, 1))
    targets = jnp.zeros((8, 10))
    step = make_train_step(MODEL, CONFIG, total_steps=4)
    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(lambda k: init_state(MODEL, CONFIG, 0.1, key=k))(keys)
    shared = jax.make_jaxpr(jax.vmap(lambda s, f: step(s, 0, x, targets, f), in_axes=(0, None)))(
        states, jax.random.key(1)
    )
    own = jax.make_jaxpr(jax.vmap(lambda s: step(s, 0, x, targets)))(states)
    # A switch over a per-run family becomes `select_n` over every family's
    # output; over a shared family it stays a `cond` that runs one branch.
    assert " cond[" in str(shared)
    assert " cond[" not in str(own)


def test_equal_specs_share_one_compilation(digits, caplog):
    x, y, _, _ = digits
    spec = ConvNetSpec(10, (8, 8, 1), width=3, depth=2)  # compiled by no other test
    runs = []
    for _ in range(2):
        # A fresh `make_convnet` call per run, as every driver makes.
        with caplog.at_level(logging.WARNING), jax.log_compiles(True):
            caplog.clear()
            runner = Runner(make_convnet(spec), x[:96], one_hot(y[:96], 10), CONFIG, vectorize=True)
            list(runner.run(runner.init(*_keys()), progress=False))
        runs.append(
            [r.getMessage() for r in caplog.records if "Compiling jit(run)" in r.getMessage()]
        )
    assert len(runs[0]) == 1  # one chunk program for all chunks and segments
    assert runs[1] == []  # the second run reuses it


def test_constant_lr_runs_of_any_length_share_their_kernels(digits):
    # The referees' warm start and rounds, experts of other epoch counts, a
    # distilled set's learned lr: with a constant lr the compiled step is one.
    x, y, _, _ = digits
    x, targets = x[:96], one_hot(y[:96], 10)
    kernels = [
        Runner(MODEL, x, targets, dataclasses.replace(CONFIG, **c))._run_chunk
        for c in ({}, {"epochs": 1, "num_seeds": 5, "lr": 0.37, "epoch_steps": 2})
    ]
    assert kernels[0] is kernels[1]
    scheduled = dataclasses.replace(CONFIG, lr_milestones=(0.5,))
    long, short = (
        Runner(MODEL, x, targets, dataclasses.replace(scheduled, epochs=e))._run_chunk
        for e in (3, 7)
    )
    assert long is not short  # the milestone step depends on the length


def test_per_run_targets_train_each_run_on_its_own_set(digits):
    # [R, N, C] targets: run r of one Runner (vmapped or looped) equals a lone
    # run on targets[r].
    x, y, _, _ = digits
    x = x[:96]
    per_run = np.stack([one_hot(y[:96], 10), one_hot((y[:96] + 1) % 10, 10)])
    keys, lrs = _keys()
    family = jax.random.key(7)  # the DSA families, shared by the runs trained together

    def final(targets, keys, lrs, vectorize):
        runner = Runner(MODEL, x, targets, CONFIG, vectorize=vectorize)
        runs = runner.run(runner.init(keys, lrs), progress=False, family_key=family)
        return list(runs)[-1][1].params

    alone = [final(per_run[r], keys[r : r + 1], lrs[r : r + 1], False) for r in range(2)]
    for vectorize in (True, False):
        together = final(per_run, keys, lrs, vectorize)
        for r in range(2):
            mine = jax.tree.map(lambda leaf, r=r: leaf[r : r + 1], together)
            chex.assert_trees_all_close(mine, alone[r], rtol=2e-4, atol=2e-5)


# A batch-normalised network (VGG-11BN at 1/16 width on 28 px): 40 images in batches of 16,
# so every pass ends on a partial, padded batch whose padding must not touch the statistics.
BN_MODEL = make_network(network_spec("vgg11bn", 10, (28, 28, 1), width_scale=1 / 16))
BN_CONFIG = TrainConfig(epochs=2, batch_size=16, lr_milestones=(), dsa=False, num_seeds=2)


def _bn_runner(vectorize, devices=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 28, 28, 1)).astype(np.float32)
    targets = one_hot(rng.integers(0, 10, 40), 10)
    return Runner(BN_MODEL, x, targets, BN_CONFIG, vectorize=vectorize, devices=devices)


def test_batch_norm_statistics_ride_in_the_state_vmapped_as_looped_and_resume_exactly():
    # Vmapped and sharded over two devices, against looped on one.
    finals = []
    for vectorize, devices in ((True, None), (False, jax.devices()[:1])):
        runner = _bn_runner(vectorize, devices)
        initial = runner.init(_keys()[0], jnp.full((2,), 0.01, jnp.float32))
        kept = [s for _, s, _ in runner.run(initial, period=1, progress=False)]
        finals.append(kept[-1])
        resumed = list(_bn_runner(vectorize, devices).run(kept[0], start_epoch=1, progress=False))
        chex.assert_trees_all_equal(resumed[-1][1].stats, kept[-1].stats)
        chex.assert_trees_all_equal(resumed[-1][1].params, kept[-1].params)
    # Equal up to float summation order (grouped vs plain convolutions).
    chex.assert_trees_all_close(finals[0].stats, finals[1].stats, rtol=5e-4, atol=5e-5)
    chex.assert_trees_all_close(finals[0].params, finals[1].params, rtol=5e-4, atol=5e-5)
    mean = finals[0].stats["layers"][0]["norm"]["mean"]
    assert mean.shape == (2, 4) and not np.allclose(mean[0], mean[1])  # one per seed
    assert not np.allclose(mean, 0)  # moved from the initial statistics
    # Sharded like the parameters: each of two devices holds one run's statistics.
    assert {s.data.shape[0] for s in mean.addressable_shards} == {1}
    assert len(mean.sharding.device_set) == 2


def test_padding_rows_leave_the_running_statistics_alone():
    x = jax.random.normal(jax.random.key(0), (12, 28, 28, 1))
    targets = one_hot(jnp.arange(12) % 10, 10)
    config = dataclasses.replace(BN_CONFIG, batch_size=8)  # the 2nd step: 4 images + 4 padding
    step = jax.jit(make_train_step(BN_MODEL, config, total_steps=2))
    state = init_state(BN_MODEL, config, 0.0, key=jax.random.key(1))
    new, _ = step(state, 1, x, targets)
    order_key, _ = jax.random.split(state.key)
    idx = np.asarray(batch_indices(order_key, 1, 12, 8, drop_last=False))
    assert (idx < 0).sum() == 4
    valid = x[idx[idx >= 0]]
    _, expected = jax.jit(BN_MODEL.apply_train)(state.params, state.stats, valid, None)
    chex.assert_trees_all_close(new.stats, expected, rtol=1e-5, atol=1e-6)
