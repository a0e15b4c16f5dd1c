import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import resume

from jaxdd import cli
from jaxdd.distill import DistillConfig, method_defaults
from jaxdd.methods import base, dance, dm
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops.losses import soft_cross_entropy

C, IPC, B, P = 3, 2, 4, 2
MODEL = make_convnet(ConvNetSpec(C, (8, 8, 1), width=4, depth=1))
SETTINGS = dance.DANCEConfig(ipc=IPC, iterations=4, batch_real=B)


def _resources(low=-3.0, high=3.0):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(C), 6)
    x = rng.normal(size=(len(labels), 8, 8, 1)).astype(np.float32)
    table, weight = base.class_tables(labels, C)
    tables = dm.RealTables(jnp.asarray(x), jnp.asarray(table), jnp.asarray(weight))
    inits = jax.vmap(MODEL.init)(jax.random.split(jax.random.key(1), P))
    finals = jax.vmap(MODEL.init)(jax.random.split(jax.random.key(2), P))
    pool = dance.Pool(inits, finals)
    return dance.Resources(tables, pool, jnp.full((1,), low), jnp.full((1,), high))


def test_the_middle_encoder_is_either_end_exactly_at_lambda_zero_and_one():
    a, b = MODEL.init(jax.random.key(0)), MODEL.init(jax.random.key(1))
    for lam, expect in ((1.0, a), (0.0, b)):
        mid = dance.interpolate(a, b, jnp.float32(lam))
        for x, y in zip(jax.tree.leaves(mid), jax.tree.leaves(expect), strict=True):
            np.testing.assert_array_equal(x, y)
    half = dance.interpolate(a, b, jnp.float32(0.25))
    for x, p, q in zip(*(jax.tree.leaves(t) for t in (half, a, b)), strict=True):
        np.testing.assert_allclose(x, 0.25 * p + 0.75 * q, rtol=1e-6)


def test_factor_one_decodes_to_itself_and_factor_two_to_upsampled_tiles():
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 2))
    np.testing.assert_array_equal(dance.decode(x, 1), x)
    out = dance.decode(x, 2)
    assert out.shape == (12, 8, 8, 2)
    for i in range(3):
        for r in range(2):
            for c in range(2):
                tile = x[i, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
                expect = jax.image.resize(tile, (8, 8, 2), "bilinear", antialias=False)
                np.testing.assert_allclose(out[4 * i + 2 * r + c], expect, rtol=1e-6, atol=1e-6)
    # a constant tile decodes to a constant image: the layout is exact, not blurred across tiles
    const = jnp.zeros((1, 8, 8, 1)).at[0, :4, 4:].set(1.0)
    np.testing.assert_allclose(dance.decode(const, 2)[1], 1.0, atol=1e-6)


def test_form_lays_real_images_out_so_that_decode_gives_them_back_coarsely():
    x = np.broadcast_to(np.arange(8, dtype=np.float32)[:, None, None, None], (8, 8, 8, 1))
    stored = dance.form(np.ascontiguousarray(x), 2)
    assert stored.shape == (2, 8, 8, 1)
    back = np.asarray(dance.decode(jnp.asarray(stored), 2))
    np.testing.assert_allclose(back, x, atol=1e-5)  # constant images survive the round trip


def test_inter_class_loss_is_the_sum_over_classes_of_each_class_mean_ce():
    params = MODEL.init(jax.random.key(3))
    images = jax.random.normal(jax.random.key(4), (C * IPC, 8, 8, 1))
    fast = dance.inter_class_loss(MODEL, params, images, C, key=jax.random.key(5), dsa=False)
    slow = sum(
        soft_cross_entropy(
            MODEL.apply(params, images[c * IPC : (c + 1) * IPC]),
            jax.nn.one_hot(jnp.full(IPC, c), C),
        )
        for c in range(C)
    )
    np.testing.assert_allclose(fast, slow, rtol=1e-5)


def test_the_loss_is_both_views_and_the_gradient_matches_finite_differences():
    res = _resources()
    state = dance.init_state(
        jax.random.normal(jax.random.key(6), (C * IPC, 8, 8, 1)), SETTINGS, key=jax.random.key(7)
    )
    _, metrics = jax.jit(lambda s: dance.distill_step(MODEL, SETTINGS, s, res))(state)
    np.testing.assert_allclose(metrics["loss"], metrics["intra"] + metrics["inter"], rtol=1e-6)
    with jax.enable_x64(True):
        res64 = jax.tree.map(
            lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, res
        )
        images = jax.random.normal(jax.random.key(6), (C * IPC, 8, 8, 1), jnp.float64)
        real, weight = dm.sample_class_batches(res64.tables, B, key=jax.random.key(8))
        t0 = jax.tree.map(lambda a: a[0], res64.pool.init)
        tt = jax.tree.map(lambda a: a[0], res64.pool.final)
        mid = dance.interpolate(t0, tt, jnp.float64(0.3))

        def loss(x):
            syn = x.reshape(C, IPC, 8, 8, 1)
            intra = jnp.sum(
                dm.class_losses(MODEL, mid, syn, real, weight, key=jax.random.key(9), dsa=True)
            )
            return intra + dance.inter_class_loss(MODEL, tt, x, C, key=jax.random.key(10), dsa=True)

        d = jax.random.normal(jax.random.key(11), images.shape, jnp.float64)
        eps = 1e-6
        value = jax.jit(loss)  # one program for both points, not op by op
        numeric = (value(images + eps * d) - value(images - eps * d)) / (2 * eps)
        analytic = jnp.vdot(jax.jit(jax.grad(loss))(images), d)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_a_step_clamps_pixels_and_leaves_the_pool_untouched():
    res = _resources(low=-0.1, high=0.1)
    before = jax.tree.map(np.asarray, res.pool)
    state = dance.init_state(
        jax.random.normal(jax.random.key(6), (C * IPC, 8, 8, 1)), SETTINGS, key=jax.random.key(7)
    )
    step = jax.jit(lambda s: dance.distill_step(MODEL, SETTINGS, s, res))
    for _ in range(2):
        state, metrics = step(state)
    assert bool(metrics["accepted"]) and int(state.iteration) == 2
    assert state.images.min() >= np.float32(-0.1) and state.images.max() <= np.float32(0.1)
    assert state.images.min() == np.float32(-0.1)  # the clamp is reached (a large lr)
    for a, b in zip(jax.tree.leaves(res.pool), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_non_finite_step_is_skipped_and_counted():
    res = _resources()
    images = jnp.full((C * IPC, 8, 8, 1), jnp.nan)
    state = dance.init_state(images, SETTINGS, key=jax.random.key(7))
    after, metrics = dance.distill_step(MODEL, SETTINGS, state, res)
    assert not bool(metrics["accepted"]) and int(after.skipped) == 1
    assert bool(jnp.all(jnp.isnan(after.images)))  # left as it was, not "repaired"


def test_per_class_updates_take_the_references_2c_momentum_steps():
    settings = dance.DANCEConfig(
        ipc=IPC, batch_real=B, dsa=False, per_class_updates=True, lr_img=0.5
    )
    res = _resources()
    images = jax.random.normal(jax.random.key(6), (C * IPC, 8, 8, 1))
    state = dance.init_state(images, settings, key=jax.random.key(7))
    after, metrics = jax.jit(lambda s: dance.distill_step(MODEL, settings, s, res))(state)
    # the same draws, then a naive loop: SGD with momentum 0.5 over C + C single-class steps
    _, e_key, lam_key, batch_key, _, _ = jax.random.split(state.key, 6)
    expert = jax.random.randint(e_key, (), 0, P)
    t0 = jax.tree.map(lambda a: a[expert], res.pool.init)
    tt = jax.tree.map(lambda a: a[expert], res.pool.final)
    mid = dance.interpolate(t0, tt, jax.random.uniform(lam_key))
    real, weight = dm.sample_class_batches(res.tables, B, key=batch_key)

    def intra(x, c):
        syn = x.reshape(C, IPC, 8, 8, 1)[c : c + 1]
        key = jax.random.key(0)
        return dm.class_losses(
            MODEL, mid, syn, real[c : c + 1], weight[c : c + 1], key=key, dsa=False
        )[0]

    def inter(x, c):
        logits = MODEL.apply(tt, x[c * IPC : (c + 1) * IPC])
        return soft_cross_entropy(logits, jax.nn.one_hot(jnp.full(IPC, c), C))

    x, buf, losses = images, jnp.zeros_like(images), {"intra": 0.0, "inter": 0.0}
    for name, loss in (("intra", intra), ("inter", inter)):
        for c in range(C):
            value, g = jax.value_and_grad(loss)(x, c)
            losses[name] += value
            buf = 0.5 * buf + g
            x = x - 0.5 * buf
    np.testing.assert_allclose(after.images, jnp.clip(x, -3.0, 3.0), rtol=2e-5, atol=2e-6)
    for name in ("intra", "inter"):
        np.testing.assert_allclose(metrics[name], losses[name], rtol=1e-5)
    assert bool(metrics["accepted"]) and int(after.skipped) == 0
    nan_state = dance.init_state(jnp.full_like(images, jnp.nan), settings, key=jax.random.key(7))
    skipped, metrics = dance.distill_step(MODEL, settings, nan_state, res)
    assert not bool(metrics["accepted"]) and int(skipped.skipped) == 1


def test_dance_defaults_are_the_references_and_zca_is_refused():
    config = method_defaults("dance")
    assert config.experts.num_experts == 5 and config.experts.batch_size == 64
    assert config.experts.cutmix == 0.5 and config.experts.dsa_families == ("color", "crop")
    assert config.eval.epochs == 1500 and config.eval.cutmix == 0.5
    assert config.dance.image_lr == pytest.approx(0.1)  # 0.01 · ipc 10
    with pytest.raises(Exception, match="zca"):
        base.get_method("dance").check(DistillConfig(method="dance", zca=True), lambda path: path)


def test_cli_dance_end_to_end_with_factor_two(tmp_path, capsys):
    argv = [
        "distill", "--method", "dance", "--dataset", "digits", "--noise", "symmetric:0.4",
        "--width", "4", "--max-train", "300", "--ipc", "1", "--iterations", "3",
        "--num-experts", "2", "--expert-train-epochs", "2", "--eval-epochs", "3",
        "--seeds", "2", "--checkpoint-every", "2", "--set", "dance.factor=2",
        "--set", "dance.batch_real=16", "--run-dir", str(tmp_path / "run"),
        "--experts-dir", str(tmp_path / "experts"), "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    assert "dance on digits" in capsys.readouterr().out
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "dance" and summary["iterations"] == 3
    assert summary["images"] == 40  # 10 classes × 1 stored image × 2² decoded
    assert len(list((tmp_path / "experts").iterdir())) == 1  # the pool, cached
    with np.load(run / "distilled.npz") as saved:
        assert saved["images"].shape == (40, 8, 8, 1)
        assert saved["stored_images"].shape == (10, 8, 8, 1) and int(saved["factor"]) == 2
        decoded = dance.decode(jnp.asarray(saved["stored_images"]), 2)
        np.testing.assert_allclose(decoded, saved["images"], rtol=1e-5, atol=1e-6)


def _loop(config, state, res, path):
    run_config = DistillConfig(method="dance", dance=config, checkpoint_every=3, log_every=1)
    return resume.loop(MODEL, run_config, state, res, path)


def _fresh():
    images = jax.random.normal(jax.random.key(6), (C * IPC, 8, 8, 1))
    return dance.init_state(images, SETTINGS, key=jax.random.key(7))


def test_resumed_dance_equals_uninterrupted(tmp_path):
    res = _resources()
    config = dataclasses.replace(SETTINGS, iterations=6, dsa=False)  # DSA: not what is tested
    straight = _loop(config, _fresh(), res, tmp_path / "a")
    _loop(dataclasses.replace(config, iterations=3), _fresh(), res, tmp_path / "b")
    resumed = _loop(config, _fresh(), res, tmp_path / "b")
    assert int(resumed.iteration) == 6
    resume.assert_same_state(straight, resumed)


def test_one_and_four_devices_give_the_same_distilled_set():
    from jaxdd import parallel

    method = base.get_method("dance")
    run_config = DistillConfig(method="dance", dance=dataclasses.replace(SETTINGS, dsa=False))
    step = jax.jit(lambda s, r: method.step(MODEL, run_config, s, r))
    one, res1 = _fresh(), _resources()
    four, res4 = method.shard(_fresh(), _resources(), parallel.runs_mesh(C * IPC))
    assert len(four.images.sharding.device_set) > 1
    for _ in range(3):
        one, _ = step(one, res1)
        four, _ = step(four, res4)
    np.testing.assert_allclose(one.images, four.images, rtol=1e-5, atol=1e-6)


def fake_tad(model, x, labels, num_classes, config, *, key, clean_labels, on_round):
    """A split without referees: a seeded random 60 % trusted, every fifth label recalled."""
    from jaxdd.trust.dual import TrustSplit

    trusted = np.random.default_rng(0).random(len(labels)) < 0.6
    recalled = trusted & (np.arange(len(labels)) % 5 == 0)
    new_labels = np.where(recalled, (labels + 1) % num_classes, labels).astype(np.int32)
    stats = {"round": 0, "trusted": int(trusted.sum())}
    on_round(stats)
    scores = trusted.astype(np.float32)
    return TrustSplit(trusted, new_labels, scores, -scores, labels, [stats], recalled)


@pytest.mark.parametrize("name", ["dm", "dance", "rcig"])
def test_real_batches_come_only_from_the_trusted_space_with_its_labels(name, monkeypatch):
    from jaxdd import prepare as prepare_module
    from jaxdd.trust.dual import TADConfig

    monkeypatch.setattr(prepare_module, "run_tad", fake_tad)
    trust = TADConfig(rebalance=False)
    data = prepare_module.prepare("digits", "symmetric:0.4", max_train=300, trust=trust)
    split = data.split
    assert split.trusted.sum() < len(split.trusted)  # some samples are untrusted
    model = data.model(4)
    pool = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 2 * 3))
    trajectories = jax.tree.map(lambda a: a.reshape(2, 3, *a.shape[1:]), pool)
    services = base.Services(lambda cfg: trajectories, seed=0)
    config = DistillConfig(method=name, dataset="digits", trust=trust)
    setup = base.get_method(name).setup(config, model, data, services)
    source = data.source
    labels = split.labels[split.trusted]
    if name == "rcig":  # its real batches are drawn from these rows
        np.testing.assert_array_equal(setup.resources.x, source.x[split.trusted])
        np.testing.assert_array_equal(setup.resources.targets.argmax(-1), labels)
        return
    tables = setup.resources if name == "dm" else setup.resources.tables
    np.testing.assert_array_equal(tables.x, source.x[split.trusted])
    for c in range(10):  # every member of class c's table is trusted with label c
        members = np.asarray(tables.table[c])[np.asarray(tables.weight[c]) > 0]
        assert len(members) == np.sum(labels == c)
        np.testing.assert_array_equal(labels[members], c)
    real, weight = dm.sample_class_batches(tables, 8, key=jax.random.key(1))
    rows = {bytes(np.asarray(r)) for r in np.asarray(tables.x)}
    assert all(bytes(np.asarray(r)) in rows for r in np.asarray(real).reshape(-1, 8, 8, 1))
