import json

import numpy as np
import pytest

from jaxdd.baselines import BaselineConfig, random_subset, run_baseline
from jaxdd.errors import ConfigError
from jaxdd.ops.train import TrainConfig
from jaxdd.prepare import stratified_cap


def test_random_subset_takes_ipc_distinct_examples_per_class():
    labels = np.repeat(np.arange(4), 30)
    idx = random_subset(labels, 7, 4, seed=0)
    assert len(set(idx.tolist())) == 28
    assert np.array_equal(np.bincount(labels[idx]), [7, 7, 7, 7])
    assert np.array_equal(idx, random_subset(labels, 7, 4, seed=0))
    assert not np.array_equal(idx, random_subset(labels, 7, 4, seed=1))


def test_random_subset_rejects_ipc_larger_than_a_class():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ConfigError, match=r"class 1 has only 3 .* --ipc between 1 and 3"):
        random_subset(labels, 5, 2, seed=0)


def test_stratified_cap_keeps_class_proportions():
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    idx = stratified_cap(labels, 100, seed=0)
    assert np.array_equal(np.bincount(labels[idx]), [60, 30, 10])
    assert np.all(np.diff(idx) > 0)


def test_run_baseline_writes_a_complete_run_directory(tmp_path):
    config = BaselineConfig(
        dataset="digits",
        noise="symmetric:0.4",
        kind="random",
        ipc=5,
        width=8,
        train=TrainConfig(epochs=100, num_seeds=2, dsa=False, eval_batch=250, lr=0.05),
        eval_every=50,
    )
    summary, run = run_baseline(config, out_root=str(tmp_path), progress=False)
    files = {p.name for p in run.path.iterdir()}
    assert files == {"config.json", "metrics.jsonl", "summary.json", "train_set.png"}
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["ipc"] == 5 and saved["train"]["epochs"] == 100
    events = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["noise", "eval", "eval"]
    assert summary["train_size"] == 50 and len(summary["accuracies"]) == 2
    assert 0.2 < summary["train_label_noise"] < 0.6
    # The summary reports the final evaluation logged in metrics.jsonl...
    np.testing.assert_allclose(summary["accuracies"], events[-1]["test_accuracy"][0])
    assert summary["accuracy_mean"] == np.mean(summary["accuracies"])
    # ...of networks that learned from 50 noisy images (chance: 0.1).
    assert summary["accuracy_mean"] > 0.3
    assert (run.path / "train_set.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
