"""Correctness check of the PyTorch baseline (run, not collected by pytest).

  python -m benchmarks.torch_baseline.selfcheck

1. ``ConvNetFlat.forward`` equals an ``nn.Sequential`` of ``nn.Conv2d`` /
   ``nn.GroupNorm`` / ``nn.Linear`` loaded with the same parameters.
2. In float64 on a tiny config, the gradients of the matching loss w.r.t. the
   lr, the images and the soft labels match central finite differences.
Exits non-zero on failure.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from benchmarks.torch_baseline.convnet import NORM_EPS, ConvNetFlat
from benchmarks.torch_baseline.mtt import mtt_iteration

C, C_IN, SIZE, WIDTH, DEPTH, IPC, STEPS, BATCH = 3, 2, 8, 8, 3, 2, 3, 4
FD_EPS, RTOL = 1e-6, 1e-5


def sequential_from_flat(net: ConvNetFlat, flat: torch.Tensor, num_classes: int) -> nn.Sequential:
    """The same ConvNet built from ``torch.nn`` modules, loaded from ``flat``."""
    layers, channels = [], C_IN
    for _ in range(DEPTH):
        layers += [
            nn.Conv2d(channels, WIDTH, 3, padding=1),
            nn.GroupNorm(WIDTH, WIDTH, eps=NORM_EPS),
            nn.ReLU(),
            nn.AvgPool2d(2, 2),
        ]
        channels = WIDTH
    layers += [nn.Flatten(), nn.LazyLinear(num_classes)]
    seq = nn.Sequential(*layers).to(flat.dtype)
    seq(torch.zeros(1, C_IN, SIZE, SIZE, dtype=flat.dtype))  # materialise the lazy head
    with torch.no_grad():
        params = list(seq.parameters())
        for p, value in zip(params, net.unflatten(flat), strict=True):
            p.copy_(value)
    return seq


def check_forward(gen: torch.Generator) -> float:
    """Max abs difference between the flat and the module forward."""
    net = ConvNetFlat(C, C_IN, SIZE, WIDTH, DEPTH)
    flat = net.init_flat(gen, torch.float64)
    flat[net.num_params // 3 :] += 0.1 * torch.randn(
        net.num_params - net.num_params // 3, generator=gen, dtype=torch.float64
    )  # move the norm affine off ones/zeros too
    x = torch.randn(5, C_IN, SIZE, SIZE, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        return (net(x, flat) - sequential_from_flat(net, flat, C)(x)).abs().max().item()


def tiny_problem(gen: torch.Generator, soft: bool) -> dict:
    """Random float64 inputs of a tiny matching problem."""
    net = ConvNetFlat(C, C_IN, SIZE, WIDTH, DEPTH)
    start = net.init_flat(gen, torch.float64)
    n = C * IPC
    labels = (
        torch.randn(n, C, generator=gen, dtype=torch.float64)
        if soft
        else torch.arange(C).repeat_interleave(IPC)
    )
    return {
        "net": net,
        "image_syn": torch.randn(n, C_IN, SIZE, SIZE, generator=gen, dtype=torch.float64),
        "label_syn": labels,
        "syn_lr": torch.tensor(0.05, dtype=torch.float64),
        "start_flat": start,
        "target_flat": start + 0.05 * torch.randn(start.shape, generator=gen, dtype=torch.float64),
    }


def loss_and_grads(problem: dict, soft: bool):
    """Runs one iteration with a fixed minibatch seed so every call sees the same batches."""
    leaves = {k: v.detach().clone() for k, v in problem.items() if k != "net"}
    for k in ("image_syn", "syn_lr") + (("label_syn",) if soft else ()):
        leaves[k].requires_grad_(True)
    return mtt_iteration(
        problem["net"], **leaves, syn_steps=STEPS, batch_syn=BATCH, soft_labels=soft,
        generator=torch.Generator().manual_seed(7),
    )  # fmt: skip


def fd_directional(problem: dict, key: str, direction: torch.Tensor, soft: bool) -> float:
    """Central finite difference of the loss along ``direction`` in input ``key``."""
    plus, minus = dict(problem), dict(problem)
    plus[key] = problem[key] + FD_EPS * direction
    minus[key] = problem[key] - FD_EPS * direction
    diff = loss_and_grads(plus, soft)[0] - loss_and_grads(minus, soft)[0]
    return (diff / (2 * FD_EPS)).item()


def check_gradients(gen: torch.Generator, soft: bool) -> list[tuple[str, float, float]]:
    """(name, autograd, finite difference) for each differentiated input."""
    problem = tiny_problem(gen, soft)
    _, grads = loss_and_grads(problem, soft)
    named = [("syn_lr", grads.lr), ("image_syn", grads.image)]
    if soft:
        named.append(("label_syn", grads.label))
    rows = []
    for key, grad in named:
        direction = torch.randn(grad.shape, generator=gen, dtype=torch.float64)
        rows.append(
            (key, (grad * direction).sum().item(), fd_directional(problem, key, direction, soft))
        )
    return rows


def main() -> int:
    """Runs all checks; returns the process exit status."""
    gen = torch.Generator().manual_seed(0)
    ok = True
    forward_err = check_forward(gen)
    ok &= forward_err < 1e-12
    print(f"forward vs nn.Sequential: max abs diff {forward_err:.2e}")
    for soft in (False, True):
        for key, auto, fd in check_gradients(gen, soft):
            rel = abs(auto - fd) / max(abs(fd), 1e-12)
            ok &= rel < RTOL
            label = f"soft={soft!s:5} d loss/d {key:9}"
            print(f"{label}: autograd {auto:+.10e} fd {fd:+.10e} rel {rel:.1e}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
