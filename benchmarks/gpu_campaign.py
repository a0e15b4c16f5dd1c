"""Everything one GPU session should measure, in one call sized to its time budget.

    python -m benchmarks.gpu_campaign --out "$OUT" --data-dir data/ --budget-minutes 9
    python -m benchmarks.gpu_campaign --smoke --out /tmp/campaign    # CPU, tiny, ~1 minute

The parts run in order (`PARTS`), each as its own process with a timeout
taken from what is left of ``--budget-minutes`` (never more than its own
cap): first the benchmarks — jaxdd against the PyTorch reference or the
host-pool way in the same run (`bench_datm`, `bench_dm` for DM and DANCE,
`bench_rcig`), then `bench_memory`, `bench_experts`, `bench_sweep`,
`bench_dsa_vmap` — and then as many of the Fashion-MNIST accuracy runs
(`ACCURACY`, the published configurations with fewer experts where the
budget needs it, said in each row) as fit. A part that runs out of time is
stopped and recorded as such; an accuracy run checkpoints, so the same
command resumes it next time (``--out`` keeps the run directories).

Everything lands under ``--out``: ``RESULTS.md`` (the benchmark rows, in
the layout of ``benchmarks/RESULTS.md``, hardware named), one JSON record
per benchmark, ``runs/`` (each accuracy run's directory: summary.json,
config.json, pictures), ``campaign.jsonl`` (a line per part: status,
seconds, command) and ``campaign.md`` (the table of parts and the
accuracy rows). Fashion-MNIST is read from IDX files: ``--data-dir``
(or ``$JAXDD_DATA_DIR``), e.g. a git-ignored folder carried to the machine.

``--smoke`` runs every part at a tiny size on whatever JAX finds (CPU in
the test suite) with the accuracy runs on the embedded digits, so the
script is known to work before it meets a GPU. The plan, with the minutes
each part is expected to take on an H200, is in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Part:
    """One step of the campaign.

    Attributes:
      name: its label (and the JSON record's file name).
      command: the arguments after ``python -m`` at full size.
      smoke: the arguments at smoke size.
      minutes: its cap at full size (the H200 estimate in benchmarks/README.md
        plus a margin).
      kind: ``bench`` (writes RESULTS.md rows) or ``accuracy`` (a run directory).
    """

    name: str
    command: tuple[str, ...]
    smoke: tuple[str, ...]
    minutes: float
    kind: str = "bench"


def _bench(name, module, full, smoke, minutes) -> Part:
    return Part(name, (f"benchmarks.{module}", *full), (f"benchmarks.{module}", *smoke), minutes)


TINY = ("--width", "4", "--iters", "1")
PARTS = (
    _bench("datm_n20", "bench_datm", ("--syn-steps", "20"), (*TINY, "--syn-steps", "2"), 1.0),
    _bench("datm_n80", "bench_datm", ("--syn-steps", "80"), (*TINY, "--syn-steps", "3"), 1.0),
    _bench(
        "dm",
        "bench_dm",
        ("--method", "dm"),
        (*TINY, "--method", "dm", "--per-class", "8", "--batch-real", "4"),
        0.8,
    ),  # fmt: skip
    _bench(
        "dance",
        "bench_dm",
        ("--method", "dance"),
        (*TINY, "--method", "dance", "--per-class", "8", "--batch-real", "4"),
        0.8,
    ),  # fmt: skip
    _bench(
        "rcig",
        "bench_rcig",
        (),
        (
            "--width",
            "4",
            "--iters",
            "1",
            "--warmup",
            "1",
            "--ipc",
            "1",
            "--batch-real",
            "16",
            "--pool",
            "2",
            "--image",
            "28x28x1",
        ),
        1.0,
    ),  # fmt: skip
    _bench(
        "memory",
        "bench_memory",
        ("--steps", "10", "20", "40", "80"),
        ("--width", "4", "--steps", "2", "4"),
        1.0,
    ),  # fmt: skip
    _bench(
        "experts",
        "bench_experts",
        ("--experts", "8", "--num-images", "8192"),
        (
            "--width",
            "4",
            "--experts",
            "2",
            "--num-images",
            "64",
            "--batch-size",
            "32",
            "--iters",
            "1",
        ),
        1.0,
    ),  # fmt: skip
    _bench(
        "sweep",
        "bench_sweep",
        ("--points", "8", "--width", "128", "--syn-steps", "20"),
        ("--points", "2", "--width", "4", "--syn-steps", "2", "--iters", "1"),
        1.0,
    ),  # fmt: skip
    _bench(
        "dsa_vmap",
        "bench_dsa_vmap",
        ("--runs", "8", "--width", "128"),
        ("--runs", "2", "--width", "4", "--batch-size", "8", "--iters", "2"),
        0.5,
    ),  # fmt: skip
)


def _distill(name: str, config: str, noise: str, trust: str, minutes: float, *extra) -> Part:
    """A Fashion-MNIST accuracy run (full size) and its digits counterpart (smoke).

    `name` starts with the method (``dm_``, ``datm_``, ``dance_``, ``rcig_``).
    """
    common = ("jaxdd.cli", "distill", "--noise", noise, "--trust", trust, "--no-progress")
    smoke = (
        *common, "--method", name.split("_")[0], "--dataset", "digits", "--width", "4",
        "--max-train", "300", "--ipc", "1", "--iterations", "2", "--eval-epochs", "2",
        "--seeds", "2", *SMOKE_METHOD[name.split("_")[0]],
    )  # fmt: skip
    return Part(name, (*common, "--config", config, *extra), smoke, minutes, "accuracy")


# The smallest run of each method on digits.
SMOKE_METHOD = {
    "datm": (
        "--num-experts", "2", "--expert-train-epochs", "3", "--syn-steps", "2",
        "--max-start-epoch", "2", "--current-max-start-epoch", "1",
    ),
    "dm": ("--set", "dm.batch_real=8"),
    "dance": (
        "--num-experts", "2", "--expert-train-epochs", "2", "--set", "dance.batch_real=8",
    ),
    "rcig": (
        "--set", "rcig.pool_size=2", "--set", "rcig.batch_real=32", "--set", "rcig.inner_steps=2",
        "--set", "rcig.hinv_steps=2", "--set", "rcig.pool_max_steps=2", "--set", "rcig.flip=false",
    ),
}  # fmt: skip
TAD_SMOKE = ("--set", "trust.width=4", "--set", "trust.warmup_steps=20")
ACCURACY = (
    _distill("dm_clean", "experiments/dance.py:dm-fashion_mnist-ipc10", "none", "none", 3.0),
    _distill(
        "dm_sym40_tad", "experiments/dance.py:dm-fashion_mnist-ipc10", "symmetric:0.4", "tad", 4.0
    ),
    _distill(
        "datm_sym40_tad",
        "experiments/datm.py:fashion_mnist-ipc10",
        "symmetric:0.4",
        "tad",
        6.0,
        "--set",
        "experts.num_experts=10",
    ),  # fmt: skip
    _distill("dance_clean", "experiments/dance.py:fashion_mnist-ipc10", "none", "none", 6.0),
    _distill("rcig_clean", "experiments/rcig.py:fashion_mnist-ipc10", "none", "none", 6.0),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "runs/campaign"), help="results root")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (or JAXDD_DATA_DIR)")
    p.add_argument("--budget-minutes", type=float, default=9.0, help="the whole campaign's time")
    p.add_argument("--smoke", action="store_true", help="every part at tiny size (CPU, CI)")
    p.add_argument("--parts", nargs="+", default=None, help="run only these parts (names)")
    p.add_argument("--device-note", default="", help="put in the RESULTS.md heading")
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> list[Part]:
    """The parts to run, in order; unknown names in ``--parts`` are refused."""
    parts = [*PARTS, *ACCURACY]
    if args.parts:
        names = {p.name for p in parts}
        unknown = sorted(set(args.parts) - names)
        if unknown:
            raise SystemExit(f"unknown parts {unknown}: choose from {sorted(names)}")
        parts = [p for p in parts if p.name in args.parts]
    return parts


def command(part: Part, args: argparse.Namespace, out: pathlib.Path) -> list[str]:
    """The full command line of `part`, its outputs under `out`."""
    argv = [sys.executable, "-m", *(part.smoke if args.smoke else part.command)]
    if part.kind == "bench":
        argv += ["--out", str(out / f"{part.name}.json"), "--results", str(out / "RESULTS.md")]
        if args.device_note:
            argv += ["--device-note", args.device_note]
    else:
        argv += ["--run-dir", str(out / "runs" / part.name)]
        argv += ["--experts-dir", str(out / "runs" / "experts")]
        if args.smoke and "tad" in argv:
            argv += list(TAD_SMOKE)
    return argv


def run_part(part: Part, argv: list[str], timeout: float, env: dict) -> dict:
    """Runs one part; its record (status ok / failed / timed out, seconds, output tail)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        tail = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as err:
        status = f"timed out after {timeout:.0f} s"
        tail = ((err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes)
                else (err.stdout or ""))[-3000:]  # fmt: skip
    seconds = time.perf_counter() - start
    return {"part": part.name, "kind": part.kind, "status": status, "seconds": round(seconds, 1),
            "command": argv[2:], "output_tail": tail}  # fmt: skip


def accuracy_row(out: pathlib.Path, part: Part, smoke: bool) -> dict | None:
    """The accuracy row of a finished run (mean ± std over seeds), or None."""
    path = out / "runs" / part.name / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    acc = [100 * a for a in summary["accuracies"]]
    mean = sum(acc) / len(acc)
    std = (sum((a - mean) ** 2 for a in acc) / len(acc)) ** 0.5
    ran = part.smoke if smoke else part.command
    return {
        "run": part.name,
        "method": summary["method"],
        "noise": summary["noise"],
        "accuracy": f"{mean:.2f} ± {std:.2f}",
        "seeds": len(acc),
        "train_size": summary.get("train_size"),
        "command": " ".join(ran[1:]),
    }


def write_report(out: pathlib.Path, records: list[dict], parts: list[Part], smoke: bool) -> None:
    """``campaign.md``: every part's status and time, then the finished accuracy runs."""
    lines = [f"# Campaign{' (smoke: tiny sizes, not a measurement)' if smoke else ''}", ""]
    lines += ["| part | kind | status | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['kind']} | {r['status']} | {r['seconds']} |" for r in records]
    rows = [row for p in parts if p.kind == "accuracy" and (row := accuracy_row(out, p, smoke))]
    if rows:
        lines += ["", "| run | method | noise | accuracy (%) | seeds | trained on | command |"]
        lines += ["|---|---|---|---|---|---|---|"]
        lines += [
            f"| {r['run']} | {r['method']} | {r['noise']} | {r['accuracy']} | {r['seeds']} | "
            f"{r['train_size']} | `{r['command']}` |"
            for r in rows
        ]
    (out / "campaign.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Runs the campaign; returns 0 when every part that ran finished (or ran out of time)."""
    args = parse_args(argv)
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.data_dir:
        env["JAXDD_DATA_DIR"] = str(pathlib.Path(args.data_dir).resolve())
    parts = plan(args)
    deadline = time.monotonic() + 60 * args.budget_minutes
    records = []
    with open(out / "campaign.jsonl", "a") as log:
        for part in parts:
            left = deadline - time.monotonic()
            if left < 20:
                records.append({"part": part.name, "kind": part.kind, "status": "no time left",
                                "seconds": 0, "command": []})  # fmt: skip
                continue
            argv = command(part, args, out)
            timeout = left if args.smoke else min(left, 60 * part.minutes)
            print(f"== {part.name} (≤ {timeout:.0f} s): {' '.join(argv[2:])}", flush=True)
            record = run_part(part, argv, timeout, env)
            print(f"== {part.name}: {record['status']} in {record['seconds']} s", flush=True)
            if record["status"].startswith("failed"):
                print(record["output_tail"], file=sys.stderr, flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            records.append(record)
    write_report(out, records, parts, args.smoke)
    print(f"campaign report: {out / 'campaign.md'}")
    return 1 if any(r["status"].startswith("failed") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
