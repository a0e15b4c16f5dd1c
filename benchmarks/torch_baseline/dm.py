"""Times one DM or DANCE iteration in PyTorch, the reference's way: a Python loop over classes.

Run from the repository root, e.g.::

  python -m benchmarks.torch_baseline.dm --method dm --device cpu --width 128 \
      --batch-real 256 --iters 3 --warmup 1 --out dm.json

A DM iteration draws a fresh random ConvNet, then for every class a random
permutation of the class's real images cut to ``--batch-real``, one forward
pass of the real batch (no gradient) and one of the class's synthetic images,
and adds ‖mean φ(real_c) − mean φ(syn_c)‖² to the loss; one backward pass
and one SGD step (lr 1, momentum 0.5) update the images.

A DANCE iteration picks one of ``--experts`` (θ⁰, θ^T) pairs and λ ~ U(0, 1),
and for every class adds the same feature term under the middle encoder
λθ⁰ + (1 − λ)θ^T plus the mean cross-entropy of f(θ^T, syn_c) against c;
one backward pass, one SGD step (lr 0.01·IPC, momentum 0.5) and a clamp of
the pixels. The reference steps once per class and view (2C steps); here the
classes' terms are summed into one step so that both sides do the same
arithmetic as jaxdd's step (docs/deviations.md).

DSA is off (the jaxdd side of `benchmarks/bench_dm.py` is timed without it
too). Data and experts are random: only the cost is measured.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from benchmarks.torch_baseline.bench import device_name, max_rss_bytes, time_steps
from benchmarks.torch_baseline.convnet import ConvNetFlat

MOMENTUM_IMG = 0.5  # both references (docs/algorithms.md §2.1, §2.2)


def image_lr(method: str, ipc: int) -> float:
    """DM's lr 1; DANCE's 0.01·IPC."""
    return 1.0 if method == "dm" else 0.01 * ipc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=["dm", "dance"], default="dm")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--experts", type=int, default=5, help="DANCE's pool size")
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


def class_loss(net, flat, head, images, real, members, ipc: int, batch_real: int, generator):
    """Σ_c ‖mean φ(real_c) − mean φ(syn_c)‖² (+ CE of f(head, syn_c) vs c when ``head``).

    One class at a time (the reference's loop); ``flat`` is the feature
    network, ``head`` DANCE's trained expert or None for DM.
    """
    loss = images.new_zeros(())
    for c, idx in enumerate(members):
        pick = idx[torch.randperm(len(idx), generator=generator)[:batch_real]]
        syn = images[c * ipc : (c + 1) * ipc]
        with torch.no_grad():
            mean_real = net.features(real[pick.to(real.device)], flat).mean(0)
        mean_syn = net.features(syn, flat).mean(0)
        loss = loss + ((mean_real - mean_syn) ** 2).sum()
        if head is not None:
            target = torch.full((ipc,), c, device=images.device)
            loss = loss + F.cross_entropy(net(syn, head), target)
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
    lr = image_lr(args.method, args.ipc)
    optimizer = torch.optim.SGD([images], lr=lr, momentum=MOMENTUM_IMG)
    pool = [
        (net.init_flat(gen).to(device), net.init_flat(gen).to(device)) for _ in range(args.experts)
    ]

    def networks() -> tuple[torch.Tensor, torch.Tensor | None]:
        if args.method == "dm":  # a fresh random network every iteration
            return net.init_flat(gen).to(device), None
        theta0, theta_t = pool[int(torch.randint(len(pool), (), generator=gen))]
        lam = float(torch.rand((), generator=gen))
        return lam * theta0 + (1 - lam) * theta_t, theta_t

    def step() -> float:
        flat, head = networks()
        loss = class_loss(net, flat, head, images, real, members, args.ipc, args.batch_real, gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if head is not None:
            with torch.no_grad():
                images.clamp_(-1.0, 1.0)  # the box of [0, 1] pixels after normalisation
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
