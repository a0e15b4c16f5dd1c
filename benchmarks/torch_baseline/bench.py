"""Times one MTT/DATM distillation iteration in PyTorch (the reference style).

Run from the repository root, e.g.::

  python -m benchmarks.torch_baseline.bench --device cpu --ipc 10 --num-classes 10 \
      --image-size 28 --channels 1 --width 128 --syn-steps 20 --batch-syn 100 \
      --iters 5 --warmup 2 --out results.json

An iteration is the unroll, the backward pass and the SGD updates of the
images, the lr and (with ``--soft-labels``) the labels. Data and expert
snapshots are random: only the cost is measured, not the result.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.torch_baseline.convnet import ConvNetFlat
from benchmarks.torch_baseline.mtt import mtt_iteration

LR_TEACHER = 0.01  # initial learnable lr, as the references (docs/algorithms.md §1.6)
LR_IMG, LR_LR, LR_Y = 100.0, 1e-5, 2.0  # C10/10 row of docs/algorithms.md §1.6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--syn-steps", type=int, default=20)
    p.add_argument("--batch-syn", type=int, default=100)
    p.add_argument("--soft-labels", action="store_true")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON output path (also printed)")
    return p.parse_args(argv)


def make_step(args: argparse.Namespace, device: torch.device) -> Callable[[], float]:
    """Builds random S and snapshots; returns a closure running one full iteration."""
    gen = torch.Generator().manual_seed(args.seed)
    net = ConvNetFlat(args.num_classes, args.channels, args.image_size, args.width, args.depth)
    start = net.init_flat(gen)
    target = start + 0.01 * torch.randn(net.num_params, generator=gen)
    n = args.ipc * args.num_classes
    images = torch.randn(n, args.channels, args.image_size, args.image_size, generator=gen)
    if args.soft_labels:
        labels = torch.randn(n, args.num_classes, generator=gen)
    else:
        labels = torch.arange(args.num_classes).repeat_interleave(args.ipc)
    start, target, images, labels = (t.to(device) for t in (start, target, images, labels))
    images.requires_grad_(True)
    labels.requires_grad_(args.soft_labels)
    syn_lr = torch.tensor(LR_TEACHER, device=device, requires_grad=True)
    optimizers = [
        torch.optim.SGD([images], lr=LR_IMG, momentum=0.5),
        torch.optim.SGD([syn_lr], lr=LR_LR, momentum=0.5),
    ]
    if args.soft_labels:
        optimizers.append(torch.optim.SGD([labels], lr=LR_Y, momentum=0.9))

    learnables = [images, syn_lr] + ([labels] if args.soft_labels else [])

    def step() -> float:
        loss, grads = mtt_iteration(
            net, images, labels, syn_lr, start, target,
            syn_steps=args.syn_steps, batch_syn=args.batch_syn,
            soft_labels=args.soft_labels, generator=gen,
        )  # fmt: skip
        for param, grad in zip(learnables, grads, strict=False):
            param.grad = grad
        for opt in optimizers:
            opt.step()
        return loss.item()

    return step


def time_steps(step: Callable[[], float], device: torch.device, warmup: int, iters: int):
    """Runs ``warmup`` then ``iters`` iterations; returns the timed seconds and last loss."""
    seconds, loss = [], float("nan")
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        loss = step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            seconds.append(time.perf_counter() - t0)
    return seconds, loss


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def max_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(args: argparse.Namespace) -> dict:
    """Times the iteration and returns the result record."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    step = make_step(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = max_rss_bytes()
    seconds, loss = time_steps(step, device, args.warmup, args.iters)
    if device.type == "cuda":
        peak, peak_kind = torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
    else:
        peak, peak_kind = max_rss_bytes() - rss_before, "max_rss_delta"
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "threads")}
    return {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        **settings,
        "seconds_per_iteration": {
            "mean": statistics.fmean(seconds),
            "std": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
            "all": seconds,
        },
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "final_loss": loss,
    }


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: run, print the JSON and optionally write it."""
    args = parse_args(argv)
    result = json.dumps(run(args), indent=2)
    print(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(result + "\n")


if __name__ == "__main__":
    main()
