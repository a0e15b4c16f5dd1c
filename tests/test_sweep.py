"""`jaxdd sweep`: the grid, the plan (traced vs looped axes), lanes = single runs, the CLI."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd import cli, evaluate, rng, sweep
from jaxdd import config as config_lib
from jaxdd.distill import DistillConfig
from jaxdd.errors import ConfigError
from jaxdd.experts import ExpertConfig
from jaxdd.methods import base, datm
from jaxdd.models.convnet import make_convnet
from jaxdd.ops.train import TrainConfig

BASE = DistillConfig(
    dataset="digits",
    noise="symmetric:0.4",
    width=4,
    max_train=300,
    val_fraction=0.1,
    datm=datm.DATMConfig(
        ipc=1, iterations=3, syn_steps=2, max_start_epoch=2, current_max_start_epoch=1
    ),
    experts=ExpertConfig(num_experts=2, epochs=3),
    eval=TrainConfig(epochs=4, num_seeds=2),
    checkpoint_every=2,
)
# 2 × 2 × 2 = 8 points, every axis a number the step traces: one program of 8 lanes.
AXES = [
    sweep.parse_axis("datm.lr_img=10,100"),
    sweep.parse_axis("datm.lr_y=1,3"),
    sweep.parse_axis("seed=0,1"),
]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    experts = str(tmp_path_factory.mktemp("experts"))
    points = sweep.grid(BASE, AXES)
    return points, sweep.plan(points, AXES, experts, progress=False), experts


def test_the_grid_is_the_product_of_the_axes_first_axis_slowest():
    points = sweep.grid(BASE, AXES)
    assert len(points) == 8
    assert [p.values["datm.lr_img"] for p in points] == [10.0] * 4 + [100.0] * 4
    assert [p.values["seed"] for p in points] == [0, 1] * 4
    assert points[5].config.datm.lr_img == 100.0 and points[5].config.datm.lr_y == 1.0
    assert points[5].config.seed == 1


def test_bad_sweeps_are_refused_naming_the_fix():
    with pytest.raises(ConfigError, match="val_fraction=0.1"):
        sweep.grid(dataclasses.replace(BASE, val_fraction=0.0), AXES)
    with pytest.raises(ConfigError, match="given twice"):
        sweep.grid(BASE, [AXES[0], AXES[0]])
    with pytest.raises(ConfigError, match="cannot vary eval_nets"):
        sweep.grid(BASE, [sweep.parse_axis("eval_nets=convnet")])
    with pytest.raises(ConfigError, match="PATH=V1,V2"):
        sweep.parse_axis("datm.lr_img")
    with pytest.raises(ConfigError, match="repeats"):
        sweep.parse_axis("datm.lr_img=1,1")
    with pytest.raises(ConfigError, match="lr_img"):
        sweep.grid(BASE, [sweep.parse_axis("datm.lr_img=10,ten")])
    # a setting the method ignores is refused as `jaxdd distill` refuses it
    with pytest.raises(ConfigError, match="no effect"):
        sweep.grid(BASE, [sweep.parse_axis("dm.lr_img=1,2")])


def test_numeric_axes_run_as_one_program_sharded_over_four_devices(planned):
    points, plan, _ = planned
    [(group, programs)] = plan
    [(program, setups)] = programs
    assert len(program.lanes) == 8 and not program.looped
    assert set(program.traced) == {"datm.lr_img", "datm.lr_y", "seed"}
    lines = sweep.describe_plan(plan, points)
    assert lines[0] == "8 points, 8 distinct distilled sets, in 1 vmapped program"


@pytest.fixture(scope="module")
def distilled(planned, tmp_path_factory):
    """The 8-lane program run vmapped: ``(final state, its directory)``."""
    _, [(group, [(program, setups)])], _ = planned
    directory = tmp_path_factory.mktemp("program")
    state = sweep.run_program(program, setups, group.model, directory, False, vectorize=True)
    return state, directory


def test_every_lane_equals_its_own_single_run(planned, distilled, tmp_path):
    points, [(group, [(program, setups)])], _ = planned
    state, directory = distilled
    # the lane axis is split over the 4 simulated devices
    assert len(state.images.sharding.device_set) == 4
    assert np.asarray(state.iteration).tolist() == [3] * 8
    method = base.get_method("datm")
    for lane in (0, 5):  # lr_img 10 / lr_y 1 / seed 0, and lr_img 100 / lr_y 1 / seed 1
        cfg = program.lanes[lane]
        single = setups[lane].state
        step = jax.jit(lambda s, r, cfg=cfg: method.step(group.model, cfg, s, r))
        for _ in range(cfg.datm.iterations):
            single, _ = step(single, setups[lane].resources)
        np.testing.assert_allclose(state.images[lane], single.images, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(state.labels[lane], single.labels, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(state.syn_lr[lane], single.syn_lr, rtol=1e-5)
    # different learning rates really moved the sets differently
    assert not np.allclose(state.images[0], state.images[4])
    # resumed from its final checkpoint, the program does no more work and gives the same sets
    again = sweep.run_program(program, setups, group.model, directory, False, vectorize=True)
    np.testing.assert_array_equal(again.images, state.images)
    # the CPU path (one compiled single-lane program looped over the lanes) computes the same
    looped = sweep.run_program(program, setups, group.model, tmp_path, False, vectorize=False)
    np.testing.assert_allclose(looped.images, state.images, rtol=2e-4, atol=2e-5)


def test_a_shape_axis_and_a_loop_length_axis_split_the_lanes(planned):
    _, _, experts = planned
    axes = [sweep.parse_axis("datm.syn_steps=1,2"), sweep.parse_axis("datm.lr_img=10,100")]
    points = sweep.grid(BASE, axes)
    plan = sweep.plan(points, axes, experts, progress=False)
    [(_, programs)] = plan
    assert len(programs) == 2
    for program, _ in programs:
        assert program.traced == ("datm.lr_img",) and "datm.syn_steps" in program.looped
    text = "\n".join(sweep.describe_plan(plan, points))
    assert "looped over datm.syn_steps: the step reads it as a Python value" in text
    axes = [sweep.parse_axis("datm.ipc=1,2")]
    [(_, programs)] = sweep.plan(sweep.grid(BASE, axes), axes, experts, progress=False)
    assert len(programs) == 2
    assert "shapes" in programs[0][0].looped["datm.ipc"]


def test_cli_sweep_chooses_on_validation_and_its_config_runs(planned, tmp_path, capsys):
    _, _, experts = planned
    out = tmp_path / "sweep"
    argv = [
        "sweep", "--dataset", "digits", "--noise", "symmetric:0.4", "--width", "4",
        "--max-train", "300", "--val-fraction", "0.1", "--num-experts", "2",
        "--expert-train-epochs", "3", "--ipc", "1", "--iterations", "3", "--syn-steps", "2",
        "--max-start-epoch", "2", "--current-max-start-epoch", "1", "--eval-epochs", "4",
        "--seeds", "2", "--checkpoint-every", "2",
        "--axis", "datm.lr_img=10,100", "--axis", "datm.lr_lr=1e-5,1e-3",
        "--out", str(out), "--experts-dir", experts, "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    assert "4 points, 4 distinct distilled sets, in 1 vmapped program" in printed.err
    assert "chosen on the noisy validation split" in printed.out
    rows = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    assert [r["point"] for r in rows] == [0, 1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    best = max(rows, key=lambda r: r["val_accuracy_mean"])
    assert summary["chosen"]["points"] == [best["point"]]  # no seed axis: a setting is a point
    assert {"sweep.md", "sweep.png", "chosen.json", "sweep.json"} <= {p.name for p in out.iterdir()}
    assert (out / "program-0" / "checkpoints").is_dir()
    # chosen.json is a config `jaxdd distill --config` runs: the chosen point's
    assert cli.main(["distill", "--config", str(out / "chosen.json"), "--show-config"]) == 0
    shown = capsys.readouterr().out.splitlines()
    for path, value in best["values"].items():
        assert f"{path}={config_lib.format_value(value)}" in [line.split()[0] for line in shown]
    # the same command again finds the sweep finished in its checkpoints: same rows
    assert cli.main(argv) == 0
    capsys.readouterr()
    again = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    assert again == rows
    # another sweep in the same directory is refused
    other = [a.replace("1e-5,1e-3", "1e-5,1e-2") for a in argv]
    assert cli.main(other) == 2
    assert "holds another sweep" in capsys.readouterr().err


def test_a_points_evaluation_is_what_training_on_its_set_gives(planned, distilled):
    points, [(group, [(program, _)])], _ = planned
    state, _ = distilled
    method = base.get_method("datm")
    sets = {
        sweep._distill_key(cfg): method.distilled(cfg, sweep._lane(state, i))
        for i, cfg in enumerate(program.lanes)
    }
    rows = sweep._evaluate(points, sets, group.data, group.eval_spec, progress=False)
    p = points[6]
    out = sets[sweep._distill_key(p.config)]
    data = group.data
    result, _ = evaluate.train_and_evaluate(
        make_convnet(group.eval_spec),
        out.images,
        out.targets,
        data.space.encode(data.ds.x_test),
        data.ds.y_test,
        dataclasses.replace(p.config.eval, lr=out.lr),
        key=rng.stream(p.config.seed, "eval"),
        progress=False,
        validation=data.validation,
    )
    np.testing.assert_allclose(rows[6]["accuracies"], result.accuracies[0], atol=0.02)
    np.testing.assert_allclose(rows[6]["val_accuracies"], result.val_accuracies[0], atol=0.04)
    assert rows[6]["eval_lr"] == pytest.approx(float(jnp.asarray(out.lr)))


def test_seeds_are_pooled_as_replicates_and_never_chosen():
    def row(point, lr, seed, val):
        return {"point": point, "values": {"datm.lr_img": lr, "seed": seed},
                "val_accuracies": val, "accuracies": [0.5, 0.5]}  # fmt: skip

    # lr 10 has the single best seed (0.9), lr 100 the better mean over seeds
    rows = [
        row(0, 10.0, 0, [0.9, 0.9]),
        row(1, 10.0, 1, [0.1, 0.1]),
        row(2, 100.0, 0, [0.6, 0.6]),
        row(3, 100.0, 1, [0.6, 0.6]),
    ]
    pooled = sweep.settings(rows)
    assert [p["points"] for p in pooled] == [[0, 1], [2, 3]]
    assert pooled[0]["val_accuracy_mean"] == pytest.approx(0.5)
    best = sweep.choose(rows)
    assert best["values"] == {"datm.lr_img": 100.0} and best["points"] == [2, 3]
