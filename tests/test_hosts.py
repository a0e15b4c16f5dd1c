"""Multi-process runs: 2 local CPU processes of 2 devices each equal 1 process of 4."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxdd import cli, hosts
from jaxdd.errors import ConfigError

# A DATM run small enough for CPU: experts, a learned lr, checkpoints and a
# 4-seed evaluation whose runs axis spans all 4 devices.
ARGS = [
    "distill",
    "--max-train", "100", "--width", "4", "--ipc", "2",
    "--syn-steps", "2", "--max-start-epoch", "1", "--current-max-start-epoch", "1",
    "--eval-epochs", "2", "--seeds", "4", "--checkpoint-every", "2", "--set", "log_every=1",
    "--set", "experts.num_experts=4", "--set", "experts.epochs=2",
    "--no-progress",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(args: list[str], tmp_path) -> None:
    """Runs ``jaxdd ARGS`` as processes 0 and 1 of one run, 2 CPU devices each."""
    port = _free_port()
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "2",
        "XLA_FLAGS": "",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # The test session's compilation cache: the resumed run reads the first's programs.
        "JAX_COMPILATION_CACHE_DIR": str(jax.config.jax_compilation_cache_dir or ""),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(jax.config.jax_compilation_cache_max_size),
    }
    logs = [tmp_path / f"process{pid}.log" for pid in (0, 1)]
    procs = []
    for pid, log in enumerate(logs):
        flags = ["--coordinator-address", f"localhost:{port}", "--num-processes", "2"]
        command = [sys.executable, "-m", "jaxdd.cli", *args, *flags, "--process-id", str(pid)]
        with open(log, "w") as out:
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))
    try:
        codes = [proc.wait(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, log.read_text()[-3000:]


def test_two_processes_distil_and_resume_as_one_process_of_four_devices(tmp_path):
    multi, single = tmp_path / "multi", tmp_path / "single"
    experts = ["--experts-dir", str(tmp_path / "experts-multi")]
    # 2 iterations, then resumed from the checkpoint of iteration 2 to 4.
    _two_processes([*ARGS, "--iterations", "2", "--run-dir", str(multi), *experts], tmp_path)
    more = [*ARGS, "--iterations", "4", "--run-dir", str(multi), *experts]
    _two_processes([*more, "--allow-config-change"], tmp_path)
    assert "already finished" not in (tmp_path / "process0.log").read_text()
    # The same run in this process, over its 4 devices (tests/conftest.py).
    ref = [*ARGS, "--iterations", "4", "--run-dir", str(single)]
    assert cli.main([*ref, "--experts-dir", str(tmp_path / "experts-single")]) == 0

    with np.load(multi / "distilled.npz") as a, np.load(single / "distilled.npz") as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)
    got, want = (json.loads((d / "summary.json").read_text()) for d in (multi, single))
    assert got["iterations"] == want["iterations"] == 4
    np.testing.assert_allclose(got["accuracies"], want["accuracies"], atol=1e-6)
    # Process 0 alone wrote: every event once; checkpoints of both sessions.
    events = [json.loads(line) for line in (multi / "metrics.jsonl").read_text().splitlines()]
    its = [e["iteration"] for e in events if e["event"] == "distill"]
    assert its == [1, 2, 3, 4]
    assert [e["event"] for e in events].count("noise") == 1
    assert [e["event"] for e in events].count("config_changed") == 1
    assert {p.name for p in (multi / "checkpoints").iterdir()} >= {"2", "4"}
    # Run again: both processes find it finished, and neither changes it.
    before = (multi / "metrics.jsonl").read_text()
    _two_processes([*more], tmp_path)
    assert "already finished" in (tmp_path / "process0.log").read_text()
    assert (multi / "metrics.jsonl").read_text() == before


def test_one_process_decides_and_fetches_locally():
    assert hosts.count() == 1 and hosts.is_main()
    assert hosts.decide(lambda: {"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(ValueError, match="boom"):
        hosts.decide(lambda: (_ for _ in ()).throw(ValueError("boom")))
    fetched = hosts.fetch({"x": np.arange(3), "y": 2.0})
    assert isinstance(fetched["x"], np.ndarray) and fetched["y"] == 2.0
    hosts.sync("nothing to wait for")


@pytest.mark.parametrize(
    ("address", "count", "pid", "message"),
    [
        ("localhost:1234", None, 0, "needs --num-processes and --process-id"),
        ("localhost:1234", 2, 2, "--process-id 2 is not in 0 … 1"),
    ],
)
def test_incomplete_or_wrong_process_flags_are_refused(address, count, pid, message):
    with pytest.raises(ConfigError, match=message):
        hosts.initialize(address, count, pid)


def test_no_flags_is_one_process():
    assert hosts.initialize() is False
