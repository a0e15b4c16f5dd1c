"""The Markdown cross-architecture table of the runs ``cross_arch_cpu.sh`` evaluates.

    python -m experiments.cross_arch_table [ROOT]

One row per distilled (or random) set, one column per evaluation network:
final clean-test accuracy, mean ± std over seeds, from the ``networks`` of
each run's ``summary.json``; "—" where a network has not been evaluated (yet).
ROOT is the script's (default ``experiments/results/cross_arch_cpu``).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from jaxdd.report import format_table, mean_std

RESULTS = pathlib.Path("experiments/results")
NOISY = RESULTS / "fashion_mnist_noisy_cpu" / "symmetric0.4"
CLEAN = RESULTS / "fashion_mnist_cpu"


def default_rows(root: pathlib.Path) -> list[tuple[str, str, pathlib.Path]]:
    """``(set, noise, run directory)`` of every row, as the script makes them."""
    sym = root / "symmetric0.4"
    return [
        ("random IPC 10", "clean", root / "none" / "random"),
        ("DM", "clean", CLEAN / "dm_ipc10_convnet32"),
        ("DANCE", "clean", CLEAN / "dance_ipc10_convnet32"),
        ("DATM", "clean", root / "none" / "datm"),
        ("random IPC 10", "symmetric 40 %", sym / "random"),
        ("DM", "symmetric 40 %", NOISY / "dm"),
        ("TAD + DM", "symmetric 40 %", NOISY / "tad-dm"),
        ("DANCE", "symmetric 40 %", NOISY / "dance"),
        ("TAD + DANCE", "symmetric 40 %", NOISY / "tad-dance"),
        ("DATM", "symmetric 40 %", sym / "datm"),
        ("TAD + DATM", "symmetric 40 %", sym / "tad-datm"),
    ]


def _summary(path: pathlib.Path) -> dict | None:
    """The summary of the run at `path` (or of the newest run inside it), or None."""
    found = [path / "summary.json"] if (path / "summary.json").exists() else []
    found = found or sorted(path.glob("*/summary.json"))
    return json.loads(found[-1].read_text()) if found else None


def _column(name: str, fields: dict) -> str:
    scale = fields.get("width_scale", 1.0)
    return name if name == "convnet" or scale == 1 else f"{name} ({scale:g}x)"


def table(rows: list[tuple[str, str, pathlib.Path]]) -> str:
    """The Markdown table of `rows`; rows whose run does not exist are left out."""
    found = [(s, n, summary) for s, n, path in rows if (summary := _summary(path))]
    columns: dict[str, str] = {"convnet": "convnet"}
    for _, _, summary in found:
        for name, fields in summary.get("networks", {}).items():
            columns.setdefault(name, _column(name, fields))
    body = []
    for label, noise, summary in found:
        nets = summary.get("networks", {"convnet": summary})
        row = {"set": label, "noise": noise}
        for name, title in columns.items():
            row[title] = mean_std(nets[name]["accuracies"]) if name in nets else "—"
        body.append(row)
    return format_table(body, ["set", "noise", *columns.values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default="experiments/results/cross_arch_cpu")
    args = parser.parse_args()
    print(table(default_rows(pathlib.Path(args.root))))


if __name__ == "__main__":
    main()
