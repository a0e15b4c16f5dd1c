import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.experts import snapshot
from jaxdd.methods import datm
from jaxdd.methods.datm_init import expert_label_logits
from jaxdd.models.base import stateless_model
from jaxdd.models.convnet import ConvNetSpec, make_convnet

MODEL = make_convnet(ConvNetSpec(3, (6, 6, 1), width=4, depth=1))
TINY = datm.DATMConfig(ipc=2, syn_steps=3, dsa=False, soft_labels=True)


def _problem(dtype=jnp.float32):
    k = jax.random.split(jax.random.key(0), 4)
    images = jax.random.normal(k[0], (6, 6, 6, 1), dtype)
    labels = jax.random.normal(k[1], (6, 3), dtype)
    start = jax.tree.map(lambda a: a.astype(dtype), MODEL.init(k[2]))
    target = jax.tree.map(lambda a, b: a + 0.05 * b.astype(dtype), start, MODEL.init(k[3]))
    return images, labels, jnp.asarray(0.05, dtype), start, target


def _loss(config, images, labels, lr, start, target):
    return datm.matching_loss(
        MODEL, config, images, labels, lr, start, target, key=jax.random.key(7)
    )


@pytest.mark.parametrize("dsa", [False, True])
def test_gradient_matches_finite_differences(dsa):
    # With DSA, every student step augments its batch; with the key fixed the
    # augmentation is a fixed linear map, so the gradient through it is exact.
    config = dataclasses.replace(TINY, dsa=dsa)
    with jax.enable_x64(True):
        images, labels, lr, start, target = _problem(jnp.float64)
        grads = jax.grad(_loss, argnums=(1, 2, 3))(config, images, labels, lr, start, target)
        rng = np.random.default_rng(0)
        eps = 1e-5
        for argnum, grad in zip((1, 2, 3), grads, strict=True):
            args = [config, images, labels, lr, start, target]
            direction = jnp.asarray(rng.standard_normal(np.shape(args[argnum])))
            plus, minus = list(args), list(args)
            plus[argnum] = args[argnum] + eps * direction
            minus[argnum] = args[argnum] - eps * direction
            numeric = (_loss(*plus) - _loss(*minus)) / (2 * eps)
            analytic = jnp.sum(grad * direction)
            np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)


def test_remat_gives_the_same_gradient():
    images, labels, lr, start, target = _problem()
    remat = dataclasses.replace(TINY, remat=True)
    g0 = jax.grad(_loss, argnums=(1, 2, 3))(TINY, images, labels, lr, start, target)
    g1 = jax.grad(_loss, argnums=(1, 2, 3))(remat, images, labels, lr, start, target)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_loss_is_one_when_the_student_does_not_move():
    images, labels, lr, start, target = _problem()
    assert float(_loss(TINY, images, labels, 0.0 * lr, start, target)) == pytest.approx(1.0)
    assert float(_loss(TINY, images, labels, lr, start, target)) != pytest.approx(1.0)


def test_window_schedule_follows_section_1_4():
    cfg = datm.DATMConfig(current_max_start_epoch=10, max_start_epoch=20, expansion_end_epoch=1000)
    got = [int(datm.window_upper(cfg, it)) for it in (0, 99, 100, 550, 999, 1000, 5000)]
    assert got == [10, 10, 11, 15, 19, 20, 20]
    off = dataclasses.replace(cfg, sequential_generation=False)
    assert int(datm.window_upper(off, 0)) == 20


def test_distill_step_draws_start_epochs_inside_the_window():
    cfg = dataclasses.replace(
        TINY,
        min_start_epoch=2,
        current_max_start_epoch=4,
        max_start_epoch=6,
        expansion_end_epoch=10,
        expert_epochs=1,
    )
    traj = _trajectories(epochs=6)
    images, labels, *_ = _problem()

    def start_epoch(key, iteration):
        state = datm.init_state(images, labels, cfg, key=key)._replace(iteration=iteration)
        return datm.distill_step(MODEL, cfg, state, traj)[1]["start_epoch"]

    keys = jax.random.split(jax.random.key(0), 64)
    draws = jax.jit(jax.vmap(start_epoch, (0, None)))
    # [t_min, t_upper): the window starts at [2, 4) and has grown to [2, 6) at iteration 10.
    assert set(np.asarray(draws(keys, jnp.int32(0))).tolist()) == {2, 3}
    assert set(np.asarray(draws(keys, jnp.int32(10))).tolist()) == {2, 3, 4, 5}


def test_minibatch_schedule_chunks_permutations():
    batches = np.asarray(datm.minibatch_schedule(jax.random.key(0), 10, 3, 7))
    assert batches.shape == (7, 3)
    first = batches[:3].ravel()  # 10 // 3 = 3 full chunks of one permutation
    assert len(set(first.tolist())) == 9
    assert not np.array_equal(batches[:3], batches[3:6])


def _trajectories(num_experts=2, epochs=6):
    keys = jax.random.split(jax.random.key(1), num_experts * (epochs + 1))
    snaps = jax.vmap(MODEL.init)(keys)
    return jax.tree.map(lambda a: a.reshape(num_experts, epochs + 1, *a.shape[1:]), snaps)


def test_gate_and_nan_skip_the_update():
    images, labels, _, _, _ = _problem()
    traj = _trajectories()
    cfg = dataclasses.replace(TINY, current_max_start_epoch=2, max_start_epoch=3, threshold=0.0)
    state = datm.init_state(images, labels, cfg, key=jax.random.key(0))
    new, metrics = datm.distill_step(MODEL, cfg, state, traj)
    assert not bool(metrics["accepted"]) and int(new.skipped) == 1
    np.testing.assert_array_equal(new.images, state.images)
    poisoned = state._replace(images=state.images.at[0, 0, 0, 0].set(jnp.nan))
    loose = dataclasses.replace(cfg, threshold=10.0)
    new, metrics = datm.distill_step(MODEL, loose, poisoned, traj)
    assert not bool(metrics["accepted"])
    ok, metrics = datm.distill_step(MODEL, loose, state, traj)
    assert bool(metrics["accepted"]) and int(ok.iteration) == 1
    assert not np.allclose(ok.images, state.images)
    assert float(ok.syn_lr) != float(state.syn_lr)


def _same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_a_gated_or_non_finite_step_leaves_everything_but_the_counters_untouched():
    images, labels, _, _, _ = _problem()
    traj = _trajectories()
    loose = dataclasses.replace(TINY, current_max_start_epoch=2, max_start_epoch=3, threshold=10.0)
    state = datm.init_state(images, labels, loose, key=jax.random.key(0))
    state, metrics = datm.distill_step(MODEL, loose, state, traj)  # momenta now non-zero
    assert bool(metrics["accepted"])
    assert all(float(jnp.abs(m).max()) > 0 for m in jax.tree.leaves(state.opt_state))
    gated = dataclasses.replace(loose, threshold=0.0)
    poisoned = state._replace(labels=state.labels.at[0, 0].set(jnp.inf))
    for cfg, before in ((gated, state), (loose, poisoned)):
        after, metrics = datm.distill_step(MODEL, cfg, before, traj)
        assert not bool(metrics["accepted"])
        _same(
            (after.images, after.labels, after.syn_lr, after.opt_state),
            (before.images, before.labels, before.syn_lr, before.opt_state),
        )
        assert int(after.skipped) == int(before.skipped) + 1
        assert int(after.iteration) == int(before.iteration) + 1
        assert all(bool(jnp.isfinite(m).all()) for m in jax.tree.leaves(after.opt_state))


def test_the_target_is_exactly_expert_epochs_after_the_start():
    images, labels, _, _, _ = _problem()
    traj = _trajectories(epochs=6)
    cfg = dataclasses.replace(
        TINY, current_max_start_epoch=3, max_start_epoch=4, expert_epochs=2, threshold=10.0
    )
    state = datm.init_state(images, labels, cfg, key=jax.random.key(5))
    _, metrics = datm.distill_step(MODEL, cfg, state, traj)
    expert, start = int(metrics["expert"]), int(metrics["start_epoch"])
    loss_key = jax.random.split(state.key, 4)[3]  # the step's matching key

    def loss_towards(target_epoch):
        return float(
            datm.matching_loss(
                MODEL,
                cfg,
                state.images,
                state.labels,
                state.syn_lr,
                snapshot(traj, expert, start),
                snapshot(traj, expert, target_epoch),
                key=loss_key,
            )
        )

    assert float(metrics["loss"]) == pytest.approx(loss_towards(start + 2), rel=1e-6)
    assert float(metrics["loss"]) != pytest.approx(loss_towards(start + 1), rel=1e-3)
    assert float(metrics["loss"]) != pytest.approx(loss_towards(start + 3), rel=1e-3)


def test_hard_labels_stay_fixed():
    images, labels, _, _, _ = _problem()
    cfg = dataclasses.replace(
        TINY, soft_labels=False, threshold=10.0, current_max_start_epoch=2, max_start_epoch=3
    )
    onehot = jax.nn.one_hot(jnp.arange(6) % 3, 3)
    state = datm.init_state(images, onehot, cfg, key=jax.random.key(0))
    new, _ = datm.distill_step(MODEL, cfg, state, _trajectories())
    np.testing.assert_array_equal(new.labels, onehot)


def test_soft_label_init_averages_only_experts_that_are_right():
    fake = stateless_model(
        None, lambda p, x: jnp.broadcast_to(p["logits"], (x.shape[0], 3)), None, None
    )
    finals = np.array([[5.0, 0, 0], [0, 5.0, 0], [4.0, 1.0, 0]])  # experts' final logits
    traj = {"logits": np.stack([np.zeros_like(finals), finals], axis=1)}  # [E, T+1, C]
    got = expert_label_logits(fake, traj, np.zeros((3, 2, 2, 1)), np.array([0, 1, 2]))
    np.testing.assert_allclose(got[0], [4.5, 0.5, 0])  # experts 0 and 2 say class 0
    np.testing.assert_allclose(got[1], [0, 5.0, 0])  # only expert 1 says class 1
    np.testing.assert_allclose(got[2], finals.mean(0))  # nobody right: all experts
