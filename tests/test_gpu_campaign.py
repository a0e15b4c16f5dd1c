"""The GPU campaign script: every part's commands parse, and a smoke subset runs end to end."""

import importlib
import json
import re

import pytest

from benchmarks import gpu_campaign
from jaxdd import cli


@pytest.mark.parametrize("smoke", [False, True])
def test_every_part_has_commands_its_program_accepts(smoke, tmp_path):
    args = gpu_campaign.parse_args(["--out", str(tmp_path)] + (["--smoke"] if smoke else []))
    parts = gpu_campaign.plan(args)
    assert {p.kind for p in parts} == {"bench", "accuracy"}
    for part in parts:
        module, *argv = gpu_campaign.command(part, args, tmp_path)[2:]
        if part.kind == "accuracy":
            parsed = cli._parser().parse_args(argv)
            config = cli._distill_config(parsed)  # the config resolves (files, flags, values)
            assert parsed.run_dir == str(tmp_path / "runs" / part.name)
            if smoke:
                assert config.dataset == "digits"
            else:
                assert config.dataset == "fashion_mnist"
        else:
            importlib.import_module(module).parse_args(argv)


def test_unknown_parts_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown parts"):
        gpu_campaign.plan(gpu_campaign.parse_args(["--parts", "nope", "--out", str(tmp_path)]))


def test_smoke_runs_a_benchmark_and_an_accuracy_run_and_reports_them(tmp_path):
    argv = ["--smoke", "--out", str(tmp_path), "--parts", "dm", "dm_clean"]
    assert gpu_campaign.main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "campaign.jsonl").read_text().splitlines()]
    assert [(r["part"], r["status"]) for r in records] == [("dm", "ok"), ("dm_clean", "ok")]
    results = (tmp_path / "RESULTS.md").read_text()
    assert re.search(r"^\| \d{4}-\d{2}-\d{2} \|", results, re.MULTILINE)  # a dated row
    assert json.loads((tmp_path / "dm.json").read_text())
    summary = json.loads((tmp_path / "runs" / "dm_clean" / "summary.json").read_text())
    assert summary["method"] == "dm" and len(summary["accuracies"]) == 2
    report = (tmp_path / "campaign.md").read_text()
    assert "smoke" in report and "| dm_clean | dm | none |" in report
