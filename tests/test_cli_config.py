"""How a command line resolves to one config tree: --config, then flags and --set."""

import math
import pathlib

import pytest

from jaxdd import cli

ROOT = pathlib.Path(__file__).parents[1]
CONFIG_FILE = """
from jaxdd.distill import DistillConfig
from jaxdd.methods.datm import DATMConfig
from jaxdd.trust.dual import TADConfig


def get_config(name="small"):
    datm = DATMConfig(ipc=2, syn_steps=7, iterations=30)
    if name == "small":
        return DistillConfig(width=16, datm=datm)
    return DistillConfig(width=16, datm=datm, trust=TADConfig(kappa=0.7))
"""


def _settings(argv, capsys) -> dict[str, str]:
    """The ``--show-config`` listing of a command line: path -> value as printed."""
    assert cli.main([*argv, "--show-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {key: rest.split("  ")[0] for key, rest in (line.split("=", 1) for line in lines)}


def _fails(argv, capsys) -> str:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert out == "" and line.startswith("jaxdd: error: ")
    return line.removeprefix("jaxdd: error: ")


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(CONFIG_FILE)
    return path


def test_flags_and_set_override_the_config_file(config_file, capsys):
    argv = ["distill", "--config", f"{config_file}:small", "--ipc", "3", "--width", "8"]
    settings = _settings(
        [*argv, "--set", "datm.iterations=9", "--set", "datm.threshold=inf"], capsys
    )
    assert (settings["datm.ipc"], settings["width"], settings["datm.iterations"]) == ("3", "8", "9")
    assert float(settings["datm.threshold"]) == math.inf
    assert settings["datm.syn_steps"] == "7"  # the file's value where nothing overrides it
    assert settings["datm.lr_img"] == "100.0"  # the defaults where the file says nothing


def test_config_file_is_found_from_any_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    settings = _settings(["distill", "--config", "experiments/datm.py:fashion_mnist-ipc10"], capsys)
    assert settings["dataset"] == "fashion_mnist" and settings["datm.batch_syn"] == "100"
    err = _fails(["distill", "--config", "experiments/nope.py"], capsys)
    assert f"looked for {tmp_path}/experiments/nope.py or {ROOT}/experiments/nope.py" in err


def test_broken_config_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    err = _fails(["distill", "--config", str(tmp_path / "syntax.py")], capsys)
    assert f"{tmp_path / 'syntax.py'}, line 1:" in err
    (tmp_path / "none.py").write_text("X = 1\n")
    assert "defines no get_config()" in _fails(
        ["distill", "--config", f"{tmp_path}/none.py"], capsys
    )
    (tmp_path / "other.py").write_text("def get_config():\n    return 3\n")
    err = _fails(["distill", "--config", str(tmp_path / "other.py")], capsys)
    assert err.endswith("get_config returned a int, not a DistillConfig")


def test_method_picks_defaults_and_is_refused_with_a_config(config_file, capsys):
    mtt = _settings(["distill", "--method", "mtt"], capsys)
    assert (mtt["method"], mtt["datm.soft_labels"], mtt["datm.init"]) == ("mtt", "false", "real")
    err = _fails(["distill", "--method", "mtt", "--config", str(config_file)], capsys)
    assert err.startswith("--method picks a method's defaults when there is no --config")
    row = _settings(["distill", "--config", "experiments/datm.py:mtt-cifar10-ipc10"], capsys)
    assert (row["method"], row["datm.soft_labels"], row["datm.threshold"]) == (
        "mtt",
        "false",
        "inf",
    )
    assert "--set method=mtt: method is set with --method" in _fails(
        ["distill", "--set", "method=mtt"], capsys
    )


def test_trust_settings_need_a_trust_stage_of_the_right_mode(config_file, capsys):
    err = _fails(["distill", "--set", "trust.kappa=0.5"], capsys)
    assert err == (
        "--set trust.kappa=0.5: trust.kappa needs trust, which is none here: "
        "set it with --trust tad|small-loss|none"
    )
    tad = _settings(["distill", "--trust", "tad", "--set", "trust.kappa=0.5"], capsys)
    assert (tad["trust.mode"], tad["trust.kappa"]) == ("tad", "0.5")
    err = _fails(["distill", "--trust", "small-loss", "--set", "trust.kappa=0.5"], capsys)
    assert err.startswith("--set trust.kappa=0.5 has no effect: the small-loss selection has no")
    err = _fails(["distill", "--trust", "tad", "--set", "trust.mode=small-loss"], capsys)
    assert err == "--set trust.mode=small-loss contradicts --trust tad: trust.mode takes one value"
    from_file = _settings(
        ["distill", "--config", f"{config_file}:tad", "--trust", "small-loss"], capsys
    )
    assert (from_file["trust.mode"], from_file["trust.kappa"]) == ("small-loss", "0.7")
    dropped = _settings(["distill", "--config", f"{config_file}:tad", "--trust", "none"], capsys)
    assert dropped["trust"] == "none"


def test_dsa_and_the_teacher_lr_are_one_setting_each(capsys):
    off = _settings(["distill", "--no-dsa"], capsys)
    assert off["datm.dsa"] == off["experts.dsa"] == off["eval.dsa"] == "false"
    err = _fails(["distill", "--no-dsa", "--set", "experts.dsa=true"], capsys)
    assert err == (
        "--set experts.dsa=true contradicts --no-dsa: datm.dsa, experts.dsa, eval.dsa are one "
        "setting"
    )
    lr = _settings(["distill", "--set", "experts.lr=0.02"], capsys)
    assert lr["datm.lr_teacher"] == lr["experts.lr"] == "0.02"
    assert _settings(["baseline", "--no-dsa"], capsys)["train.dsa"] == "false"


def test_a_file_with_disagreeing_linked_values_is_refused(tmp_path, capsys):
    (tmp_path / "split.py").write_text(
        "from jaxdd.distill import DistillConfig\nfrom jaxdd.experts import ExpertConfig\n"
        "def get_config():\n    return DistillConfig(experts=ExpertConfig(dsa=False))\n"
    )
    argv = ["distill", "--config", str(tmp_path / "split.py"), "--out", str(tmp_path / "o")]
    err = _fails(argv, capsys)
    assert err.startswith("datm.dsa=true, experts.dsa=false, eval.dsa=true disagree")
    assert "setting --dsa/--no-dsa (datm.dsa) on the command line sets all of them" in err
    assert not (tmp_path / "o").exists()


def test_settings_without_effect_are_refused(capsys):
    err = _fails(["distill", "--set", "eval.lr=0.1"], capsys)
    assert err == (
        "--set eval.lr=0.1 has no effect: distilled sets are evaluated with the learned student lr"
    )
    err = _fails(["distill", "--method", "mtt", "--set", "datm.lr_y=3"], capsys)
    assert "labels stay one-hot" in err
    assert _fails(["baseline", "--kind", "erm", "--ipc", "5"], capsys) == (
        "--ipc 5 has no effect: only --kind random takes a subset"
    )
    err = _fails(["distill", "--out", "a", "--run-dir", "b"], capsys)
    assert err == "--out has no effect with --run-dir, which names the run directory"


def test_unknown_settings_list_close_matches(capsys):
    err = _fails(["distill", "--set", "datm.iteratons=5"], capsys)
    assert err.startswith("--set datm.iteratons=5: no setting 'datm.iteratons'; did you mean ")
    assert "datm.iterations" in err
    assert "did you mean datm.ipc" in _fails(["distill", "--set", "ipc=5"], capsys)


def test_erm_starts_from_its_own_defaults(capsys):
    erm = _settings(["baseline", "--kind", "erm"], capsys)
    assert (erm["kind"], erm["train.epochs"], erm["eval_every"]) == ("erm", "50", "1")
    assert _settings(["baseline", "--kind", "erm", "--epochs", "3"], capsys)["train.epochs"] == "3"
    random = _settings(["baseline"], capsys)
    assert (random["kind"], random["train.epochs"], random["eval_every"]) == (
        "random",
        "1000",
        "none",
    )


def test_val_fraction_is_one_flag_for_both_commands_and_checked_before_work(capsys):
    assert _settings(["distill", "--val-fraction", "0.1"], capsys)["val_fraction"] == "0.1"
    assert _settings(["baseline", "--val-fraction", "0.2"], capsys)["val_fraction"] == "0.2"
    assert "val_fraction" in _fails(["distill", "--val-fraction", "0.7"], capsys)
    # digits at --max-train 100 keeps ~10 per class; a 50 % split leaves ~5 < --ipc 8
    message = _fails(
        ["distill", "--max-train", "100", "--val-fraction", "0.5", "--ipc", "8"], capsys
    )
    assert "images per class" in message


def test_a_method_flag_the_method_lacks_names_the_methods_that_have_it(capsys):
    err = _fails(["distill", "--method", "rcig", "--no-dsa", "--show-config"], capsys)
    assert err == (
        "--no-dsa: --method rcig has no dsa setting "
        "(the flag sets datm.dsa, dm.dsa, dance.dsa for the methods that have it)"
    )
