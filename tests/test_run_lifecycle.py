"""A distillation run's life: locks, the expert cache, resuming, signals, failures."""

import contextlib
import dataclasses
import importlib
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
from test_locking import HOLDER  # the lock-holding subprocess script

import jaxdd.locking
from jaxdd import cli, report
from jaxdd.checkpoint import Checkpointer, UnreadableStepWarning
from jaxdd.distill import (
    DistillConfig,
    NoUpdatesError,
    _expert_cache,
    _kept_on_resume,
    _prepare,
    _StopRequests,
    load_or_train_experts,
    run_distill,
)
from jaxdd.errors import JaxddError, RunInterruptedError
from jaxdd.experts import ExpertConfig, train_experts
from jaxdd.methods.datm import DATMConfig
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops.train import TrainConfig
from jaxdd.prepare import data_fingerprint, prepare_for
from jaxdd.training import Runner
from jaxdd.trust.dual import TADConfig, TrustSplit

prepare_module = importlib.import_module("jaxdd.prepare")  # `jaxdd.prepare` is the function

TINY = DistillConfig(
    datm=DATMConfig(ipc=2, iterations=6, syn_steps=2, max_start_epoch=2, current_max_start_epoch=1),
    experts=ExpertConfig(num_experts=2, epochs=3),
    eval=TrainConfig(epochs=10, num_seeds=2),
    width=4,
    max_train=300,
    checkpoint_every=2,
    log_every=1,
)

# Runs a pickled config (argv[1]) in a run directory (argv[2]) with an expert
# cache (argv[3]) and sends itself SIGTERM once iteration argv[4] is logged.
SIGTERM_AT = """
import os, pickle, signal, sys
from jaxdd import report
from jaxdd.distill import run_distill
from jaxdd.errors import RunInterruptedError

config_file, run_dir, experts_dir, at = sys.argv[1:]
log = report.RunDir.log

def log_then_stop(self, **event):
    log(self, **event)
    if event["event"] == "distill" and event["iteration"] == int(at):
        os.kill(os.getpid(), signal.SIGTERM)

report.RunDir.log = log_then_stop
with open(config_file, "rb") as f:
    config = pickle.load(f)
try:
    run_distill(config, run_dir=run_dir, experts_dir=experts_dir, progress=False)
except RunInterruptedError as err:
    print(f"jaxdd: error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)
"""


@pytest.fixture
def holder():
    """Starts a process holding the lock of a directory; yields it (ended at teardown)."""
    package = pathlib.Path(jaxdd.locking.__file__).parent
    with contextlib.ExitStack() as stack:

        def hold(directory):
            command = [sys.executable, "-c", HOLDER, str(package), str(directory)]
            pipe = subprocess.PIPE
            proc = stack.enter_context(subprocess.Popen(command, stdin=pipe, stdout=pipe))
            stack.callback(proc.kill)
            assert proc.stdout.readline() == b"locked\n"
            return proc

        yield hold


@pytest.fixture(scope="module")
def experts_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("experts")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, experts_dir):
    """An uninterrupted run of `TINY`: its run directory."""
    path = tmp_path_factory.mktemp("runs") / "straight"
    run_distill(TINY, run_dir=str(path), experts_dir=str(experts_dir), progress=False)
    return path


def distilled(path) -> dict:
    with np.load(path / "distilled.npz") as saved:
        return dict(saved)


def events(path, kind=None):
    found = report.RunDir.at(path).read_events()
    return [e for e in found if kind is None or e["event"] == kind]


def test_second_process_on_a_run_dir_is_refused(tmp_path, holder, capsys):
    other = holder(tmp_path / "run")
    argv = ["distill", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {other.pid}" in err
    assert sorted(os.listdir(tmp_path / "run")) == [".lock"]  # nothing written, nothing removed


def test_expert_cache_waits_for_the_process_training_into_it(tmp_path, holder, capsys, monkeypatch):
    config = dataclasses.replace(TINY, max_train=100, experts=ExpertConfig(num_experts=2, epochs=1))
    data = prepare_for(config)
    labels = []
    run = Runner.run

    def recording(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "run", recording)
    model, targets = data.model(4), data.targets()
    args = (config, model, data.x, targets, tmp_path, False)
    first = load_or_train_experts(*args)
    assert labels == ["experts"]
    path = _expert_cache(config, data_fingerprint(data.x, targets), tmp_path)
    other = holder(path)
    threading.Timer(0.5, other.stdin.close).start()
    again = load_or_train_experts(*args)  # waits for `other`, then reuses the experts
    assert capsys.readouterr().err == (
        f"waiting for process {other.pid} training experts in {path}\n"
    )
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.loads((path / "config.json").read_text())["data_sha256"] == data_fingerprint(
        data.x, targets
    )
    assert os.listdir(tmp_path) == [path.name]


def test_editing_the_npz_file_gets_other_experts(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (40, 6, 6), dtype=np.uint8),
        "y_train": np.arange(40) % 4,
        "x_test": rng.integers(0, 256, (8, 6, 6), dtype=np.uint8),
        "y_test": np.arange(8) % 4,
    }
    file = tmp_path / "data.npz"
    config = dataclasses.replace(TINY, dataset=f"npz:{file}", max_train=None)

    def cache_dir():
        data = prepare_for(config)
        return _expert_cache(config, data_fingerprint(data.x, data.targets()), tmp_path)

    np.savez(file, **arrays)
    before = cache_dir()
    assert cache_dir() == before and before.parent == tmp_path  # one name component
    arrays["x_train"][0, 0, 0] ^= 1  # one pixel of one image
    np.savez(file, **arrays)
    assert cache_dir() != before


def test_damaged_latest_expert_epoch_is_trained_again(digits, tmp_path):
    x, y, _, _ = digits
    config = ExpertConfig(num_experts=2, epochs=2, batch_size=100, dsa=False)
    model = make_convnet(ConvNetSpec(10, (8, 8, 1), width=4, depth=2))
    targets = np.eye(10, dtype=np.float32)[y[:200]]

    def train(ckpt):
        key = jax.random.key(0)
        return train_experts(
            model, x[:200], targets, config, key=key, checkpointer=ckpt, progress=False
        )

    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        straight = train(ckpt)
    (tmp_path / "2" / "layout" / "metadata").write_bytes(b"\x00not a checkpoint{")
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt, pytest.warns(UnreadableStepWarning):
        resumed = train(ckpt)
        assert ckpt.steps() == [0, 1, 2]  # rewritten
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def fake_tad(model, x, labels, num_classes, config, *, key, clean_labels, on_round):
    """A trust split without referees: every other sample trusted, labels shifted."""
    trusted = np.arange(len(labels)) % 2 == 0
    scores = np.linspace(0, 1, len(labels), dtype=np.float32)
    shifted = (labels + 1) % num_classes
    stats = {"round": 0, "trusted": int(trusted.sum())}
    on_round(stats)
    recalled = trusted & (np.arange(len(labels)) % 4 == 0)
    return TrustSplit(trusted, shifted, scores, -scores, labels, [stats], recalled)


def test_a_resumed_run_reads_its_trust_split_back(tmp_path, monkeypatch):
    config = dataclasses.replace(TINY, max_train=200, trust=TADConfig())
    run = report.RunDir.at(tmp_path)
    monkeypatch.setattr(prepare_module, "run_tad", fake_tad)
    for plot in ("save_loss_histograms", "save_round_curves"):  # not what is tested here
        monkeypatch.setattr(prepare_module, plot, lambda *args, **kwargs: None)
    first, fresh = _prepare(config, run, False, None)
    assert fresh and [e["event"] for e in run.read_events()] == ["noise", "trust"]

    def no_split(*args, **kwargs):
        raise AssertionError("the trust split was computed again")

    monkeypatch.setattr(prepare_module, "run_tad", no_split)
    again, fresh = _prepare(config, run, False, None)
    assert not fresh and len(run.read_events()) == 2  # nothing logged twice
    for field in ("idx", "x", "labels", "weights", "trusted"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    for field in ("trusted", "labels", "scores", "losses", "loss_labels", "recalled"):
        np.testing.assert_array_equal(getattr(again.split, field), getattr(first.split, field))
    assert again.split.rounds == first.split.rounds
    other = dataclasses.replace(config, max_train=100)  # another subset: the split is stale
    with pytest.raises(JaxddError, match="made from other samples"):
        _prepare(other, run, False, None)
    monkeypatch.setattr(prepare_module, "run_tad", fake_tad)
    _, fresh = _prepare(other, run, True, None)  # a changed config: split again, events replaced
    assert fresh and [e["event"] for e in run.read_events()] == ["noise", "trust"]


def test_a_run_of_another_method_diverts_to_the_cached_split(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    config = dataclasses.replace(TINY, max_train=200, trust=TADConfig())
    monkeypatch.setattr(prepare_module, "run_tad", fake_tad)
    for plot in ("save_loss_histograms", "save_round_curves"):
        monkeypatch.setattr(prepare_module, plot, lambda *args, **kwargs: None)
    first_run = report.RunDir.at(tmp_path / "datm")
    first, _ = _prepare(config, first_run, False, cache)

    def no_split(*args, **kwargs):
        raise AssertionError("the trust split was computed again")

    monkeypatch.setattr(prepare_module, "run_tad", no_split)
    dm_run = report.RunDir.at(tmp_path / "dm")
    again, fresh = _prepare(dataclasses.replace(config, method="dm"), dm_run, False, cache)
    assert fresh and dm_run.read_events() == first_run.read_events()  # rounds logged alike
    assert (dm_run.path / "trust_split.npz").exists()
    for field in ("idx", "labels", "trusted"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))


def test_resume_drops_the_events_after_the_restored_checkpoint(tmp_path):
    run = report.RunDir.at(tmp_path)
    for event in ["noise", "init"]:
        run.log(event=event)
    for it in range(1, 6):
        run.log(event="distill", iteration=it, loss=float("nan"))
    run.log(event="interrupted", iteration=5, signal="SIGTERM")
    run.log(event="eval", epoch=1)
    run.keep_events(lambda e: _kept_on_resume(e, 4))
    kept = run.read_events()
    assert [e["event"] for e in kept] == ["noise", "init"] + ["distill"] * 4
    assert np.isnan(kept[-1]["loss"])  # lines kept as they were


def test_stop_requests_restore_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with _StopRequests() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._request
        stop._request(signal.SIGTERM, None)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
            stop._request(signal.SIGINT, None)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_finished_run_is_only_reported(finished, experts_dir, capsys):
    metrics = (finished / "metrics.jsonl").read_text()
    capsys.readouterr()
    summary, _ = run_distill(
        TINY, run_dir=str(finished), experts_dir=str(experts_dir), progress=False
    )
    accuracy = report.mean_std(summary["accuracies"])
    assert capsys.readouterr().err == f"already finished: {accuracy} % (run directory {finished})\n"
    assert (finished / "metrics.jsonl").read_text() == metrics
    assert summary == json.loads((finished / "summary.json").read_text())


def interrupt_at(monkeypatch, iteration: int, signum: int) -> None:
    """Makes this process send itself `signum` once `iteration` is logged."""
    log = report.RunDir.log

    def log_then_stop(self, **event):
        log(self, **event)
        if event["event"] == "distill" and event["iteration"] == iteration:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(report.RunDir, "log", log_then_stop)


def test_signals_checkpoint_and_the_resumed_run_equals_an_uninterrupted_one(
    finished, experts_dir, tmp_path, monkeypatch
):
    path = tmp_path / "run"
    (tmp_path / "config.pkl").write_bytes(pickle.dumps(TINY))
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "4",  # as in conftest.py: the same programs
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
    }
    command = [sys.executable, "-c", SIGTERM_AT, tmp_path / "config.pkl", path, experts_dir, "3"]
    proc = subprocess.run(
        [str(c) for c in command], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "compiling the distillation step (first iteration)" in proc.stderr
    resume = f"stopped by SIGTERM at iteration 3 with a checkpoint; run again with --run-dir {path}"
    assert resume in proc.stderr
    with Checkpointer(path / "checkpoints") as ckpt:
        assert ckpt.latest_step() == 3
    sigterm = {"event": "interrupted", "iteration": 3, "signal": "SIGTERM"}
    assert events(path, "interrupted") == [sigterm]

    # Resumed here, stopped by Ctrl-C at 5; that checkpoint is then damaged.
    with monkeypatch.context() as patch:
        interrupt_at(patch, 5, signal.SIGINT)
        with pytest.raises(RunInterruptedError, match="SIGINT at iteration 5") as info:
            run_distill(TINY, run_dir=str(path), experts_dir=str(experts_dir), progress=False)
    assert info.value.exit_code == 130
    (path / "checkpoints" / "5" / "layout" / "metadata").write_bytes(b"\x00not a checkpoint{")
    with pytest.warns(UnreadableStepWarning, match="restored step 4"):
        run_distill(TINY, run_dir=str(path), experts_dir=str(experts_dir), progress=False)

    straight, resumed = distilled(finished), distilled(path)
    assert sorted(resumed) == ["classes", "eval_lr", "images", "labels", "syn_lr", "targets"]
    for name, array in straight.items():
        np.testing.assert_array_equal(resumed[name], array)
    assert [e["iteration"] for e in events(path, "distill")] == [1, 2, 3, 4, 5, 6]
    assert events(path, "interrupted") == [sigterm]  # the one at 5 was undone
    for kind in ("noise", "init", "eval"):
        assert len(events(path, kind)) == len(events(finished, kind)) >= 1, kind
    summaries = [json.loads((p / "summary.json").read_text()) for p in (finished, path)]
    assert summaries[0]["accuracies"] == summaries[1]["accuracies"]


def test_a_run_without_one_applied_update_fails(finished, experts_dir, tmp_path):
    gated = dataclasses.replace(TINY, datm=dataclasses.replace(TINY.datm, threshold=1e-9))
    gated = dataclasses.replace(gated, datm=dataclasses.replace(gated.datm, iterations=2))
    with pytest.raises(NoUpdatesError, match="all 2 distillation updates were skipped"):
        run_distill(gated, run_dir=str(tmp_path), experts_dir=str(experts_dir), progress=False)
    assert not (tmp_path / "summary.json").exists()
    assert issubclass(NoUpdatesError, JaxddError)  # the CLI exits with status 2


@pytest.mark.parametrize("where", ["out_root", "run_dir"])
def test_a_run_failing_before_its_first_checkpoint_leaves_no_directory(tmp_path, where):
    config = dataclasses.replace(TINY, dataset=f"npz:{tmp_path / 'missing.npz'}")
    place = {where: str(tmp_path if where == "out_root" else tmp_path / "run")}
    with pytest.raises(JaxddError, match="missing.npz"):
        run_distill(config, progress=False, **place)  # fails once config.json is written
    assert os.listdir(tmp_path) == []


def test_a_failing_run_keeps_a_directory_with_more_in_it(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    config = dataclasses.replace(TINY, dataset=f"npz:{tmp_path / 'missing.npz'}")
    with pytest.raises(JaxddError):
        run_distill(config, run_dir=str(tmp_path), progress=False)
    assert sorted(os.listdir(tmp_path)) == [".lock", "config.json", "notes.txt"]


def test_interruption_error_carries_the_shell_status():
    assert RunInterruptedError("stopped", signal.SIGINT).exit_code == 130
    assert RunInterruptedError("stopped", signal.SIGTERM).exit_code == 143
    assert JaxddError.exit_code == 2
