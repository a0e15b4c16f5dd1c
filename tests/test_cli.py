"""The `jaxdd` command: every bad input stops it with one line, exit 2, before any work."""

import pathlib

import numpy as np
import pytest

from jaxdd import cli


def _fails(argv, capsys) -> str:
    """The one-line message of a refused command line (and nothing on stdout)."""
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("jaxdd: error: ")
    return line.removeprefix("jaxdd: error: ")


def _npz(path, y_train, y_test):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (len(y_train), 8, 8), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=y_train, x_test=x[: len(y_test)], y_test=y_test)
    return f"npz:{path}"


def test_datasets_lists_digits_as_available(capsys):
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "available: yes" in out
    assert "cifar10" in out and "npz:PATH" in out


def test_unknown_dataset_suggests_the_closest(capsys):
    assert "Did you mean 'digits'?" in _fails(["baseline", "--dataset", "digitz"], capsys)


def test_noise_rate_outside_unit_interval(capsys):
    assert "[0, 1)" in _fails(["baseline", "--noise", "symmetric:1.5"], capsys)


def test_argparse_errors_are_one_line_too(capsys):
    err = _fails(["baseline", "--kind", "nope"], capsys)
    assert "invalid choice: 'nope'" in err and err.endswith(
        "(jaxdd baseline --help lists the flags)"
    )
    assert "unrecognized arguments: --bogus" in _fails(["distill", "--bogus"], capsys)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ipc", "0"], "--ipc (datm.ipc) must be >= 1, got 0"),
        (["--iterations", "-5"], "--iterations (datm.iterations) must be >= 1, got -5"),
        (["--checkpoint-every", "0"], "--checkpoint-every (checkpoint_every) must be >= 1, got 0"),
        (["--num-experts", "0"], "--num-experts (experts.num_experts) must be >= 1, got 0"),
        (["--seeds", "-1"], "--seeds (eval.num_seeds) must be >= 1, got -1"),
        (["--set", "eval.batch_size=0"], "eval.batch_size must be >= 1, got 0"),
        (["--set", "datm.min_syn_lr=0"], "datm.min_syn_lr must be > 0, got 0.0"),
        (["--trust", "tad", "--set", "trust.referees=0"], "trust.referees must be >= 1, got 0"),
        (
            ["--set", "datm.init=bogus"],
            "'bogus' is not one of correct, real (the type of datm.init)",
        ),
        (["--ipc", "500"], "500 images per class (--ipc (datm.ipc)) are not possible: class 4"),
        (
            ["--max-train", "100", "--ipc", "20"],
            "only 9 training images by the given labels among the 100 that --max-train",
        ),
        (["--max-start-epoch", "60"], "raise --expert-train-epochs (experts.epochs) or lower"),
    ],
)
def test_distill_refuses_bad_values_before_any_work(tmp_path, capsys, flags, message):
    out, experts = tmp_path / "out", tmp_path / "experts"
    argv = ["distill", *flags, "--out", str(out), "--experts-dir", str(experts)]
    assert message in _fails(argv, capsys)
    assert not out.exists() and not experts.exists()


def test_distill_ipc_message_gives_the_largest_possible_value(capsys):
    err = _fails(["distill", "--ipc", "500"], capsys)
    assert err.endswith("training images by the given labels; give at most 119")


def test_run_and_cache_directories_must_be_writable(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    err = _fails(["distill", "--run-dir", str(file)], capsys)
    assert err.endswith(f"{file} is a file, not a directory: give a directory path")
    err = _fails(["distill", "--out", str(file / "runs")], capsys)
    assert f"lies under the file {file}" in err
    err = _fails(
        ["distill", "--experts-dir", str(file / "experts"), "--out", str(tmp_path)], capsys
    )
    assert err.startswith(f"the expert cache {file / 'experts'}")
    assert "lies under" in _fails(["baseline", "--out", str(file / "runs")], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no probe left behind


@pytest.mark.skipif(not pathlib.Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_unwritable_root_is_refused(capsys):
    err = _fails(["baseline", "--out", "/proc/self/jaxdd-runs"], capsys)
    assert "cannot write in /proc/self" in err and "give a writable directory" in err


def test_random_bytes_are_not_an_npz_archive(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00\x01 random bytes, not numpy")
    err = _fails(["baseline", "--dataset", f"npz:{bad}", "--out", str(tmp_path / "o")], capsys)
    assert f"cannot read npz file '{bad}': it is not a valid npz archive" in err
    assert "pickle" not in err and not (tmp_path / "o").exists()


def test_npz_missing_key(tmp_path, capsys):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64))
    assert "missing x_test, y_test" in _fails(["baseline", "--dataset", f"npz:{path}"], capsys)


def test_a_test_class_missing_from_training_is_named(tmp_path, capsys):
    dataset = _npz(tmp_path / "d.npz", np.repeat([0, 1], 10), np.array([0, 1, 2]))
    err = _fails(["baseline", "--dataset", dataset, "--out", str(tmp_path / "o")], capsys)
    assert err.startswith(f"dataset '{dataset}': class 2 ('2') is in the test set but not in")
    assert not (tmp_path / "o").exists()


def test_baseline_ipc_larger_than_a_class(capsys):
    err = _fails(["baseline", "--kind", "random", "--ipc", "1000"], capsys)
    assert "1000 images per class (--ipc (ipc)) are not possible" in err


def test_bad_baseline_numbers(capsys):
    assert (
        _fails(["baseline", "--epochs", "0"], capsys)
        == "--epochs (train.epochs) must be >= 1, got 0"
    )


def test_baseline_end_to_end_on_npz(tmp_path, capsys):
    dataset = _npz(tmp_path / "d.npz", np.repeat(np.arange(3), 20), np.repeat(np.arange(3), 10))
    argv = [
        "baseline",
        "--dataset",
        dataset,
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
