"""Cross-architecture evaluation: `--eval-nets` on `jaxdd distill`, and `jaxdd evaluate RUN_DIR`."""

import json

import numpy as np
import pytest

from jaxdd import cli
from jaxdd.cross_arch import TABLE_FILE, evaluate_run
from jaxdd.data import load_dataset
from jaxdd.errors import ConfigError


@pytest.fixture(scope="module")
def fashion_npz(tmp_path_factory):
    """A 28 px dataset small enough for the test: 20 Fashion-MNIST images per class, 100 test."""
    ds = load_dataset("fashion_mnist")
    keep = np.concatenate([np.flatnonzero(ds.y_train == c)[:20] for c in range(10)])
    path = tmp_path_factory.mktemp("data") / "fashion_small.npz"
    np.savez(
        path,
        x_train=ds.x_train[keep, ..., 0],
        y_train=ds.y_train[keep],
        x_test=ds.x_test[:100, ..., 0],
        y_test=ds.y_test[:100],
    )
    return f"npz:{path}"


@pytest.fixture(scope="module")
def finished_run(fashion_npz, tmp_path_factory):
    """A finished DM run evaluated on its ConvNet and a batch-normalised VGG-11."""
    run_dir = tmp_path_factory.mktemp("runs") / "dm"
    argv = [
        "distill", "--method", "dm", "--dataset", fashion_npz, "--noise", "symmetric:0.4",
        "--val-fraction", "0.1", "--width", "4", "--ipc", "1", "--iterations", "2",
        "--eval-epochs", "3", "--seeds", "2", "--eval-nets", "convnet,vgg11bn",
        "--eval-width-scale", "0.0625", "--run-dir", str(run_dir), "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    return run_dir


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_distill_reports_every_network_and_the_first_one_on_top(finished_run):
    summary = _summary(finished_run)
    assert list(summary["networks"]) == ["convnet", "vgg11bn"]
    assert summary["eval_net"] == "convnet"
    assert summary["accuracies"] == summary["networks"]["convnet"]["accuracies"]
    for fields in summary["networks"].values():
        assert len(fields["accuracies"]) == 2 and len(fields["val_accuracies"]) == 2
    table = (finished_run / TABLE_FILE).read_text()
    assert "| vgg11bn | 0.0625x reference |" in table
    with np.load(finished_run / "distilled.npz") as saved:
        assert saved["targets"].shape == (10, 10)
        np.testing.assert_array_equal(saved["classes"], np.arange(10))


def test_evaluate_reproduces_the_runs_numbers_bit_for_bit(finished_run, capsys):
    before = _summary(finished_run)
    fresh = evaluate_run(finished_run, ["vgg11bn"], progress=False)
    assert fresh["vgg11bn"]["accuracies"] == before["networks"]["vgg11bn"]["accuracies"]
    assert fresh["vgg11bn"]["val_accuracies"] == before["networks"]["vgg11bn"]["val_accuracies"]
    # The command: the run's own ConvNet again, merged into the summary in place.
    argv = ["evaluate", str(finished_run), "--eval-nets", "convnet", "--no-progress"]
    assert cli.main(argv) == 0
    assert "| convnet | run's |" in capsys.readouterr().err
    after = _summary(finished_run)
    assert after["accuracies"] == before["accuracies"]
    assert after["networks"] == before["networks"]
    assert list(after["networks"]) == ["convnet", "vgg11bn"]
    assert "| vgg11bn |" in (finished_run / TABLE_FILE).read_text()


def _fails(argv, capsys) -> str:
    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    return line.removeprefix("jaxdd: error: ")


def test_bad_evaluation_networks_are_refused_before_any_work(tmp_path, capsys):
    err = _fails(["evaluate", str(tmp_path), "--eval-nets", "resnet50"], capsys)
    assert "resnet50" in err and "resnet18bn" in err
    assert "no finished distillation run" in _fails(["evaluate", str(tmp_path)], capsys)
    base = ["distill", "--run-dir", str(tmp_path / "r")]
    err = _fails([*base, "--eval-nets", "convnet,convnet"], capsys)
    assert err.startswith("--eval-nets (eval_nets) must name each evaluation network once")
    assert not (tmp_path / "r").exists()
    err = _fails([*base, "--eval-width-scale", "0.5"], capsys)
    assert "has no effect" in err


def test_a_set_saved_without_targets_is_refused_with_the_fix(finished_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.json", "summary.json"):
        (old / name).write_text((finished_run / name).read_text())
    with np.load(finished_run / "distilled.npz") as saved:
        np.savez(old / "distilled.npz", images=saved["images"], labels=saved["labels"])
    with pytest.raises(ConfigError, match="--allow-config-change --eval-nets"):
        evaluate_run(old, ["convnet"], progress=False)


def test_a_summary_written_before_networks_keeps_its_own_result_first(finished_run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(finished_run, old)
    summary = _summary(old)
    own = summary.pop("networks")["convnet"]
    summary.pop("eval_net")
    (old / "summary.json").write_text(json.dumps(summary))
    evaluate_run(old, ["vgg11bn"], progress=False)
    networks = _summary(old)["networks"]
    assert list(networks) == ["convnet", "vgg11bn"]
    assert networks["convnet"] == {k: v for k, v in own.items() if k != "width_scale"}
