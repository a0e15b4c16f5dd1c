"""A DATM sweep of K points: one vmapped program (`jaxdd sweep`) vs K sequential runs.

Both sides do the same work: K DATM iterations per sweep iteration, one per
point, each point with its own image lr (``lr_img`` = 10 … 1000, spaced
logarithmically) and its own seed, on the `bench_datm` setting (depth-3
ConvNet of `--width` channels, 28×28×1, IPC 10, batch_syn 100, `--syn-steps`
student steps, soft labels, DSA off, a random E=2, T=4 expert trajectory
pytree shared by the points).

* ``vmapped``: `jaxdd.sweep.lanes_step` (vectorize=True): the method's step vmapped over the
  K lanes, the lrs traced, the lane axis sharded over the devices that divide
  K — what ``jaxdd sweep`` runs;
* ``looped``: the same, one jitted single-lane program called per lane (the
  sweep's default on XLA:CPU, where vmapped per-lane conv weights are slow);
* ``sequential``: K separately jitted ``distill_step`` calls with the lr as a
  constant — what K ``jaxdd distill`` runs do, one iteration each.

Compilation is excluded (every function is called once first); the seconds
are per sweep iteration (all K points advanced once), mean ± std over
`--iters` timed iterations, after `--warmup`.

  python -m benchmarks.bench_sweep --points 8 --width 32 --syn-steps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import results
from benchmarks.bench_datm import datm_config, initial_state, random_trajectories
from jaxdd import parallel, sweep
from jaxdd.distill import DistillConfig
from jaxdd.methods import base
from jaxdd.models.convnet import ConvNetSpec, make_convnet

HEADER = ["date", "jax", "width", "syn_steps", "K", "devices", "mode", "s / sweep iter", "× faster"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=8, help="K, sweep points")
    p.add_argument("--width", type=int, default=32, help="ConvNet channels")
    p.add_argument("--syn-steps", type=int, default=10)
    p.add_argument("--iters", type=int, default=3, help="timed sweep iterations")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device-note", default="", help="put in the RESULTS.md heading, e.g. shared")
    p.add_argument("--out", default=None, help="write the JSON records here")
    p.add_argument("--results", default=str(results.RESULTS), help="Markdown file to append to")
    return p.parse_args(argv)


def _timed(call, warmup: int, iters: int) -> list[float]:
    seconds = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        if i >= warmup:
            seconds.append(time.perf_counter() - t0)
    return seconds


def measure(args: argparse.Namespace) -> list[dict]:
    """Times both modes on the same K configs and states."""
    model = make_convnet(ConvNetSpec(10, (28, 28, 1), width=args.width, depth=3))
    base_cfg = DistillConfig(datm=datm_config(args.syn_steps))
    lrs = np.geomspace(10.0, 1000.0, args.points)
    configs = [
        dataclasses.replace(base_cfg, datm=dataclasses.replace(base_cfg.datm, lr_img=float(v)))
        for v in lrs
    ]
    trajectories = random_trajectories(model, key=jax.random.key(0))
    states = [initial_state(c.datm, key=jax.random.key(1 + k)) for k, c in enumerate(configs)]
    method = base.get_method("datm")

    mesh = parallel.runs_mesh(args.points)
    values = parallel.shard_runs({"datm.lr_img": np.asarray(lrs, np.float32)}, mesh)
    shared = parallel.replicate(trajectories, mesh)

    def lanes(vectorize: bool):
        step = sweep.lanes_step(method, model, base_cfg, None, vectorize=vectorize)
        stacked = [parallel.shard_runs(sweep._stack(states), mesh)]

        def call():
            stacked[0], metrics = step(values, stacked[0], shared)
            return stacked[0], metrics

        return call

    singles = [jax.jit(lambda s, r, c=c: method.step(model, c, s, r)) for c in configs]
    current = list(states)

    def sequential():
        for k, single in enumerate(singles):
            current[k], _ = single(current[k], trajectories)
        return current

    records = []
    modes = (("vmapped", lanes(True)), ("looped", lanes(False)), ("sequential", sequential))
    for mode, call in modes:
        call()  # compiles
        timing = results.mean_std(_timed(call, args.warmup, args.iters))
        records.append({"mode": mode, "seconds_per_sweep_iteration": timing, "devices": mesh.size})
    return records


def markdown_rows(args, records: list[dict], env: dict) -> list[list]:
    seq = {r["mode"]: r["seconds_per_sweep_iteration"]["mean"] for r in records}["sequential"]
    rows = []
    for r in records:
        t = r["seconds_per_sweep_iteration"]
        devices = r["devices"] if r["mode"] != "sequential" else 1
        rows.append(
            [env["date"], env["jax_version"], args.width, args.syn_steps, args.points, devices]
            + [r["mode"], f"{t['mean']:.3f} ± {t['std']:.3f}", f"{seq / t['mean']:.2f}"]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Times both modes, prints/writes JSON, appends to RESULTS.md."""
    args = parse_args(argv)
    env = results.environment()
    records = measure(args)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "results")}
    results.write_json({**env, **settings, "modes": records}, args.out)
    title = (
        "DATM sweep: K points (lr_img 10…1000) as one vmapped program vs K sequential runs, "
        "ConvNet depth 3, 28×28×1, IPC 10, batch_syn 100, DSA off, compile excluded"
    )
    rows = markdown_rows(args, records, env)
    results.record(results.hardware(args.device_note), title, HEADER, rows, Path(args.results))


if __name__ == "__main__":
    main()
