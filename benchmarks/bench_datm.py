"""Times ONE DATM distillation iteration in jaxdd and in the PyTorch reference.

Both sides do identical work (docs/algorithms.md §1.2–1.3,
benchmarks/torch_baseline/README.md): a depth-3 ConvNet of `--width`
channels on 28×28×1 images, 10 classes, IPC 10 (100 synthetic images),
batch_syn 100, `--syn-steps` unrolled student steps, learned soft labels,
DSA off, no loss gate, and SGD updates of the images (lr 100, momentum
0.5), the student lr (1e-5, 0.5) and the label logits (2, 0.9). jaxdd's
iteration is ``jax.jit(distill_step)`` (state donated, as the driver does)
on a random expert trajectory pytree (E=2, T=4) built from ``model.init``;
compile time is measured separately and excluded from the timings. The
torch baseline runs in a subprocess after jaxdd is done.

Run from the repository root::

  python -m benchmarks.bench_datm --syn-steps 20 --iters 5 --device-note shared
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks import results
from jaxdd.methods import datm
from jaxdd.models.convnet import ConvNetSpec, Model, Params, make_convnet

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES, IMAGE_SHAPE, DEPTH, IPC, BATCH_SYN = 10, (28, 28, 1), 3, 10, 100
NUM_EXPERTS, EXPERT_EPOCHS, MATCH_EPOCHS = 2, 4, 2
TITLE = (
    "DATM iteration: ConvNet depth 3, 28×28×1, 10 classes, IPC 10, batch_syn 100, "
    "soft labels, DSA off (seconds per iteration, mean ± std)"
)
HEADER = [
    "date",
    "jax",
    "torch",
    "width",
    "syn_steps",
    "iters (warmup)",
    "threads jax/torch",
    "jaxdd s/iter",
    "jaxdd compile s",
    "torch s/iter",
    "jaxdd ÷ torch time",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--syn-steps", type=int, default=20, help="N, unrolled student steps")
    p.add_argument("--width", type=int, default=128, help="ConvNet channels")
    p.add_argument("--iters", type=int, default=5, help="timed iterations")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations after compiling")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="pin both frameworks to this many CPUs (default: leave both at their default)",
    )
    p.add_argument("--device-note", default="", help="put in the RESULTS.md heading, e.g. shared")
    p.add_argument("--out", default=None, help="write the two JSON records here")
    p.add_argument("--results", default=str(results.RESULTS), help="Markdown file to append to")
    return p.parse_args(argv)


def pin_threads(threads: int) -> None:
    """Restricts this process (and its children) to `threads` CPUs.

    XLA:CPU sizes its thread pool by the schedulable CPUs when the backend
    starts, so this must run before the first JAX computation.
    """
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)


def datm_config(syn_steps: int, *, remat: bool = False) -> datm.DATMConfig:
    """The baseline's settings: soft labels, DSA off, no gate, fixed window."""
    return datm.DATMConfig(
        ipc=IPC,
        syn_steps=syn_steps,
        batch_syn=BATCH_SYN,
        soft_labels=True,
        dsa=False,
        remat=remat,
        expert_epochs=MATCH_EPOCHS,
        min_start_epoch=0,
        max_start_epoch=EXPERT_EPOCHS - MATCH_EPOCHS + 1,
        sequential_generation=False,
        threshold=math.inf,
    )


def random_trajectories(model: Model, *, key: jax.Array) -> Params:
    """``[E, T + 1, ...]`` snapshots: an init per expert plus a 0.01-scale random walk."""
    init_key, walk_key = jax.random.split(key)
    inits = jax.vmap(model.init)(jax.random.split(init_key, NUM_EXPERTS))
    leaves, treedef = jax.tree.flatten(inits)
    walk_keys = jax.random.split(walk_key, len(leaves))
    snaps = []
    for leaf, k in zip(leaves, walk_keys, strict=True):
        shape = (leaf.shape[0], EXPERT_EPOCHS, *leaf.shape[1:])
        walk = jnp.cumsum(0.01 * jax.random.normal(k, shape), axis=1)
        snaps.append(jnp.concatenate([leaf[:, None], leaf[:, None] + walk], axis=1))
    return jax.tree.unflatten(treedef, snaps)


def initial_state(config: datm.DATMConfig, *, key: jax.Array) -> datm.DATMState:
    """Random synthetic images and label logits, like the baseline's."""
    img_key, lab_key, run_key = jax.random.split(key, 3)
    n = IPC * NUM_CLASSES
    images = jax.random.normal(img_key, (n, *IMAGE_SHAPE))
    labels = jax.random.normal(lab_key, (n, NUM_CLASSES))
    return datm.init_state(images, labels, config, key=run_key)


def time_iterations(step, state, trajectories, warmup: int, iters: int):
    """Runs ``warmup`` then ``iters`` iterations; returns the timed seconds and last loss."""
    seconds, metrics = [], {}
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        state, metrics = step(state, trajectories)
        jax.block_until_ready((state, metrics))
        if i >= warmup:
            seconds.append(time.perf_counter() - t0)
    return seconds, float(metrics["loss"])


def jaxdd_record(args: argparse.Namespace) -> dict:
    """Compiles and times jaxdd's iteration; returns its JSON record."""
    config = datm_config(args.syn_steps)
    model = make_convnet(ConvNetSpec(NUM_CLASSES, IMAGE_SHAPE, width=args.width, depth=DEPTH))
    traj_key, state_key = jax.random.split(jax.random.key(0))
    trajectories = random_trajectories(model, key=traj_key)
    state = initial_state(config, key=state_key)
    step = jax.jit(lambda s, t: datm.distill_step(model, config, s, t), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, trajectories).compile()
    compile_seconds = time.perf_counter() - t0
    seconds, loss = time_iterations(compiled, state, trajectories, args.warmup, args.iters)
    return {
        "framework": "jaxdd",
        **results.environment(),
        "threads": args.threads or len(os.sched_getaffinity(0)),
        **settings(args),
        "seconds_per_iteration": results.mean_std(seconds),
        "compile_seconds": compile_seconds,
        "xla_temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
        "final_loss": loss,
    }


def settings(args: argparse.Namespace) -> dict:
    """The settings shared by both records."""
    return {
        "width": args.width,
        "depth": DEPTH,
        "ipc": IPC,
        "num_classes": NUM_CLASSES,
        "image_shape": list(IMAGE_SHAPE),
        "syn_steps": args.syn_steps,
        "batch_syn": BATCH_SYN,
        "soft_labels": True,
        "dsa": False,
        "iters": args.iters,
        "warmup": args.warmup,
    }


def torch_command(args: argparse.Namespace, out: str) -> list[str]:
    """The baseline's command line at the same settings."""
    cmd = [sys.executable, "-m", "benchmarks.torch_baseline.bench"]
    cmd += ["--device", "cpu" if jax.default_backend() == "cpu" else "cuda"]
    cmd += ["--ipc", str(IPC), "--num-classes", str(NUM_CLASSES), "--image-size", "28"]
    cmd += ["--channels", "1", "--width", str(args.width), "--depth", str(DEPTH)]
    cmd += ["--syn-steps", str(args.syn_steps), "--batch-syn", str(BATCH_SYN), "--soft-labels"]
    cmd += ["--iters", str(args.iters), "--warmup", str(args.warmup), "--out", out]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    return cmd


def torch_record(args: argparse.Namespace) -> dict:
    """Runs the PyTorch baseline in a subprocess; its record, or the failure."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "torch.json")
        cmd = torch_command(args, out)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"framework": "pytorch", "error": proc.stderr[-2000:], "command": cmd}
        with open(out) as f:
            return {**json.load(f), "command": cmd}


def markdown_row(jx: dict, pt: dict) -> list:
    """One RESULTS.md row from the two records."""
    jt = jx["seconds_per_iteration"]
    pt_time = pt.get("seconds_per_iteration")
    torch_cell = f"{pt_time['mean']:.2f} ± {pt_time['std']:.2f}" if pt_time else "failed"
    ratio = f"{jt['mean'] / pt_time['mean']:.2f}" if pt_time else "n/a"
    return [
        jx["date"],
        jx["jax_version"],
        pt.get("torch_version", "n/a"),
        jx["width"],
        jx["syn_steps"],
        f"{jx['iters']} ({jx['warmup']})",
        f"{jx['threads']}/{pt.get('threads', 'n/a')}",
        f"{jt['mean']:.2f} ± {jt['std']:.2f}",
        f"{jx['compile_seconds']:.1f}",
        torch_cell,
        ratio,
    ]


def main(argv: list[str] | None = None) -> None:
    """Times both frameworks, prints/writes the JSON records, appends to RESULTS.md."""
    args = parse_args(argv)
    if args.threads is not None:
        pin_threads(args.threads)
    jx = jaxdd_record(args)
    pt = torch_record(args)
    results.write_json([jx, pt], args.out)
    heading = results.hardware(args.device_note)
    results.record(heading, TITLE, HEADER, [markdown_row(jx, pt)], Path(args.results))


if __name__ == "__main__":
    main()
