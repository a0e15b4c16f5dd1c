"""Peak memory of DATM's matching gradient vs syn_steps, with and without remat.

For every N in `--steps` this compiles (never runs)
``jax.jit(jax.grad(matching_loss, argnums=(images, labels, syn_lr)))`` at the
bench_datm settings (ConvNet-`--width` depth 3, 28×28×1, 10 classes, IPC 10,
batch_syn 100, soft labels, DSA off) and reads XLA's
``compiled.memory_analysis()``: temp bytes (the live intermediates, what
remat is for) and argument + output bytes. Two loop forms are measured,
because what XLA keeps live depends on it (docs/algorithms.md §1.2, docs/architecture.md
"Known platform traps"):

* ``rolled``: ``lax.scan`` with ``unroll=1``, what jaxdd uses on GPU/TPU;
* ``unrolled``: the fully unrolled scan jaxdd uses on CPU.

The form is forced by patching `jaxdd.ops.loops.on_cpu` during lowering, so
both columns exist on every backend. Each cell compiles in its own
subprocess under `--timeout`; a compile that runs past it, or an unrolled
one whose time predicted from the previous N (compile time grows at least
linearly with the unrolled length) exceeds it, is reported as skipped with
the reason, and larger N of that series are not tried.

Run from the repository root::

  python -m benchmarks.bench_memory --steps 10 20 40 80 --device-note shared
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import jax
import jax.numpy as jnp

from benchmarks import results
from benchmarks.bench_datm import IMAGE_SHAPE, IPC, NUM_CLASSES, REPO, datm_config
from jaxdd.methods import datm
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops import loops

FORMS = ("rolled", "unrolled")
HEADER = [
    "date",
    "jax",
    "syn_steps",
    "rolled: temp, remat off",
    "rolled: remat on",
    "rolled: off ÷ on",
    "unrolled: temp, remat off",
    "unrolled: remat on",
    "unrolled: off ÷ on",
    "args + outputs",
    "compile s, remat off: rolled / unrolled",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40, 80], help="N values")
    p.add_argument("--width", type=int, default=128, help="ConvNet channels")
    p.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds per cell (its subprocess, start-up included)",
    )
    p.add_argument("--device-note", default="", help="put in the RESULTS.md heading, e.g. shared")
    p.add_argument("--out", default=None, help="write the JSON records here")
    p.add_argument("--results", default=str(results.RESULTS), help="Markdown file to append to")
    p.add_argument("--cell", nargs=3, metavar=("N", "FORM", "REMAT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def analyse(syn_steps: int, form: str, remat: bool, width: int) -> dict:
    """Compiles the matching gradient for one cell; XLA's memory analysis and compile time."""
    config = datm_config(syn_steps, remat=remat)
    model = make_convnet(ConvNetSpec(NUM_CLASSES, IMAGE_SHAPE, width=width, depth=3))
    n = IPC * NUM_CLASSES
    images = jax.ShapeDtypeStruct((n, *IMAGE_SHAPE), jnp.float32)
    labels = jax.ShapeDtypeStruct((n, NUM_CLASSES), jnp.float32)
    syn_lr = jax.ShapeDtypeStruct((), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0))
    key = jax.eval_shape(lambda: jax.random.key(0))

    def loss(i, y, lr, start, target, k):
        return datm.matching_loss(model, config, i, y, lr, start, target, key=k)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    t0 = time.perf_counter()
    with mock.patch.object(loops, "on_cpu", lambda: form == "unrolled"):
        compiled = grad.lower(images, labels, syn_lr, params, params, key).compile()
    stats = compiled.memory_analysis()
    return {
        "syn_steps": syn_steps,
        "form": form,
        "remat": remat,
        "compile_seconds": time.perf_counter() - t0,
        "temp_bytes": stats.temp_size_in_bytes,
        "argument_bytes": stats.argument_size_in_bytes,
        "output_bytes": stats.output_size_in_bytes,
        "alias_bytes": stats.alias_size_in_bytes,
    }


def run_cell(syn_steps: int, form: str, remat: bool, args: argparse.Namespace) -> dict:
    """`analyse` in a subprocess, killed after ``args.timeout`` seconds."""
    cell = [str(syn_steps), form, str(int(remat))]
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--cell", *cell]
    cmd += ["--width", str(args.width)]
    base = {"syn_steps": syn_steps, "form": form, "remat": remat}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**base, "skipped": f"compile > {args.timeout:.0f} s"}
    if proc.returncode != 0:
        return {**base, "skipped": "failed: " + proc.stderr[-500:]}
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**record, "subprocess_seconds": time.perf_counter() - t0}


def _skip_reason(n: int, form: str, previous: dict | None, timeout: float) -> str | None:
    """Why cell (n, form) is not compiled, given the same series' previous record.

    An unrolled program grows linearly in N, and so (at least) does its
    compile time: if the previous N's compile, scaled by N / N_prev, already
    exceeds the timeout, the cell is skipped instead of compiled until killed.
    """
    if previous is None:
        return None
    if "skipped" in previous:
        return f"a smaller N was skipped ({previous['skipped']})"
    predicted = previous["compile_seconds"] * n / previous["syn_steps"]
    if form == "unrolled" and predicted > timeout:
        return f"compile predicted {predicted:.0f} s > {timeout:.0f} s"
    return None


def run_grid(args: argparse.Namespace) -> list[dict]:
    """All cells, N ascending; see `_skip_reason` for the cells left out."""
    records, last = [], {}
    for n in sorted(args.steps):
        for form in args.forms:
            for remat in (False, True):
                reason = _skip_reason(n, form, last.get((form, remat)), args.timeout)
                if reason:
                    record = {"syn_steps": n, "form": form, "remat": remat, "skipped": reason}
                else:
                    record = run_cell(n, form, remat, args)
                print(json.dumps(record), flush=True)
                last[(form, remat)] = record
                records.append(record)
    return records


def _mib(record: dict | None) -> str:
    if record is None or "skipped" in record:
        return "skipped" if record else "not run"
    return f"{record['temp_bytes'] / 2**20:.1f} MiB"


def _seconds(record: dict | None) -> str:
    if record is None or "skipped" in record:
        return "–"
    return f"{record['compile_seconds']:.0f}"


def _ratio(off: dict | None, on: dict | None) -> str:
    if not off or not on or "skipped" in off or "skipped" in on:
        return "n/a"
    return f"{off['temp_bytes'] / on['temp_bytes']:.2f}"


def markdown_rows(records: list[dict], date: str) -> list[list]:
    """One row per N: temp bytes of each form with remat off/on and their ratio."""
    cells = {(r["syn_steps"], r["form"], r["remat"]): r for r in records}
    rows = []
    for n in sorted({r["syn_steps"] for r in records}):
        row = [date, jax.__version__, n]
        for form in FORMS:
            off, on = cells.get((n, form, False)), cells.get((n, form, True))
            row += [_mib(off), _mib(on), _ratio(off, on)]
        done = [r for r in records if r["syn_steps"] == n and "skipped" not in r]
        io = done[0]["argument_bytes"] + done[0]["output_bytes"] if done else None
        row.append(f"{io / 2**20:.1f} MiB" if io is not None else "n/a")
        rows.append(row + [" / ".join(_seconds(cells.get((n, f, False))) for f in FORMS)])
    return rows


def main(argv: list[str] | None = None) -> None:
    """Runs one cell (internal) or the grid; writes JSON and the RESULTS.md table."""
    args = parse_args(argv)
    if args.cell:
        n, form, remat = args.cell
        print(json.dumps(analyse(int(n), form, remat == "1", args.width)))
        return
    env = results.environment()
    records = run_grid(args)
    results.write_json({**env, "width": args.width, "cells": records}, args.out)
    title = (
        f"Matching-gradient memory (XLA memory_analysis, compile only): ConvNet-{args.width} "
        "depth 3, 28×28×1, IPC 10, batch_syn 100, soft labels, DSA off"
    )
    heading = results.hardware(args.device_note)
    results.record(heading, title, HEADER, markdown_rows(records, env["date"]), Path(args.results))


if __name__ == "__main__":
    main()
