"""Times ONE DM or DANCE iteration in jaxdd and in a PyTorch per-class loop (the reference's way).

Both sides do identical work on a depth-3 ConvNet of `--width` channels,
28×28×1 images, 10 classes with `--per-class` random real images each,
IPC 10 and a real batch of `--batch-real` per class without replacement,
DSA off:

  * ``--method dm`` (docs/algorithms.md §2.1): a fresh random network, the
    summed squared distance of the classes' mean features, one SGD step on
    the images (lr 1, momentum 0.5);
  * ``--method dance`` (§2.2): one of 5 random (θ⁰, θ^T) expert pairs and
    λ ~ U(0, 1), the feature term under the middle encoder plus the trained
    expert's per-class cross-entropy, one SGD step (lr 0.1, momentum 0.5)
    and the pixel clamp.

jaxdd's iteration is the method's jitted ``distill_step`` (state donated,
as the driver does) with every class in one vmapped step; torch's
(`benchmarks/torch_baseline/dm.py`) loops over the classes in Python and
runs in a subprocess after jaxdd is done. Compile time is measured
separately and excluded.

Run from the repository root::

  python -m benchmarks.bench_dm --method dance --iters 3 --device-note shared
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import results
from jaxdd.methods import base, dance, dm
from jaxdd.models.convnet import ConvNetSpec, init_many, make_convnet

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES, IMAGE_SHAPE, DEPTH, IPC, EXPERTS = 10, (28, 28, 1), 3, 10, 5
TITLE = (
    "{method} iteration: ConvNet depth 3, 28×28×1, 10 classes, IPC 10, DSA off "
    "(seconds per iteration, mean ± std)"
)
HEADER = [
    "date",
    "jax",
    "torch",
    "width",
    "batch_real",
    "iters (warmup)",
    "threads jax/torch",
    "jaxdd s/iter",
    "jaxdd compile s",
    "torch s/iter (class loop)",
    "jaxdd ÷ torch time",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=["dm", "dance"], default="dm")
    p.add_argument("--width", type=int, default=128, help="ConvNet channels")
    p.add_argument("--batch-real", type=int, default=256, help="real images per class")
    p.add_argument("--per-class", type=int, default=1000, help="real images held per class")
    p.add_argument("--iters", type=int, default=3, help="timed iterations")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations after compiling")
    p.add_argument("--device-note", default="", help="put in the RESULTS.md heading")
    p.add_argument("--out", default=None, help="write the two JSON records here")
    p.add_argument("--results", default=str(results.RESULTS), help="Markdown file to append to")
    return p.parse_args(argv)


def jaxdd_record(args: argparse.Namespace) -> dict:
    """Compiles and times jaxdd's iteration; returns its JSON record."""
    model = make_convnet(ConvNetSpec(NUM_CLASSES, IMAGE_SHAPE, width=args.width, depth=DEPTH))
    real_key, img_key, pool_key, run_key = jax.random.split(jax.random.key(0), 4)
    labels = np.repeat(np.arange(NUM_CLASSES), args.per_class)
    table, weight = base.class_tables(labels, NUM_CLASSES)
    x = jax.random.normal(real_key, (len(labels), *IMAGE_SHAPE))
    tables = dm.RealTables(x, jnp.asarray(table), jnp.asarray(weight))
    images = jax.random.normal(img_key, (NUM_CLASSES * IPC, *IMAGE_SHAPE))
    if args.method == "dm":
        module = dm
        config = dm.DMConfig(ipc=IPC, batch_real=args.batch_real, dsa=False)
        resources = tables
    else:
        module = dance
        config = dance.DANCEConfig(ipc=IPC, batch_real=args.batch_real, dsa=False)
        resources = dance.Resources(tables, random_pool(model, pool_key), -jnp.ones(1), jnp.ones(1))
    state = module.init_state(images, config, key=run_key)
    step = jax.jit(lambda s, r: module.distill_step(model, config, s, r), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, resources).compile()
    compile_seconds = time.perf_counter() - t0
    seconds, metrics = [], {}
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        state, metrics = compiled(state, resources)
        jax.block_until_ready((state, metrics))
        if i >= args.warmup:
            seconds.append(time.perf_counter() - t0)
    return {
        "framework": "jaxdd",
        **results.environment(),
        "threads": len(os.sched_getaffinity(0)),
        **settings(args),
        "seconds_per_iteration": results.mean_std(seconds),
        "compile_seconds": compile_seconds,
        "xla_temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
        "final_loss": float(metrics["loss"]),
    }


def random_pool(model, key: jax.Array) -> dance.Pool:
    """EXPERTS random (θ⁰, θ^T) pairs, leaves ``[EXPERTS, ...]`` (only the cost is timed)."""
    k0, k1 = jax.random.split(key)
    return dance.Pool(init_many(model, EXPERTS, key=k0), init_many(model, EXPERTS, key=k1))


def settings(args: argparse.Namespace) -> dict:
    """The settings shared by both records."""
    return {
        "method": args.method,
        "experts": EXPERTS if args.method == "dance" else None,
        "width": args.width,
        "depth": DEPTH,
        "ipc": IPC,
        "num_classes": NUM_CLASSES,
        "image_shape": list(IMAGE_SHAPE),
        "batch_real": args.batch_real,
        "per_class": args.per_class,
        "dsa": False,
        "iters": args.iters,
        "warmup": args.warmup,
    }


def torch_record(args: argparse.Namespace) -> dict:
    """Runs the PyTorch class loop in a subprocess; its record, or the failure."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "torch.json")
        cmd = [sys.executable, "-m", "benchmarks.torch_baseline.dm", "--method", args.method]
        cmd += ["--experts", str(EXPERTS)]
        cmd += ["--device", "cpu" if jax.default_backend() == "cpu" else "cuda"]
        cmd += ["--width", str(args.width), "--depth", str(DEPTH), "--ipc", str(IPC)]
        cmd += ["--batch-real", str(args.batch_real), "--per-class", str(args.per_class)]
        cmd += ["--iters", str(args.iters), "--warmup", str(args.warmup), "--out", out]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"framework": "pytorch", "error": proc.stderr[-2000:], "command": cmd}
        with open(out) as f:
            return {**json.load(f), "command": cmd}


def markdown_row(jx: dict, pt: dict) -> list:
    """One RESULTS.md row from the two records."""
    jt, pt_time = jx["seconds_per_iteration"], pt.get("seconds_per_iteration")
    torch_cell = f"{pt_time['mean']:.3f} ± {pt_time['std']:.3f}" if pt_time else "failed"
    ratio = f"{jt['mean'] / pt_time['mean']:.2f}" if pt_time else "n/a"
    return [
        jx["date"],
        jx["jax_version"],
        pt.get("torch_version", "n/a"),
        jx["width"],
        jx["batch_real"],
        f"{jx['iters']} ({jx['warmup']})",
        f"{jx['threads']}/{pt.get('threads', 'n/a')}",
        f"{jt['mean']:.3f} ± {jt['std']:.3f}",
        f"{jx['compile_seconds']:.1f}",
        torch_cell,
        ratio,
    ]


def main(argv: list[str] | None = None) -> None:
    """Times both frameworks, prints/writes the JSON records, appends to RESULTS.md."""
    args = parse_args(argv)
    jx = jaxdd_record(args)
    pt = torch_record(args)
    results.write_json([jx, pt], args.out)
    heading = results.hardware(args.device_note)
    title = TITLE.format(method=args.method.upper() if args.method == "dm" else "DANCE")
    results.record(heading, title, HEADER, [markdown_row(jx, pt)], Path(args.results))


if __name__ == "__main__":
    main()
