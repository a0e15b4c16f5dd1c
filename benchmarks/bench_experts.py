"""Expert-training throughput: E experts at once (vmap) vs one at a time.

Trains `--experts` ConvNets (docs/algorithms.md §1.1: plain SGD, lr 0.01, batch
256) for `--epochs` on `--num-images` random 28×28×1 images in three ways:

* ``vmap``: ``train_experts(E experts, vectorize=True)``: one program over a
  vmapped runs axis (jaxdd's default on accelerators);
* ``loop``: ``train_experts(E experts, vectorize=False)``: one compiled
  single-run program called per expert inside each chunk (default on CPU);
* ``sequential``: E separate ``train_experts(1 expert, vectorize=False)``
  calls, the honest one-at-a-time baseline.

Each way runs once untimed (compiling) and then `--iters` timed times;
throughput = images processed by all experts / second (E · epochs ·
steps/epoch · batch). Snapshots are copied to the host, as in real use.

Run from the repository root::

  python -m benchmarks.bench_experts --experts 4 --num-images 2048 --epochs 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

from benchmarks import results
from jaxdd.experts import ExpertConfig, train_experts
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops.losses import one_hot

MODES = ("vmap", "loop", "sequential")
HEADER = [
    "date",
    "jax",
    "width",
    "E",
    "images",
    "epochs",
    "mode",
    "s per call",
    "images/s",
    "÷ sequential",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--experts", type=int, default=4, help="E, experts trained")
    p.add_argument("--num-images", type=int, default=2048, help="training set size")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--width", type=int, default=128, help="ConvNet channels")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--dsa", action="store_true", help="DSA on every batch (reference: on)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--iters", type=int, default=2, help="timed calls per mode")
    p.add_argument("--device-note", default="", help="put in the RESULTS.md heading, e.g. shared")
    p.add_argument("--out", default=None, help="write the JSON records here")
    p.add_argument("--results", default=str(results.RESULTS), help="Markdown file to append to")
    return p.parse_args(argv)


def make_train(args: argparse.Namespace, mode: str):
    """A closure training all E experts the `mode` way (host snapshots out)."""
    model = make_convnet(ConvNetSpec(10, (28, 28, 1), width=args.width, depth=3))
    x_key, y_key = jax.random.split(jax.random.key(0))
    x = jax.random.normal(x_key, (args.num_images, 28, 28, 1))
    targets = one_hot(jax.random.randint(y_key, (args.num_images,), 0, 10), 10)
    per_call = 1 if mode == "sequential" else args.experts
    config = ExpertConfig(
        num_experts=per_call, epochs=args.epochs, batch_size=args.batch_size, dsa=args.dsa
    )
    vectorize = mode == "vmap"

    def train(key: jax.Array):
        if mode != "sequential":
            return train_experts(
                model, x, targets, config, key=key, vectorize=vectorize, progress=False
            )
        keys = jax.random.split(key, args.experts)
        return [
            train_experts(model, x, targets, config, key=k, vectorize=False, progress=False)
            for k in keys
        ]

    return train


def time_mode(args: argparse.Namespace, mode: str) -> dict:
    """One untimed (compiling) call, then `args.iters` timed ones."""
    train = make_train(args, mode)
    t0 = time.perf_counter()
    train(jax.random.key(1))
    first = time.perf_counter() - t0
    seconds = []
    for i in range(args.iters):
        t0 = time.perf_counter()
        train(jax.random.key(2 + i))
        seconds.append(time.perf_counter() - t0)
    batch = min(args.batch_size, args.num_images)
    images = args.experts * args.epochs * (args.num_images // batch) * batch
    timing = results.mean_std(seconds)
    return {
        "mode": mode,
        "first_call_seconds": first,
        "seconds_per_call": timing,
        "images_processed": images,
        "images_per_second": images / timing["mean"],
    }


def markdown_rows(args: argparse.Namespace, records: list[dict], env: dict) -> list[list]:
    """One row per mode; throughput relative to the sequential baseline if measured."""
    base = {r["mode"]: r["images_per_second"] for r in records}.get("sequential")
    rows = []
    for r in records:
        t = r["seconds_per_call"]
        rel = f"{r['images_per_second'] / base:.2f}" if base else "n/a"
        rows.append(
            [env["date"], env["jax_version"], args.width, args.experts, args.num_images]
            + [args.epochs, r["mode"], f"{t['mean']:.2f} ± {t['std']:.2f}"]
            + [f"{r['images_per_second']:.0f}", rel]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Times every mode, prints/writes JSON, appends to RESULTS.md."""
    args = parse_args(argv)
    env = results.environment()
    records = [time_mode(args, mode) for mode in args.modes]
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "results", "modes")}
    results.write_json({**env, **settings, "modes": records}, args.out)
    title = (
        f"Expert training throughput: ConvNet depth 3, 28×28×1, batch {args.batch_size}, "
        f"DSA {'on' if args.dsa else 'off'}, compile excluded (mean ± std over timed calls)"
    )
    heading = results.hardware(args.device_note)
    rows = markdown_rows(args, records, env)
    results.record(heading, title, HEADER, rows, Path(args.results))


if __name__ == "__main__":
    main()
