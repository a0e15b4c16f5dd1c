"""One MTT/DATM trajectory-matching iteration, as the reference code does it.

docs/algorithms.md §1.2 and 1.3: unroll ``syn_steps`` SGD steps of a student from
the expert snapshot ``theta_0`` on minibatches of the synthetic set, keeping
the graph (``create_graph=True``), then backpropagate the normalised
parameter distance ``||theta_N - theta*||^2 / ||theta_0 - theta*||^2`` to the
images, the learnable lr and (DATM) the soft labels.

DSA is off (no augmentation) so that this baseline and jaxdd do identical
work when timed against each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from benchmarks.torch_baseline.convnet import ConvNetFlat


class MTTGrads(NamedTuple):
    """Gradients of the matching loss; ``label`` is None with hard labels."""

    image: torch.Tensor
    lr: torch.Tensor
    label: torch.Tensor | None


def minibatch_indices(n: int, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Yields index chunks forever: a fresh permutation split into ``batch``-sized
    chunks, popped from the end, refilled when empty (the references' order)."""
    while True:
        chunks = list(torch.split(torch.randperm(n, generator=generator), batch))
        while chunks:
            yield chunks.pop()


def student_ce(logits: torch.Tensor, labels: torch.Tensor, soft_labels: bool) -> torch.Tensor:
    """Mean CE; soft labels are logits ``[B, C]`` whose softmax is the target."""
    if soft_labels:
        return F.cross_entropy(logits, F.softmax(labels, dim=-1))
    return F.cross_entropy(logits, labels)


def unroll_student(
    net: ConvNetFlat,
    image_syn: torch.Tensor,
    label_syn: torch.Tensor,
    syn_lr: torch.Tensor,
    start_flat: torch.Tensor,
    *,
    syn_steps: int,
    batch_syn: int,
    soft_labels: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """Returns ``theta_N [P]`` with the full graph back to the synthetic inputs."""
    student_params = [start_flat.detach().clone().requires_grad_(True)]
    batches = minibatch_indices(image_syn.shape[0], batch_syn, generator)
    for _ in range(syn_steps):
        idx = next(batches).to(image_syn.device)
        logits = net(image_syn[idx], student_params[-1])
        ce = student_ce(logits, label_syn[idx], soft_labels)
        grad = torch.autograd.grad(ce, student_params[-1], create_graph=True)[0]
        student_params.append(student_params[-1] - syn_lr * grad)
    return student_params[-1]


def mtt_iteration(
    net: ConvNetFlat,
    image_syn: torch.Tensor,
    label_syn: torch.Tensor,
    syn_lr: torch.Tensor,
    start_flat: torch.Tensor,
    target_flat: torch.Tensor,
    *,
    syn_steps: int,
    batch_syn: int,
    soft_labels: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, MTTGrads]:
    """Matching loss and its gradients for one expert segment.

    Args:
      net: the functional ConvNet.
      image_syn: ``[N, C_in, H, W]`` leaf with ``requires_grad``.
      label_syn: soft label logits ``[N, C]`` (leaf, ``requires_grad``) when
        ``soft_labels``, else integer labels ``[N]``.
      syn_lr: scalar learnable student lr (leaf, ``requires_grad``).
      start_flat: expert snapshot ``theta_0 [P]``.
      target_flat: expert snapshot ``theta* [P]`` M epochs later.
      syn_steps: N, the number of unrolled student steps.
      batch_syn: synthetic minibatch size per student step.
      soft_labels: DATM's learnable soft labels instead of hard labels.
      generator: CPU generator for the minibatch permutations.

    Returns:
      ``(loss, grads)``: the detached scalar loss and ``MTTGrads``.
    """
    theta_n = unroll_student(
        net,
        image_syn,
        label_syn,
        syn_lr,
        start_flat,
        syn_steps=syn_steps,
        batch_syn=batch_syn,
        soft_labels=soft_labels,
        generator=generator,
    )
    # The references also divide both sums by P; that cancels in the ratio.
    param_loss = F.mse_loss(theta_n, target_flat, reduction="sum")
    param_dist = F.mse_loss(start_flat, target_flat, reduction="sum")
    loss = param_loss / param_dist
    inputs = [image_syn, syn_lr] + ([label_syn] if soft_labels else [])
    grads = torch.autograd.grad(loss, inputs)
    label_grad = grads[2] if soft_labels else None
    return loss.detach(), MTTGrads(grads[0], grads[1], label_grad)
