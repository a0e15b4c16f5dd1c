import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd import cli, parallel, report
from jaxdd.checkpoint import Checkpointer
from jaxdd.distill import DistillConfig, distill_loop, resolve_epoch_size
from jaxdd.methods import datm
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.trust.dual import TADConfig

MODEL = make_convnet(ConvNetSpec(4, (6, 6, 1), width=4, depth=1))
CONFIG = DistillConfig(
    datm=datm.DATMConfig(
        ipc=2,
        iterations=6,
        syn_steps=2,
        current_max_start_epoch=2,
        max_start_epoch=3,
        expansion_end_epoch=4,
        dsa=True,
        threshold=10.0,
    ),
    checkpoint_every=3,
    log_every=1,
)


def _setup(n_syn=8):
    k = jax.random.split(jax.random.key(0), 3)
    snaps = jax.vmap(MODEL.init)(jax.random.split(k[0], 2 * 5))
    traj = jax.tree.map(lambda a: a.reshape(2, 5, *a.shape[1:]), snaps)
    images = jax.random.normal(k[1], (n_syn, 6, 6, 1))
    labels = jax.random.normal(k[2], (n_syn, 4))
    return datm.init_state(images, labels, CONFIG.datm, key=jax.random.key(3)), traj


def _loop(config, state, traj, path):
    with Checkpointer(path / "ck", max_to_keep=2) as ckpt:
        if ckpt.latest_step() is not None:
            state = ckpt.restore(state)
        return distill_loop(MODEL, config, state, traj, ckpt, report.RunDir.at(path), False)


def test_resumed_distillation_equals_uninterrupted(tmp_path):
    # distill_loop donates its state, so every run starts from a fresh copy.
    straight = _loop(CONFIG, *_setup(), tmp_path / "a")
    short = dataclasses.replace(CONFIG, datm=dataclasses.replace(CONFIG.datm, iterations=3))
    _loop(short, *_setup(), tmp_path / "b")  # the "killed" run: 3 of 6 iterations
    resumed = _loop(CONFIG, *_setup(), tmp_path / "b")
    assert int(resumed.iteration) == 6
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
    events = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(e)["iteration"] for e in events] == [1, 2, 3, 4, 5, 6]


def test_one_and_four_devices_give_the_same_distilled_set():
    state, traj = _setup()
    step = jax.jit(lambda s, t: datm.distill_step(MODEL, CONFIG.datm, s, t))
    one, four = state, datm.shard_state(state, parallel.runs_mesh(8))
    traj4 = parallel.replicate(traj, parallel.runs_mesh(8))
    assert len(four.images.sharding.device_set) == 4
    assert {s.data.shape[0] for s in four.images.addressable_shards} == {2}  # split, not copied
    for _ in range(3):
        one, _ = step(one, traj)
        four, _ = step(four, traj4)
    assert len(four.images.sharding.device_set) == 4
    np.testing.assert_allclose(one.images, four.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.syn_lr, four.syn_lr, rtol=1e-5)


def test_cli_distill_end_to_end_and_resume(tmp_path, capsys):
    argv = [
        "distill",
        "--dataset",
        "digits",
        "--noise",
        "symmetric:0.4",
        "--width",
        "4",
        "--max-train",
        "300",
        "--val-fraction",
        "0.1",
        "--num-experts",
        "2",
        "--expert-train-epochs",
        "3",
        "--ipc",
        "2",
        "--iterations",
        "4",
        "--syn-steps",
        "2",
        "--max-start-epoch",
        "2",
        "--current-max-start-epoch",
        "1",
        "--eval-epochs",
        "10",
        "--seeds",
        "2",
        "--checkpoint-every",
        "2",
        "--run-dir",
        str(tmp_path / "run"),
        "--experts-dir",
        str(tmp_path / "experts"),
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert "datm on digits" in capsys.readouterr().out
    run = tmp_path / "run"
    files = {p.name for p in run.iterdir()}
    assert {
        "config.json",
        "summary.json",
        "metrics.jsonl",
        "distilled.png",
        "curves.png",
        "distilled.npz",
        "checkpoints",
    } <= files
    metrics = (run / "metrics.jsonl").read_text()
    assert cli.main(argv) == 0  # finished: reported, not run again
    assert "already finished: " in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_text() == metrics

    more = argv[: argv.index("--iterations") + 1] + ["6"] + argv[argv.index("--iterations") + 2 :]
    assert cli.main(more) == 2  # another config: refused, the changes listed
    err = capsys.readouterr().err
    assert "datm.iterations: 4 → 6" in err and "--allow-config-change" in err
    assert cli.main([*more, "--allow-config-change"]) == 0  # resumed: 2 more iterations
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 6 and len(summary["accuracies"]) == 2
    assert abs(summary["train_size"] - 270) <= 10  # the stratified cap less the validation split
    assert len(summary["val_accuracies"]) == 2  # on the noisy validation split, per seed
    assert 0.0 <= summary["val_accuracy_mean"] <= 1.0
    assert 0.25 < summary["train_label_noise"] < 0.55  # about the injected 40 %
    assert len(list((tmp_path / "experts").iterdir())) == 1  # trajectories reused
    events = report.RunDir.at(run).read_events()
    assert [e["iteration"] for e in events if e["event"] == "distill"] == [4, 6]
    assert [e["event"] for e in events].count("eval") == 1  # the first evaluation's went
    changed = [e["changes"] for e in events if e["event"] == "config_changed"]
    assert changed == [{"datm.iterations": [4, 6]}]
    assert json.loads((run / "config.json").read_text())["datm"]["iterations"] == 6


def test_window_beyond_the_experts_is_a_clear_error(tmp_path, capsys):
    argv = [
        "distill",
        "--num-experts",
        "2",
        "--expert-train-epochs",
        "3",
        "--max-start-epoch",
        "5",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(argv) == 2
    assert "--expert-train-epochs" in capsys.readouterr().err


def test_given_epoch_size_resolves_to_the_pre_diversion_size():
    assert CONFIG.experts.epoch_size == "given"  # the default
    assert resolve_epoch_size(CONFIG, 1234).experts.epoch_size == 1234
    assert resolve_epoch_size(CONFIG, None).experts.epoch_size is None  # no diversion
    data = dataclasses.replace(CONFIG, experts=dataclasses.replace(CONFIG.experts, epoch_size=None))
    assert resolve_epoch_size(data, 1234) is data  # one pass over the diverted data


def test_only_an_expert_filtered_init_draws_from_every_given_label():
    tad = dataclasses.replace(CONFIG, trust=TADConfig())  # init_pool "all" by default
    assert datm.init_from_all(tad)
    assert not datm.init_from_all(CONFIG)  # no diversion
    assert not datm.init_from_all(dataclasses.replace(tad, trust=TADConfig(init_pool="trusted")))
    unfiltered = dataclasses.replace(tad, datm=dataclasses.replace(tad.datm, init="real"))
    assert not datm.init_from_all(unfiltered)  # no filter: the trusted space
