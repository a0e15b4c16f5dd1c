"""Times one DM iteration in PyTorch, the reference's way: a Python loop over classes.

Run from the repository root, e.g.::

  python -m benchmarks.torch_baseline.dm --device cpu --width 128 --batch-real 256 \
      --iters 3 --warmup 1 --out dm.json

An iteration draws a fresh random ConvNet, then for every class a random
permutation of the class's real images cut to ``--batch-real``, one forward
pass of the real batch (no gradient) and one of the class's synthetic images,
and adds ‖mean φ(real_c) − mean φ(syn_c)‖² to the loss; one backward pass
and one SGD step (lr 1, momentum 0.5) update the images. DSA is off (the
jaxdd side of `benchmarks/bench_dm.py` is timed without it too). Data are
random: only the cost is measured.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from benchmarks.torch_baseline.bench import device_name, max_rss_bytes, time_steps
from benchmarks.torch_baseline.convnet import ConvNetFlat

LR_IMG, MOMENTUM_IMG = 1.0, 0.5  # DM's reference settings (docs/algorithms.md §2.1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=1000, help="real images per class")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON output path (also printed)")
    return p.parse_args(argv)


def dm_loss(net, flat, images, real, members, ipc: int, batch_real: int, generator):
    """Σ_c ‖mean φ(real_c) − mean φ(syn_c)‖², one class at a time (the reference's loop)."""
    loss = images.new_zeros(())
    for c, idx in enumerate(members):
        pick = idx[torch.randperm(len(idx), generator=generator)[:batch_real]]
        with torch.no_grad():
            mean_real = net.features(real[pick.to(real.device)], flat).mean(0)
        mean_syn = net.features(images[c * ipc : (c + 1) * ipc], flat).mean(0)
        loss = loss + ((mean_real - mean_syn) ** 2).sum()
    return loss


def make_step(args: argparse.Namespace, device: torch.device):
    """Random real data and synthetic images; returns a closure running one iteration."""
    gen = torch.Generator().manual_seed(args.seed)
    net = ConvNetFlat(args.num_classes, args.channels, args.image_size, args.width, args.depth)
    shape = (args.channels, args.image_size, args.image_size)
    real = torch.randn(args.num_classes * args.per_class, *shape, generator=gen).to(device)
    labels = torch.arange(args.num_classes).repeat_interleave(args.per_class)
    members = [torch.nonzero(labels == c).flatten() for c in range(args.num_classes)]
    images = torch.randn(args.num_classes * args.ipc, *shape, generator=gen).to(device)
    images.requires_grad_(True)
    optimizer = torch.optim.SGD([images], lr=LR_IMG, momentum=MOMENTUM_IMG)

    def step() -> float:
        flat = net.init_flat(gen).to(device)  # a fresh random network every iteration
        loss = dm_loss(net, flat, images, real, members, args.ipc, args.batch_real, gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def run(args: argparse.Namespace) -> dict:
    """Times the iteration and returns the result record."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    step = make_step(args, device)
    rss_before = max_rss_bytes()
    seconds, loss = time_steps(step, device, args.warmup, args.iters)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "threads")}
    mean = statistics.fmean(seconds)
    std = statistics.stdev(seconds) if len(seconds) > 1 else 0.0
    return {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        **settings,
        "seconds_per_iteration": {"mean": mean, "std": std, "all": seconds},
        "peak_memory_bytes": max_rss_bytes() - rss_before,
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
