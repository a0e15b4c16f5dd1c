"""`jaxdd demo`: the quick end-to-end job on the embedded `digits` data.

40% symmetric label noise, then the baselines every noisy-label study
reports (ALGORITHMS.md 0.6): full-noisy ERM and random real subsets at
IPC 10, each a fresh-network evaluation over 5 seeds on the clean test set.
Later methods join this table.
"""

from __future__ import annotations

import dataclasses

from jaxdd import report
from jaxdd.baselines import BaselineConfig, run_baseline
from jaxdd.ops.train import TrainConfig

DEMO_NOISE = "symmetric:0.4"
DEMO_ERM = BaselineConfig(
    dataset="digits", noise=DEMO_NOISE, kind="erm", train=TrainConfig(epochs=50), eval_every=5
)
DEMO_RANDOM = dataclasses.replace(DEMO_ERM, kind="random", ipc=10, train=TrainConfig(epochs=500))


def run_demo(*, out_root: str = "runs", progress: bool = True) -> list[dict]:
    """Runs every demo row, prints the table and writes ``results.md``.

    Returns:
      one row dict per method (name, accuracy, run directory).
    """
    demo = report.RunDir(out_root, "demo-digits")
    demo.write_json("config.json", {"erm": DEMO_ERM, "random": DEMO_RANDOM})
    rows = []
    for name, config in [("full-noisy ERM", DEMO_ERM), ("random IPC 10", DEMO_RANDOM)]:
        print(f"[demo] {name} ...", flush=True)
        summary, run = run_baseline(config, out_root=demo.path, progress=progress)
        best = summary["best_epoch_test_selected"]
        rows.append(
            {
                "method": name,
                "images": summary["train_size"],
                "label noise": f"{100 * summary['train_label_noise']:.1f} %",
                "test accuracy (final)": report.mean_std(summary["accuracies"]),
                "best epoch (test-selected)": f"{100 * best['accuracy_mean']:.2f}",
                "run": run.path.name,
            }
        )
    columns = list(rows[0])
    table = report.format_table(rows, columns)
    title = f"digits, {DEMO_NOISE} noise, ConvNet-128, 5 seeds, clean test set"
    (demo.path / "results.md").write_text(f"# {title}\n\n{table}\n")
    demo.write_json("summary.json", rows)
    print(f"\n{title}\n{table}\nrun directory: {demo.path}")
    return rows
