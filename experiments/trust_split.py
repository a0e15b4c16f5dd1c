"""TAD's trust split alone (no distillation), per partition signal: how well is it posed?

Reduced CPU protocol: Fashion-MNIST, the stratified 10 000-image training
subset of experiments/fashion_mnist_noisy_cpu.sh (``max_train=10000``, seed
0), ConvNet-32 referees with `TADConfig`'s defaults except the signal (and
``--folds``). Each row records the settings that changed since the first rows. For
each noise and signal one JSON line is appended to
``experiments/results/trust_split/rows.jsonl`` when the row finishes; rows
already there are skipped, so the script resumes after an interruption.

The clean labels, known because the noise is injected, enter only the
diagnostics (precision, clean recall, noise before/after recall); every
decision of the split is made without them.

    python -m experiments.trust_split [--dataset D] [--noise N ...] [--signal S ...]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from jaxdd.prepare import prepare
from jaxdd.trust.dual import TADConfig

RESULTS = pathlib.Path(__file__).parent / "results" / "trust_split"
ROUND_KEYS = ("round", "tau", "partition", "trusted", "added", "revoked", "proposed", "admitted")


# Rows written before cross-fitting carry no setting: they ran the first setting's
# defaults (one fold, τ 0.9 → 0.5, 100 warm-start and 50 round steps).
FIRST_SETTING = {
    "folds": 1,
    "tau_start": 0.9,
    "warmup_steps": 100,
    "steps_per_round": 50,
    "expel_below": 0.0,
}


def setting(row: dict) -> dict:
    """The `TADConfig` fields a row ran with that differ between its settings."""
    return {k: row.get("setting", FIRST_SETTING).get(k, v) for k, v in FIRST_SETTING.items()}


def done_rows(path: pathlib.Path) -> set[tuple]:
    """(dataset, noise, signal, setting) of the rows already in `path`."""
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {_key(r["dataset"], r["noise"], r["signal"], setting(r)) for r in rows}


def _key(dataset: str, noise: str, signal: str, fields: dict) -> tuple:
    return (dataset, noise, signal, tuple(sorted(fields.items())))


def summarise(split, clean: np.ndarray, given: np.ndarray) -> dict:
    """The row's diagnostics from a `TrustSplit` and the clean labels.

    Args:
      split: the `TrustSplit`.
      clean: ``[N]`` true labels.
      given: ``[N]`` noisy labels.
    """
    first, last = split.rounds[0], split.rounds[-1]
    trusted, right = split.trusted, split.labels == clean
    kept = trusted & ~split.recalled
    return {
        "tau_start_fraction_round0": first["above_tau_start"],
        "tau_end_fraction_round0": first["above_tau_end"],
        "tau_moves_round0": first["tau_moves"],
        "tau_moves_last": last["tau_moves"],
        "trusted_fraction": float(trusted.mean()),
        "precision": float(right[trusted].mean()),
        "clean_recall": float(trusted[given == clean].mean()),
        "noise_without_recalls": float(1 - (given == clean)[kept].mean()),
        "noise_with_recalls": float(1 - right[trusted].mean()),
        "recalled": int(split.recalled.sum()),
        "recall_accuracy": float(right[split.recalled].mean()) if split.recalled.any() else None,
        "rounds": [{k: r[k] for k in ROUND_KEYS} | _round_noise(r) for r in split.rounds],
    }


def _round_noise(stats: dict) -> dict:
    return {
        "noise_before_recall": stats.get("noise_before_recall"),
        "noise_after_recall": stats.get("remaining_noise"),
    }


def run_row(dataset: str, noise: str, config: TADConfig, max_train: int) -> dict:
    """One TAD split with `config`; returns the row."""
    start = time.time()
    data = prepare(dataset, noise, max_train=max_train, trust=config, seed=0)
    source = data.source
    row = {"dataset": dataset, "noise": noise, "signal": config.signal, "max_train": max_train}
    row["setting"] = {k: getattr(config, k) for k in FIRST_SETTING}
    row |= summarise(data.split, source.clean, source.labels)
    return row | {"seconds": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--noise", nargs="+", default=["symmetric:0.4", "asymmetric:0.4"])
    parser.add_argument("--signal", nargs="+", default=["averaged", "margin", "relative", "loss"])
    parser.add_argument("--max-train", type=int, default=10000)
    parser.add_argument("--folds", type=int, default=TADConfig.folds, help="trust.folds")
    parser.add_argument("--expel-below", type=float, default=0.0, help="trust.expel_below")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "rows.jsonl")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = done_rows(args.out)
    for noise in args.noise:
        for signal in args.signal:
            config = TADConfig(signal=signal, folds=args.folds, expel_below=args.expel_below)
            fields = {k: getattr(config, k) for k in FIRST_SETTING}
            if _key(args.dataset, noise, signal, fields) in done:
                print(f"== {noise} {signal}: done, skipped", flush=True)
                continue
            row = run_row(args.dataset, noise, config, args.max_train)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"== {noise} {signal}: {json.dumps(row)}", flush=True)


if __name__ == "__main__":
    main()
