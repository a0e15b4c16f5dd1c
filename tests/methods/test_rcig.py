import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import resume
from jax.flatten_util import ravel_pytree

from jaxdd.methods import rcig
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops import loops

C, IPC = 3, 2
SPEC = ConvNetSpec(
    C, (6, 6, 1), width=2, depth=1, norm="none", activation="softplus", growth=2, init="lecun"
)
MODEL = make_convnet(SPEC)


def _f64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64), tree)


def _problem(flip=True, lam=0.05):
    """A tiny float64 meta-step: θ₀, ψ and a real batch (call inside enable_x64)."""
    theta0 = _f64(MODEL.init(jax.random.key(0)))
    x_real = jax.random.normal(jax.random.key(1), (7, 6, 6, 1), jnp.float64)
    y_real = jax.nn.one_hot(jnp.arange(7) % C, C, dtype=jnp.float64)
    problem = rcig.Problem(MODEL, theta0, jnp.float64(lam), flip, x_real, y_real)
    images = jax.random.normal(jax.random.key(2), (C * IPC, 6, 6, 1), jnp.float64)
    labels = jax.nn.one_hot(jnp.arange(C * IPC) // IPC, C, dtype=jnp.float64) - 1.0 / C
    psi = rcig.Coreset(images, labels, jnp.float64(0.2))
    return problem, psi, theta0


def _direction(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return rcig.mask_tangent(
        jax.tree.unflatten(
            treedef,
            [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)],
        )
    )


def test_the_krr_head_equals_an_independent_ridge_least_squares_fit():
    rng = np.random.default_rng(0)
    phi_s, phi_t = rng.normal(size=(5, 8)), rng.normal(size=(4, 8))
    residual, lam = rng.normal(size=(5, C)), 0.3
    with jax.enable_x64(True):
        alpha = rcig.krr_alpha(jnp.asarray(phi_s), jnp.asarray(residual), jnp.float64(lam))
        dual = phi_t @ phi_s.T @ np.asarray(alpha)
    # primal ridge regression: argmin_W ‖φ_s W − r‖² + λ‖W‖², by lstsq on the stacked system
    stacked = np.vstack([phi_s, np.sqrt(lam) * np.eye(8)])
    target = np.vstack([residual, np.zeros((8, C))])
    w = np.linalg.lstsq(stacked, target, rcond=None)[0]
    np.testing.assert_allclose(dual, phi_t @ w, rtol=1e-10, atol=1e-12)


def test_the_linearised_forward_is_the_network_and_its_directional_derivative():
    with jax.enable_x64(True):
        theta0 = _f64(MODEL.init(jax.random.key(0)))
        x = jax.random.normal(jax.random.key(1), (4, 6, 6, 1), jnp.float64)
        d = _direction(theta0, 3)
        logits, phi, out = rcig.linearized(MODEL, theta0, d, x)
        np.testing.assert_allclose(logits, MODEL.apply(theta0, x), rtol=1e-12)
        np.testing.assert_allclose(phi, MODEL.features(theta0, x), rtol=1e-12)
        eps = 1e-6

        def at(step):
            return MODEL.apply(jax.tree.map(lambda a, b: a + step * b, theta0, d), x)

        shifted = [at(eps), at(-eps)]
        np.testing.assert_allclose(out, (shifted[0] - shifted[1]) / (2 * eps), rtol=1e-6, atol=1e-9)
        _, _, zero = rcig.linearized(MODEL, theta0, rcig.zero_tangent(theta0), x)
        np.testing.assert_array_equal(zero, 0.0)


def test_the_hvp_matches_finite_differences_of_the_inner_gradient():
    with jax.enable_x64(True):
        problem, psi, theta0 = _problem()
        delta, v = _direction(theta0, 4), _direction(theta0, 5)
        grad = jax.grad(problem.inner_loss)
        eps = 1e-5
        plus = grad(jax.tree.map(lambda a, b: a + eps * b, delta, v), psi)
        minus = grad(jax.tree.map(lambda a, b: a - eps * b, delta, v), psi)
        numeric = rcig.mask_tangent(jax.tree.map(lambda a, b: (a - b) / (2 * eps), plus, minus))
        exact = problem.hvp(delta, psi)(v)
        np.testing.assert_allclose(
            ravel_pytree(exact)[0], ravel_pytree(numeric)[0], rtol=1e-6, atol=1e-10
        )


def test_cg_adam_on_the_quadratic_and_scipy_cg_give_the_same_solution():
    with jax.enable_x64(True):
        problem, psi, theta0 = _problem(lam=5.0)  # conditioned for Adam to converge
        hvp = problem.hvp(rcig.zero_tangent(theta0), psi)
        b = _direction(theta0, 6)
        ours = rcig.solve_quadratic(hvp, b, steps=60, solver="cg", lr=0.0)
        theirs = jax.scipy.sparse.linalg.cg(hvp, b, maxiter=200, tol=1e-14)[0]
        with loops.accelerator_paths():  # a rolled loop: 20 000 steps do not unroll
            adam = rcig.solve_quadratic(hvp, b, steps=20000, solver="adam", lr=1e-2)
        flat = ravel_pytree(ours)[0]
        np.testing.assert_allclose(flat, ravel_pytree(theirs)[0], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(ravel_pytree(adam)[0], flat, atol=1e-4 * np.abs(flat).max())
        residual = jax.tree.map(jnp.subtract, hvp(ours), b)
        assert np.abs(ravel_pytree(residual)[0]).max() < 1e-8


def test_the_inner_solution_minimises_the_inner_loss():
    with jax.enable_x64(True):
        problem, psi, theta0 = _problem()
        config = rcig.RCIGConfig(inner_steps=60)
        with loops.accelerator_paths():  # a rolled loop compiles faster than 60 unrolled steps
            delta = rcig.solve_inner(problem, psi, config, theta0)
        grad = rcig.mask_tangent(jax.grad(problem.inner_loss)(delta, psi))
        assert np.abs(ravel_pytree(grad)[0]).max() < 1e-9
        assert float(problem.inner_loss(delta, psi)) < float(
            problem.inner_loss(rcig.zero_tangent(theta0), psi)
        )
        np.testing.assert_array_equal(delta["head"]["kernel"], 0.0)  # not part of Δθ


def test_the_implicit_gradient_equals_the_gradient_through_an_exact_inner_solve():
    """Independent: Δθ*(ψ) by a dense Hessian solve, differentiated end to end."""
    with jax.enable_x64(True):
        problem, psi, theta0 = _problem(flip=True)
        mask = rcig.mask_tangent(jax.tree.map(jnp.ones_like, theta0))
        keep = ravel_pytree(mask)[0] > 0
        _, unravel = ravel_pytree(theta0)

        def exact_delta(p):
            def loss(flat):
                full = jnp.zeros(keep.shape, jnp.float64).at[np.flatnonzero(keep)].set(flat)
                return problem.inner_loss(unravel(full), p)

            zero = jnp.zeros(int(keep.sum()), jnp.float64)
            sol = -jnp.linalg.solve(jax.hessian(loss)(zero), jax.grad(loss)(zero))
            return unravel(jnp.zeros(keep.shape, jnp.float64).at[np.flatnonzero(keep)].set(sol))

        expected = jax.grad(lambda p: problem.outer_loss(exact_delta(p), p))(psi)
        config = rcig.RCIGConfig(inner_steps=80, hinv_steps=80)
        with loops.accelerator_paths():  # rolled CG loops compile faster than 80 unrolled steps
            delta = rcig.solve_inner(problem, psi, config, theta0)
            _, direct, implicit = rcig.raw_gradients(problem, psi, delta, config)
        total = jax.tree.map(jnp.add, direct, implicit)
        for got, want in zip(jax.tree.leaves(total), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
        # the implicit part matters here: the direct gradient alone is not the answer
        assert not np.allclose(direct.images, expected.images, rtol=1e-3)


def test_clipping_bounds_each_implicit_leaf_by_its_direct_leaf():
    g, ref = jnp.array([3.0, 4.0]), jnp.array([0.0, 1.0])
    np.testing.assert_allclose(rcig._clip_to(g, ref), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(rcig._clip_to(ref, g), ref)  # smaller: unchanged
    np.testing.assert_array_equal(rcig._clip_to(jnp.zeros(2), jnp.zeros(2)), 0.0)


def test_the_label_margin_is_the_clipped_top_two_gap():
    labels = jnp.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25]])
    expect = (min(0.8, 1 / 6) + 0.05) / 2
    np.testing.assert_allclose(rcig.label_margin(labels), expect, rtol=1e-6)


SMALL = rcig.RCIGConfig(
    ipc=IPC, iterations=6, batch_real=5, inner_steps=3, hinv_steps=3, pool_size=3,
    pool_max_steps=2, pool_reset=3, flip=True,
)  # fmt: skip


def _real():
    x = jax.random.normal(jax.random.key(11), (12, 6, 6, 1))
    return rcig.Real(x, jax.nn.one_hot(jnp.arange(12) % C, C))


def _state(config=SMALL):
    images = jax.random.normal(jax.random.key(12), (C * IPC, 6, 6, 1))
    return rcig.init_state(MODEL, images, C, config, key=jax.random.key(13))


def test_a_meta_step_moves_the_set_and_only_the_picked_pool_model_without_host_transfers():
    state, real = _state(), _real()
    before = jax.tree.map(np.asarray, state._replace(key=jax.random.key_data(state.key)))
    step = jax.jit(lambda s, r: rcig.distill_step(MODEL, SMALL, s, r))
    step(_state(), real)  # compile (and place the inputs) outside the guard
    with jax.transfer_guard("disallow"):
        after, metrics = step(state, real)
    p = int(metrics["model"])
    assert bool(metrics["accepted"]) and bool(metrics["implicit_finite"])
    assert not np.allclose(after.psi.images, before.psi.images)
    assert not np.allclose(after.psi.labels, before.psi.labels)  # labels are learned
    for i in range(SMALL.pool_size):
        moved = [
            not np.array_equal(a[i], b[i])
            for a, b in zip(jax.tree.leaves(after.pool), jax.tree.leaves(before.pool), strict=True)
        ]
        assert any(moved) == (i == p)
    assert int(after.pool_steps[p]) == int(metrics["pool_steps"]) and int(after.iteration) == 1
    # the EMA after one step, bias-corrected, is the new set itself
    ema = rcig.ema_value(after, SMALL)
    np.testing.assert_allclose(ema.images, after.psi.images, rtol=1e-5, atol=1e-6)


def test_a_pool_model_is_reinitialised_once_its_step_budget_is_spent():
    state, real = _state(), _real()
    step = jax.jit(lambda s, r: rcig.distill_step(MODEL, SMALL, s, r))
    reset_seen = False
    for _ in range(8):
        prev = state.pool_steps
        state, metrics = step(state, real)
        p, n = int(metrics["model"]), int(metrics["pool_steps"])
        assert 1 <= n <= SMALL.pool_max_steps
        expected = int(prev[p]) + n
        if expected >= SMALL.pool_reset:
            reset_seen = True
            assert int(state.pool_steps[p]) == 0
        else:
            assert int(state.pool_steps[p]) == expected
    assert reset_seen


def test_fixed_labels_stay_and_a_non_finite_step_is_skipped_and_counted():
    fixed = dataclasses.replace(SMALL, learn_labels=False)
    step = jax.jit(lambda s, r: rcig.distill_step(MODEL, fixed, s, r))
    after, _ = step(_state(fixed), _real())
    np.testing.assert_array_equal(after.psi.labels, rcig.initial_labels(C, IPC))
    bad = _state(fixed)
    bad = bad._replace(psi=bad.psi._replace(images=jnp.full((C * IPC, 6, 6, 1), jnp.nan)))
    after, metrics = step(bad, _real())
    assert not bool(metrics["accepted"]) and int(after.skipped) == 1
    assert bool(jnp.all(jnp.isnan(after.psi.images)))  # left as it was, not "repaired"


def _loop(config, state, real, path):
    from jaxdd.distill import DistillConfig

    run_config = DistillConfig(method="rcig", rcig=config, checkpoint_every=3, log_every=1)
    return resume.loop(MODEL, run_config, state, real, path)


def test_resumed_rcig_equals_uninterrupted_pool_included(tmp_path):
    real = _real()
    straight = _loop(SMALL, _state(), real, tmp_path / "a")
    short = dataclasses.replace(SMALL, iterations=3)
    _loop(short, _state(), real, tmp_path / "b")
    resumed = _loop(SMALL, _state(), real, tmp_path / "b")
    assert int(resumed.iteration) == 6
    resume.assert_same_state(straight, resumed)


def test_one_and_four_devices_give_the_same_distilled_set():
    from jaxdd import parallel

    method = rcig.METHODS["rcig"]
    run_config = type("Run", (), {"rcig": SMALL})()
    step = jax.jit(lambda s, r: method.step(MODEL, run_config, s, r))
    one, real1 = _state(), _real()
    four, real4 = method.shard(_state(), _real(), parallel.runs_mesh(C * IPC))
    for _ in range(3):
        one, _ = step(one, real1)
        four, _ = step(four, real4)
    np.testing.assert_allclose(one.psi.images, four.psi.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.psi.labels, four.psi.labels, rtol=1e-5, atol=1e-6)


def test_cli_rcig_end_to_end(tmp_path, capsys):
    import json

    from jaxdd import cli

    argv = [
        "distill", "--method", "rcig", "--dataset", "digits", "--noise", "symmetric:0.4",
        "--width", "4", "--max-train", "300", "--ipc", "2",
        "--iterations", "4", "--eval-epochs", "5", "--seeds", "2", "--checkpoint-every", "2",
        "--set", "rcig.batch_real=32", "--set", "rcig.pool_size=2", "--set", "rcig.inner_steps=2",
        "--set", "rcig.hinv_steps=2", "--set", "rcig.pool_max_steps=2", "--set", "rcig.flip=false",
        "--run-dir", str(tmp_path / "run"), "--experts-dir", str(tmp_path / "experts"),
        "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    assert "rcig on digits" in capsys.readouterr().out
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "rcig" and summary["iterations"] == 4
    assert summary["implicit_dropped"] == 0 and len(summary["accuracies"]) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["eval"]["optimizer"] == "adam" and config["eval"]["loss"] == "mse"
    with np.load(run / "distilled.npz") as saved:
        assert saved["images"].shape == (20, 8, 8, 1)
        # learned labels start at one-hot − 1/C: still led by their class after 4 steps
        np.testing.assert_array_equal(saved["labels"].argmax(-1), np.repeat(np.arange(10), 2))
        assert saved["log_temp"].shape == () and not bool(saved["flip"])


def test_a_chunked_real_batch_gives_the_same_outer_loss_and_gradients():
    with jax.enable_x64(True):
        problem, psi, theta0 = _problem()
        x = jnp.concatenate([problem.x_real, problem.x_real[:5] * 0.5])  # 12 images
        y = jnp.concatenate([problem.y_real, problem.y_real[:5]])
        whole = problem._replace(x_real=x, y_real=y)
        chunked = whole._replace(real_chunk=4)
        delta = _direction(theta0, 7)
        a = jax.value_and_grad(whole.outer_loss, argnums=(0, 1))(delta, psi)
        b = jax.value_and_grad(chunked.outer_loss, argnums=(0, 1))(delta, psi)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    from jaxdd.distill import DistillConfig
    from jaxdd.errors import ConfigError

    bad = DistillConfig(method="rcig", rcig=rcig.RCIGConfig(batch_real=10, real_chunk=4))
    with pytest.raises(ConfigError, match="must divide"):
        rcig.METHODS["rcig"].check(bad, lambda path: path)
