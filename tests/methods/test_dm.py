import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import resume

from jaxdd import cli, parallel
from jaxdd.distill import DistillConfig, validate_run
from jaxdd.methods import base, dm
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops import dsa as dsa_lib

C, IPC, B = 3, 2, 4
MODEL = make_convnet(ConvNetSpec(C, (6, 6, 1), width=4, depth=1))
CONFIG = DistillConfig(
    method="dm",
    dm=dm.DMConfig(ipc=IPC, iterations=6, batch_real=B, lr_img=0.5),
    checkpoint_every=3,
    log_every=1,
)


def _real(n=20, seed=0):
    """Real images with labels 0..C-1 (class 2 smaller than the batch)."""
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 8 + [1] * 9 + [2] * 3)[:n]
    x = rng.normal(size=(len(labels), 6, 6, 1)).astype(np.float32)
    return x, labels


def _tables(weights=None):
    x, labels = _real()
    table, weight = base.class_tables(labels, C, weights)
    return dm.RealTables(jnp.asarray(x), jnp.asarray(table), jnp.asarray(weight)), x, labels


def test_class_tables_list_every_member_once_with_zero_weight_padding():
    _, labels = _real()
    table, weight = base.class_tables(labels, C)
    assert table.shape == (C, 9)
    for c in range(C):
        members = table[c][weight[c] > 0]
        np.testing.assert_array_equal(np.sort(members), np.flatnonzero(labels == c))
    assert weight.sum() == len(labels)


def test_class_batches_are_drawn_without_replacement_from_the_class():
    tables, _, labels = _tables()
    for seed in range(5):
        x, w = dm.sample_class_batches(tables, B, key=jax.random.key(seed))
        assert x.shape == (C, B, 6, 6, 1) and w.shape == (C, B)
        for c in range(C):
            # every drawn image is a member of class c (rows matched exactly)
            chosen = np.asarray(x[c])[np.asarray(w[c]) > 0]
            members = np.asarray(tables.x)[labels == c]
            matches = [np.flatnonzero((members == img).all((1, 2, 3))) for img in chosen]
            assert all(len(m) == 1 for m in matches)
            assert len({int(m[0]) for m in matches}) == len(chosen)  # no repeats
            assert len(chosen) == min(B, int((labels == c).sum()))  # small class: all of it


def _naive_losses(params, syn, real, weight, key, use_dsa):
    """The per-class losses by a Python loop over classes (the reference's shape)."""
    family_key, per_class = jax.random.split(key)
    keys = jax.random.split(per_class, syn.shape[0])
    out = []
    for c in range(syn.shape[0]):
        s, r = syn[c], real[c]
        if use_dsa:
            s = dsa_lib.dsa(s, key=keys[c], family_key=family_key)
            r = dsa_lib.dsa(r, key=keys[c], family_key=family_key)
        fs = MODEL.features(params, s)
        fr = MODEL.features(params, r)
        w = np.asarray(weight[c])
        mean_real = (np.asarray(fr) * w[:, None]).sum(0) / w.sum()
        out.append(jnp.sum((jnp.asarray(mean_real) - fs.mean(0)) ** 2))
    return jnp.stack(out)


@pytest.mark.parametrize("use_dsa", [False, True])
def test_all_classes_at_once_equal_a_per_class_loop(use_dsa):
    tables, _, _ = _tables(weights=np.linspace(0.5, 1.5, 20).astype(np.float32))
    real, weight = dm.sample_class_batches(tables, B, key=jax.random.key(1))
    params = MODEL.init(jax.random.key(2))
    syn = jax.random.normal(jax.random.key(3), (C, IPC, 6, 6, 1))
    key = jax.random.key(4)
    fast = jax.jit(lambda s: dm.class_losses(MODEL, params, s, real, weight, key=key, dsa=use_dsa))
    fast, slow = fast(syn), _naive_losses(params, syn, real, weight, key, use_dsa)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)

    def total_fast(s):
        return jnp.sum(dm.class_losses(MODEL, params, s, real, weight, key=key, dsa=use_dsa))

    def total_slow(s):
        family_key, per_class = jax.random.split(key)
        keys = jax.random.split(per_class, C)
        total = 0.0
        for c in range(C):
            sc = dsa_lib.dsa(s[c], key=keys[c], family_key=family_key) if use_dsa else s[c]
            rc = dsa_lib.dsa(real[c], key=keys[c], family_key=family_key) if use_dsa else real[c]
            mr = jnp.sum(MODEL.features(params, rc) * weight[c][:, None], 0) / jnp.sum(weight[c])
            total = total + jnp.sum((mr - MODEL.features(params, sc).mean(0)) ** 2)
        return total

    grads = [jax.jit(jax.grad(total))(syn) for total in (total_fast, total_slow)]
    np.testing.assert_allclose(*grads, rtol=1e-4, atol=1e-6)


def test_gradient_matches_finite_differences_in_float64():
    with jax.enable_x64(True):
        tables, _, _ = _tables()
        tables = jax.tree.map(
            lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, tables
        )
        real, weight = dm.sample_class_batches(tables, B, key=jax.random.key(1))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), MODEL.init(jax.random.key(2)))
        syn = jax.random.normal(jax.random.key(3), (C, IPC, 6, 6, 1), jnp.float64)
        key = jax.random.key(5)

        def loss(s):
            return jnp.sum(dm.class_losses(MODEL, params, s, real, weight, key=key, dsa=True))

        direction = jax.random.normal(jax.random.key(6), syn.shape, jnp.float64)
        eps = 1e-6
        value = jax.jit(loss)  # one program for both points, not op by op
        numeric = (value(syn + eps * direction) - value(syn - eps * direction)) / (2 * eps)
        analytic = jnp.vdot(jax.jit(jax.grad(loss))(syn), direction)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def _state(images=None):
    images = jax.random.normal(jax.random.key(7), (C * IPC, 6, 6, 1)) if images is None else images
    return dm.init_state(images, CONFIG.dm, key=jax.random.key(8))


def test_a_step_updates_only_the_images_and_a_fresh_network_each_time():
    tables, _, _ = _tables()
    step = jax.jit(lambda s: dm.distill_step(MODEL, CONFIG.dm, s, tables))
    state = _state()
    first, metrics = step(state)
    assert bool(metrics["accepted"]) and int(first.iteration) == 1 and int(first.skipped) == 0
    assert not np.allclose(first.images, state.images)
    # the network of iteration i comes from that iteration's key alone: iterations differ
    second, metrics2 = step(first)
    assert float(metrics["loss"]) != float(metrics2["loss"])


def test_a_non_finite_step_leaves_images_and_momentum_untouched():
    tables, _, _ = _tables()
    step = jax.jit(lambda s: dm.distill_step(MODEL, CONFIG.dm, s, tables))
    state, _ = step(_state())  # a momentum that is not zero
    poisoned = state._replace(images=state.images.at[0].set(jnp.nan))
    after, metrics = step(poisoned)
    assert not bool(metrics["accepted"]) and int(after.skipped) == 1
    np.testing.assert_array_equal(after.images, poisoned.images)
    for a, b in zip(
        jax.tree.leaves(after.opt_state), jax.tree.leaves(state.opt_state), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def _loop(config, state, tables, path):
    return resume.loop(MODEL, config, state, tables, path)


def test_resumed_dm_equals_uninterrupted(tmp_path):
    tables, _, _ = _tables()
    straight = _loop(CONFIG, _state(), tables, tmp_path / "a")
    short = dataclasses.replace(CONFIG, dm=dataclasses.replace(CONFIG.dm, iterations=3))
    _loop(short, _state(), tables, tmp_path / "b")
    resumed = _loop(CONFIG, _state(), tables, tmp_path / "b")
    assert int(resumed.iteration) == 6
    np.testing.assert_array_equal(straight.images, resumed.images)
    np.testing.assert_array_equal(
        jax.random.key_data(straight.key), jax.random.key_data(resumed.key)
    )


def test_dm_ignores_the_other_methods_settings():
    unused = CONFIG.unused()
    assert "datm.lr_img" in unused and "experts.epochs" in unused
    assert "dm.lr_img" not in unused and "eval.lr" not in unused
    with pytest.raises(Exception, match="no effect"):
        cli._distill_config(
            cli._parser().parse_args(["distill", "--method", "dm", "--syn-steps", "3"])
        )
    with pytest.raises(Exception, match="dm.momentum_img"):
        config = cli._distill_config(
            cli._parser().parse_args(["distill", "--method", "dm", "--set", "dm.momentum_img=1"])
        )
        validate_run(config, out_root="runs", run_dir=None, experts_dir="runs/experts")
    args = cli._parser().parse_args(["distill", "--method", "dm", "--ipc", "3", "--no-dsa"])
    config = cli._distill_config(args)
    assert config.dm.ipc == 3 and config.dm.dsa is False and config.datm.ipc == 10


def test_cli_dm_end_to_end_with_a_trust_split(tmp_path, capsys):
    argv = [
        "distill", "--method", "dm", "--dataset", "digits", "--noise", "symmetric:0.4",
        "--trust", "small-loss", "--width", "4", "--max-train", "300", "--ipc", "2",
        "--iterations", "4", "--eval-epochs", "5", "--seeds", "2", "--checkpoint-every", "2",
        "--no-dsa", "--set", "dm.batch_real=16", "--set", "trust.width=4",
        "--set", "trust.warmup_steps=40",
        "--run-dir", str(tmp_path / "run"),
        "--experts-dir", str(tmp_path / "experts"), "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    assert "dm on digits" in capsys.readouterr().out
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "dm" and summary["iterations"] == 4
    assert len(summary["accuracies"]) == 2 and "syn_lr" not in summary
    # the real batches came from the diverted set: it is smaller than the capped data
    assert summary["train_size"] < 300
    # DM trains no experts: the cache holds only the trust split
    assert [p.name.split("-")[0] for p in (tmp_path / "experts").iterdir()] == ["split"]
    with np.load(run / "distilled.npz") as saved:
        assert saved["images"].shape == (20, 8, 8, 1)
        np.testing.assert_array_equal(saved["labels"].argmax(-1), np.repeat(np.arange(10), 2))
    assert {"distilled.png", "curves.png", "metrics.jsonl"} <= {p.name for p in run.iterdir()}


def test_one_and_four_devices_give_the_same_distilled_set():
    tables, _, _ = _tables()
    method = base.get_method("dm")
    # Without DSA: the sharding is what is tested, and DSA's compilation is long on CPU.
    config = dataclasses.replace(CONFIG, dm=dataclasses.replace(CONFIG.dm, dsa=False))
    step = jax.jit(lambda s, r: method.step(MODEL, config, s, r))
    mesh = parallel.runs_mesh(C * IPC)
    assert mesh.size == 3  # 6 images over the 4 simulated devices: a mesh that divides them
    one, tables1 = _state(), tables
    four, tables4 = method.shard(_state(), tables, mesh)
    assert {s.data.shape[0] for s in four.images.addressable_shards} == {2}  # split, not copied
    for _ in range(3):
        one, _ = step(one, tables1)
        four, _ = step(four, tables4)
    np.testing.assert_allclose(one.images, four.images, rtol=1e-5, atol=1e-6)
