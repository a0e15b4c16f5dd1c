"""Times ONE RCIG meta-step with the pool on the device (jaxdd) and on the host (as the reference).

Both sides run the same jitted meta-step of `jaxdd.methods.rcig` (inner CG
solve, outer loss, H⁻¹g, implicit gradient, AdaBelief, EMA, 1-15 pool steps)
on the RCIG ConvNet (width `--width` doubling per block, depth 3, softplus),
28×28×1 or 32×32×3 images, 10 classes, IPC `--ipc` with flip copies, a real
batch of `--batch-real`, a pool of `--pool` models:

  * ``device``: the pool is part of the state, stacked on the device; the
    step picks, trains and writes back its model inside the jitted program
    (state donated, as the driver runs it);
  * ``host``: the pool lives in host memory (numpy); each meta-step picks a
    model on the host, copies its parameters and Adam state to the device,
    runs the same step on a pool of one, and copies the model back — what
    the reference does with its CPU-resident pool.

The pool-step count is drawn inside the step on both sides, so their work
is the same on average. Compile time is measured separately and excluded;
XLA's temp-buffer size of the compiled step is reported.

Run from the repository root::

  python -m benchmarks.bench_rcig --iters 5 --device-note idle
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import results
from jaxdd.methods import rcig
from jaxdd.models.convnet import ConvNetSpec, make_convnet

NUM_CLASSES, DEPTH = 10, 3
TITLE = (
    "RCIG meta-step: ConvNet width×(1, 2, 4), depth 3, softplus, 10 classes, CG solves "
    "(seconds per meta-step, mean ± std)"
)
HEADER = [
    "date",
    "jax",
    "image",
    "width",
    "ipc (flip)",
    "batch_real",
    "pool",
    "iters (warmup)",
    "threads",
    "device pool s/step",
    "host pool s/step",
    "host ÷ device time",
    "compile s",
    "XLA temp MiB",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=128, help="channels of the first block")
    p.add_argument("--image", choices=["28x28x1", "32x32x3"], default="32x32x3")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--batch-real", type=int, default=1024)
    p.add_argument("--pool", type=int, default=30)
    p.add_argument("--iters", type=int, default=5, help="timed meta-steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed meta-steps after compiling")
    p.add_argument("--device-note", default="", help="put in the RESULTS.md heading")
    p.add_argument("--out", default=None, help="write the JSON record here")
    p.add_argument("--results", default=str(results.RESULTS), help="Markdown file to append to")
    return p.parse_args(argv)


def _setup(args):
    shape = tuple(int(v) for v in args.image.split("x"))
    spec = ConvNetSpec(NUM_CLASSES, shape, width=args.width, depth=DEPTH)
    config = rcig.RCIGConfig(
        ipc=args.ipc, batch_real=args.batch_real, pool_size=args.pool, flip=True
    )
    model = make_convnet(rcig.networks(spec, config)[0])
    k_real, k_img, k_state = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k_real, (max(4 * args.batch_real, 2000), *shape))
    real = rcig.Real(x, jax.nn.one_hot(jnp.arange(x.shape[0]) % NUM_CLASSES, NUM_CLASSES))
    images = jax.random.normal(k_img, (NUM_CLASSES * args.ipc, *shape))
    state = rcig.init_state(model, images, NUM_CLASSES, config, key=k_state)
    return model, config, real, state


def _time(run, n_warmup: int, n_iters: int) -> list[float]:
    seconds = []
    for i in range(n_warmup + n_iters):
        t0 = time.perf_counter()
        run()
        if i >= n_warmup:
            seconds.append(time.perf_counter() - t0)
    return seconds


def device_pool(args) -> tuple[list[float], float, int]:
    """Seconds per meta-step with the pool in the state; compile seconds; temp bytes."""
    model, config, real, state = _setup(args)
    step = jax.jit(lambda s, r: rcig.distill_step(model, config, s, r), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, real).compile()
    compile_seconds = time.perf_counter() - t0
    box = [state]

    def run():
        box[0], metrics = compiled(box[0], real)
        jax.block_until_ready((box[0], metrics))

    seconds = _time(run, args.warmup, args.iters)
    return seconds, compile_seconds, compiled.memory_analysis().temp_size_in_bytes


def host_pool(args) -> list[float]:
    """Seconds per meta-step with the pool on the host, one model copied in and out."""
    model, config, real, state = _setup(args)
    one = dataclasses.replace(config, pool_size=1)
    host = jax.device_get((state.pool, state.pool_opt, state.pool_steps))
    host = tuple(jax.tree.map(np.array, h) for h in host)  # writable host copies
    small = state._replace(
        pool=jax.tree.map(lambda a: a[:1], state.pool),
        pool_opt=jax.tree.map(lambda a: a[:1], state.pool_opt),
        pool_steps=state.pool_steps[:1],
    )
    step = jax.jit(lambda s, r: rcig.distill_step(model, one, s, r), donate_argnums=0)
    compiled = step.lower(small, real).compile()
    rng = np.random.default_rng(0)
    box = [small]

    def run():
        p = int(rng.integers(config.pool_size))
        pool, pool_opt, steps = host
        picked = box[0]._replace(
            pool=jax.device_put(jax.tree.map(lambda a: a[p : p + 1], pool)),
            pool_opt=jax.device_put(jax.tree.map(lambda a: a[p : p + 1], pool_opt)),
            pool_steps=jax.device_put(steps[p : p + 1]),
        )
        box[0], metrics = compiled(picked, real)
        back = jax.device_get((box[0].pool, box[0].pool_opt, box[0].pool_steps, metrics))
        for dst, src in zip(
            jax.tree.leaves((pool, pool_opt)), jax.tree.leaves(back[:2]), strict=True
        ):
            dst[p] = src[0]
        steps[p] = back[2][0]

    return _time(run, args.warmup, args.iters)


def main(argv: list[str] | None = None) -> None:
    """Times both pools, prints/writes the JSON record, appends a row to RESULTS.md."""
    args = parse_args(argv)
    dev, compile_seconds, temp = device_pool(args)
    hst = host_pool(args)
    record = {
        "benchmark": "rcig_meta_step",
        **results.environment(),
        "threads": len(os.sched_getaffinity(0)),
        **{k: getattr(args, k) for k in ("width", "image", "ipc", "batch_real", "pool")},
        "iters": args.iters,
        "warmup": args.warmup,
        "device_pool_seconds": results.mean_std(dev),
        "host_pool_seconds": results.mean_std(hst),
        "compile_seconds": compile_seconds,
        "xla_temp_bytes": temp,
    }
    results.write_json([record], args.out)
    d, h = record["device_pool_seconds"], record["host_pool_seconds"]
    row = [
        record["date"],
        record["jax_version"],
        args.image,
        args.width,
        f"{args.ipc} (×2)",
        args.batch_real,
        args.pool,
        f"{args.iters} ({args.warmup})",
        record["threads"],
        f"{d['mean']:.3f} ± {d['std']:.3f}",
        f"{h['mean']:.3f} ± {h['std']:.3f}",
        f"{h['mean'] / d['mean']:.2f}",
        f"{compile_seconds:.1f}",
        f"{temp / 2**20:.0f}",
    ]
    results.record(results.hardware(args.device_note), TITLE, HEADER, [row], Path(args.results))


if __name__ == "__main__":
    main()
