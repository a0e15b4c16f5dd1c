import numpy as np
import pytest

from jaxdd import cli


def _fails(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxdd: error:") and "\n" not in err
    return err


def test_datasets_lists_digits_as_available(capsys):
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "available: yes" in out
    assert "cifar10" in out and "npz:PATH" in out


def test_unknown_dataset_suggests_the_closest(capsys):
    err = _fails(["baseline", "--dataset", "digitz"], capsys)
    assert "digits" in err


def test_noise_rate_outside_unit_interval(capsys):
    err = _fails(["baseline", "--noise", "symmetric:1.5"], capsys)
    assert "[0, 1)" in err


def test_ipc_larger_than_a_class(capsys):
    err = _fails(["baseline", "--kind", "random", "--ipc", "1000"], capsys)
    assert "--ipc" in err


def test_unreadable_npz(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    err = _fails(["baseline", "--dataset", f"npz:{bad}"], capsys)
    assert "bad.npz" in err


def test_npz_missing_key(tmp_path, capsys):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64))
    err = _fails(["baseline", "--dataset", f"npz:{path}"], capsys)
    assert "x_test" in err


def test_bad_numbers(capsys):
    _fails(["baseline", "--epochs", "0"], capsys)


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as err:
        cli.main(["baseline", "--kind", "nope"])
    assert err.value.code == 2


def test_baseline_end_to_end_on_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:30], y_test=y[:30])
    argv = [
        "baseline",
        "--dataset",
        f"npz:{tmp_path / 'd.npz'}",
        "--noise",
        "none",
        "--kind",
        "random",
        "--ipc",
        "4",
        "--width",
        "8",
        "--epochs",
        "5",
        "--seeds",
        "2",
        "--no-dsa",
        "--out",
        str(tmp_path / "runs"),
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "random on npz:" in out and "over 2 seeds" in out
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_trust_flags_reach_the_tad_config():
    args = cli._parser().parse_args(
        [
            "distill",
            "--trust",
            "tad",
            "--trust-signal",
            "loss",
            "--no-rebalance",
            "--no-recall-margin",
        ]
    )
    config = cli._trust_config(args)
    assert (config.mode, config.signal, config.rebalance) == ("tad", "loss", False)
    assert not config.recall_margin
    default = cli._trust_config(cli._parser().parse_args(["distill", "--trust", "small-loss"]))
    assert default.mode == "small-loss" and default.rebalance and default.recall_margin


def test_expert_epoch_size_flag():
    parse = lambda *a: cli._distill_config(cli._parser().parse_args(["distill", *a]))  # noqa: E731
    assert parse("--expert-epoch-size", "given").experts.epoch_size == "given"
    assert parse("--expert-epoch-size", "5000").experts.epoch_size == 5000
    assert parse("--expert-epoch-size", "data").experts.epoch_size is None
    with pytest.raises(SystemExit):
        parse("--expert-epoch-size", "0")


def test_init_pool_flag():
    parse = lambda *a: cli._trust_config(cli._parser().parse_args(["distill", "--trust", *a]))  # noqa: E731
    assert parse("tad").init_pool == "all"  # the default
    assert parse("tad", "--init-pool", "trusted").init_pool == "trusted"
