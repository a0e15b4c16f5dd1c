import json

import numpy as np

from jaxdd import report


def test_run_dirs_are_unique_and_log_jsonl(tmp_path):
    a = report.RunDir(tmp_path, "x")
    b = report.RunDir(tmp_path, "x")
    assert a.path != b.path
    a.log(event="eval", acc=np.float32(0.5), arr=np.arange(2))
    a.log(event="done")
    lines = (a.path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"event": "eval", "acc": 0.5, "arr": [0, 1]}
    assert len(lines) == 2


def test_mean_std_and_table():
    assert report.mean_std([0.7, 0.8]) == "75.00 ± 5.00"
    table = report.format_table([{"a": 1, "b": "x"}], ["a", "b"])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |"]


def test_image_grid_is_a_png(tmp_path):
    images = np.random.default_rng(0).random((20, 8, 8, 1))
    labels = np.repeat(np.arange(2), 10)
    out = report.save_image_grid(
        tmp_path / "g.png", images, labels, ["a", "b"], clean_labels=labels[::-1], per_class=5
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
