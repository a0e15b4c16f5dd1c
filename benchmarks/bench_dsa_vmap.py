"""What DSA costs per training step when the runs axis is vmapped.

`jax.lax.switch` under `vmap` with a batched index becomes `select_n`: all
six DSA families run on every step. jaxdd chooses the family from a key
shared by the vmapped runs (`jaxdd.ops.train.make_train_step`'s
``family_key``), so only one runs. This times one jitted, vmapped training
step of R runs (ConvNet, batch `--batch-size`, 28×28×1) in four ways:

* ``none``: no DSA, the step's floor;
* ``one family (mean)``: DSA restricted to a single family, averaged over
  the six families: what one family costs;
* ``shared``: all six families, the family shared by the runs (jaxdd);
* ``per-run``: all six families, each run drawing its own family (the
  `select_n` lowering every family runs under).

The verdict column divides each DSA row's extra time over ``none`` by the
one-family extra time. Run from the repository root::

  python -m benchmarks.bench_dsa_vmap --runs 4 --width 32
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks import results
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops import dsa as dsa_lib
from jaxdd.ops.train import TrainConfig, init_state, make_train_step

HEADER = ["date", "jax", "width", "R", "batch", "mode", "ms per step", "DSA ms", "÷ one family"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=4, help="R, vmapped runs")
    p.add_argument("--width", type=int, default=32, help="ConvNet channels")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=20, help="timed steps per mode")
    p.add_argument("--device-note", default="", help="e.g. 'shared' if other jobs ran")
    p.add_argument("--out", help="also write the JSON records here")
    p.add_argument("--results", default=str(results.RESULTS), help="Markdown results file")
    return p.parse_args(argv)


def _step_fn(model, families: tuple[str, ...] | None, shared: bool, batch: int):
    """A jitted vmapped step of R runs and its config; ``families=None``: no DSA."""
    config = TrainConfig(
        batch_size=batch,
        lr_milestones=(),
        dsa=families is not None,
        dsa_families=families or dsa_lib.FAMILIES,
    )
    step = make_train_step(model, config, total_steps=1000)
    if shared:
        fn = step
    else:

        def fn(state, i, x, targets, family_key):
            del family_key  # every run draws its family from its own key
            return step(state, i, x, targets)

    return jax.jit(jax.vmap(fn, (0, None, None, None, None))), config


def _time(fn, states, x, targets, iters: int) -> float:
    """Fastest of `iters` timed steps (compiled first, untimed), in seconds.

    The minimum rather than the median: on a shared machine other jobs only
    ever add time, so the fastest step is the closest to the step's own cost.
    """
    key = jax.random.key(0)
    jax.block_until_ready(fn(states, jnp.int32(0), x, targets, key))
    times = []
    for i in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(states, jnp.int32(i + 1), x, targets, key))
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    model = make_convnet(ConvNetSpec(10, (28, 28, 1), width=args.width, depth=3))
    x = jax.random.normal(jax.random.key(1), (args.batch_size * 4, 28, 28, 1))
    targets = jax.nn.one_hot(jnp.arange(x.shape[0]) % 10, 10)
    keys = jax.random.split(jax.random.key(2), args.runs)

    def measure(families, shared):
        fn, config = _step_fn(model, families, shared, args.batch_size)
        states = jax.vmap(lambda k: init_state(model, config, 0.01, key=k))(keys)
        return _time(fn, states, x, targets, args.iters)

    floor = measure(None, shared=True)
    singles = [measure((name,), shared=True) for name in dsa_lib.FAMILIES]
    one = statistics.fmean(singles)
    timed = {
        "none": floor,
        "one family (mean)": one,
        "shared": measure(dsa_lib.FAMILIES, shared=True),
        "per-run": measure(dsa_lib.FAMILIES, shared=False),
    }
    env = results.environment()
    records, rows = [], []
    for mode, seconds in timed.items():
        extra = seconds - floor
        ratio = extra / (one - floor) if mode != "none" and one > floor else None
        records.append({**env, **vars(args), "mode": mode, "seconds": seconds, "ratio": ratio})
        rows.append(
            [
                env["date"],
                env["jax_version"],
                args.width,
                args.runs,
                args.batch_size,
                mode,
                f"{1e3 * seconds:.2f}",
                f"{1e3 * extra:.2f}" if mode != "none" else "–",
                f"{ratio:.2f}" if ratio is not None else "–",
            ]
        )
    results.write_json(records, args.out)
    title = "DSA cost per vmapped training step (bench_dsa_vmap)"
    results.record(results.hardware(args.device_note), title, HEADER, rows, path=Path(args.results))
    return records


if __name__ == "__main__":
    main()
