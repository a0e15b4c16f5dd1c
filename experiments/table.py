"""Markdown tables of the noisy-label runs made by ``fashion_mnist_noisy_cpu.sh``.

    python -m experiments.table [ROOT] [--clean RUN_DIR] [--extra LABEL=RUN_DIR ...]

ROOT (default ``runs/fashion_mnist_noisy``) holds one folder per noise spec
(``symmetric0.4``, ...) with one folder per row. ``--clean`` names the
clean-label DATM run added as the last row of every table. Two tables come
out: accuracies (mean ± std over seeds, fresh networks, clean test set) with
the size and label noise of the data each row trained on or distilled from
(and, for DATM rows, of the real images the synthetic set started from),
and the trust diagnostics per round of the TAD and small-loss rows.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from jaxdd.report import RunDir, format_table, mean_std

ROWS = {"erm": "full-noisy ERM", "random": "random IPC 10"}
for _key, _name in (("datm", "DATM"), ("dm", "DM"), ("dance", "DANCE"), ("rcig", "RCIG")):
    ROWS |= {
        _key: f"{_name} on noisy data",
        f"small-loss-{_key}": f"two-stage (small-loss) + {_name}",
        f"tad-{_key}": f"TAD + {_name}",
    }


def find_run(path: pathlib.Path) -> pathlib.Path | None:
    """The run directory at `path`, or the newest finished one inside it (``--out`` roots)."""
    if (path / "summary.json").exists():
        return path
    runs = sorted(p.parent for p in path.glob("*/summary.json"))
    return runs[-1] if runs else None


def load_run(path: pathlib.Path) -> dict:
    """``summary.json`` plus the logged events of one run directory."""
    summary = json.loads((path / "summary.json").read_text())
    summary["events"] = RunDir.at(path).read_events()
    return summary


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def accuracy_rows(runs: dict[str, dict]) -> list[dict]:
    """One table row per run, in `ROWS` order then any others (e.g. the clean row)."""
    order = [k for k in ROWS if k in runs] + [k for k in runs if k not in ROWS]
    rows = []
    for key in order:
        run = runs[key]
        size = run.get("train_size")
        init = [e["label_noise"] for e in run["events"] if e["event"] == "init"]
        rows.append(
            {
                "row": ROWS.get(key, key),
                "accuracy (%)": mean_std(run["accuracies"]),
                **(
                    {"noisy-validation accuracy (%)": mean_std(run["val_accuracies"])}
                    if "val_accuracies" in run
                    else {}
                ),
                "seeds": str(len(run["accuracies"])),
                "trained on / distilled from": "—" if size is None else str(size),
                "its label noise (%)": _pct(run.get("train_label_noise")),
                "label noise of the initial images (%)": _pct(init[-1] if init else None),
            }
        )
    return rows


def trust_rows(runs: dict[str, dict]) -> list[dict]:
    """One row per trust round of the runs that diverted their data."""
    rows = []
    for key in ROWS:
        for e in (e for e in runs.get(key, {"events": []})["events"] if e["event"] == "trust"):
            rows.append(
                {
                    "row": ROWS[key],
                    "round": str(e["round"]),
                    "trusted": f"{e['trusted']} ({_pct(e['trusted_fraction'])} %)",
                    "precision (%)": _pct(e.get("precision")),
                    "clean recall (%)": _pct(e.get("clean_recall")),
                    "recalled": str(e["recalled"]),
                    "recalibration acc. (%)": _pct(e.get("recalibration_accuracy")),
                }
            )
    return rows


def _extra_run(folder: pathlib.Path, path: str) -> pathlib.Path | None:
    """An extra row's run: `path` inside the noise folder if it is there, else `path` itself.

    A row name inside the folders (``tad-v1-datm``) adds that row to the
    tables of the noises that have it; a full path adds it to every table.
    """
    for candidate in (folder / path, pathlib.Path(path)):
        if candidate.exists():
            return find_run(candidate)
    return None


def tables(root: pathlib.Path, clean: pathlib.Path | None = None, extra: dict | None = None) -> str:
    """Both Markdown tables for every noise folder under `root`.

    `clean` and every ``label: run directory`` of `extra` (`_extra_run`) are
    appended as rows.
    """
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = {
            key: load_run(run)
            for key in ROWS
            if (folder / key).exists() and (run := find_run(folder / key)) is not None
        }
        if not runs:
            continue
        if clean is not None:
            runs["DATM on clean labels"] = load_run(clean)
        for label, path in (extra or {}).items():
            if (run := _extra_run(folder, path)) is not None:
                runs[label] = load_run(run)
        rows = accuracy_rows(runs)
        columns = list(dict.fromkeys(key for row in rows for key in row))  # every row's
        out += [f"### {folder.name}", "", format_table(rows, columns)]
        trust = trust_rows(runs)
        if trust:
            out += ["", format_table(trust, list(trust[0]))]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="runs/fashion_mnist_noisy")
    parser.add_argument("--clean", help="clean-label DATM run directory (last row)")
    parser.add_argument(
        "--extra", action="append", default=[], metavar="LABEL=DIR", help="more rows (controls)"
    )
    args = parser.parse_args(argv)
    extra = dict(item.rsplit("=", 1) for item in args.extra)
    clean = pathlib.Path(args.clean) if args.clean else None
    print(tables(pathlib.Path(args.root), clean, extra))


if __name__ == "__main__":
    main()
