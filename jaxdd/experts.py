"""Expert trajectories for trajectory matching (docs/algorithms.md §1.1).

E ConvNets, each from its own init and data order, trained at once (the
runs axis of `jaxdd.training.Runner`: vmapped and sharded on accelerators)
with plain SGD and DSA; parameters are snapshotted at init and after every
epoch. The result is ONE stacked pytree with leading axes (expert, epoch):
``[E, T + 1, ...]`` per leaf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd import hosts
from jaxdd.models.base import Model, Params
from jaxdd.ops.dsa import FAMILIES, Family
from jaxdd.ops.train import Preprocess, TrainConfig
from jaxdd.training import Runner


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    """How experts are trained (reference values of 1.1).

    Attributes:
      num_experts: E (references: 100).
      epochs: T, snapshots after every epoch (MTT 50; DATM needs
        T ≥ max_start_epoch + expert_epochs).
      lr: lr_teacher (constant unless `lr_milestones`).
      batch_size: SGD batch.
      dsa: DSA on every batch.
      dsa_families: the DSA families drawn from (DANCE's pool: color, crop).
      momentum, weight_decay: SGD's (the trajectory references: none; DANCE's
        pool: 0.9 and 5e-4).
      lr_milestones, lr_gamma: fractions of training after which the lr is
        multiplied by `lr_gamma` (the trajectory references: none, a constant
        lr; DANCE's pool: ×0.2 at 2/3 and 5/6).
      cutmix: CutMix probability per batch (DANCE's pool: 0.5).
      epoch_size: samples that make one trajectory epoch, i.e.
        ``⌊epoch_size / batch_size⌋`` SGD steps between snapshots. None: one
        pass over the set the experts train on (the references). ``given``
        (default): the size of the training set before trust diversion, so
        that experts on a diverted (smaller) set take as many SGD steps per
        epoch as experts on all the data; `jaxdd.distill` resolves it, and
        without diversion (or unresolved) it is one pass over the data, as
        the references (jaxdd's own design, docs/deviations.md).
      sam_rho, sam_alpha: GSAM's ρ and α (`jaxdd.ops.train.gsam_gradient`);
        ρ = 0 (default, MTT) is plain SGD. DATM trains its experts with
        GSAM, ρ = 0.01, α = 0.3 (experiments/datm.py).
    """

    num_experts: int = 10
    epochs: int = 50
    lr: float = 0.01
    batch_size: int = 256
    dsa: bool = True
    dsa_families: tuple[Family, ...] = FAMILIES
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_milestones: tuple[float, ...] = ()
    lr_gamma: float = 0.1
    cutmix: float = 0.0
    epoch_size: int | Literal["given"] | None = "given"
    sam_rho: float = 0.0
    sam_alpha: float = 0.0

    def train_config(self) -> TrainConfig:
        """The protocol: by default the trajectory references' (SGD or GSAM, no momentum
        or decay, constant lr)."""
        size = None if self.epoch_size == "given" else self.epoch_size
        return TrainConfig(
            lr=self.lr,
            epochs=self.epochs,
            batch_size=self.batch_size,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            lr_milestones=self.lr_milestones,
            lr_gamma=self.lr_gamma,
            cutmix=self.cutmix,
            dsa=self.dsa,
            dsa_families=self.dsa_families,
            num_seeds=self.num_experts,
            epoch_steps=None if size is None else max(1, size // self.batch_size),
            sam_rho=self.sam_rho,
            sam_alpha=self.sam_alpha,
        )


def _to_host(tree: Params) -> Params:
    return hosts.fetch(tree)


def train_experts(
    model: Model,
    x: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    config: ExpertConfig,
    *,
    key: jax.Array,
    checkpointer=None,
    preprocess: Preprocess | None = None,
    devices: Sequence[jax.Device] | None = None,
    vectorize: bool | None = None,
    progress: bool = True,
) -> Params:
    """Trains `config.num_experts` experts and returns their trajectories.

    Args:
      model: the network.
      x: ``[N, H, W, C]`` training images (the trusted space under TAD).
      targets: ``[N, C]`` float targets (one-hot of noisy, clean or
        recalibrated labels).
      config: the expert protocol.
      key: seeds every expert's init and data order.
      checkpointer: a `jaxdd.checkpoint.Checkpointer` keeping every step
        (``max_to_keep=None``); if given, the state at init and after each
        epoch is saved there (its params ARE the snapshots) and an
        interrupted run resumes from the latest saved epoch, giving the same
        trajectory (a damaged latest epoch is skipped with an
        `UnreadableStepWarning` and trained again).
      preprocess, devices, vectorize, progress: as in `jaxdd.training.Runner`.

    Returns:
      the trajectories: a params pytree with leaves ``[E, T + 1, ...]``
      (host numpy), snapshot 0 = init, snapshot t = after epoch t.
    """
    runner = Runner(
        model,
        x,
        targets,
        config.train_config(),
        preprocess=preprocess,
        devices=devices,
        vectorize=vectorize,
    )
    keys = jax.random.split(key, config.num_experts)
    state = runner.init(keys, jnp.full((config.num_experts,), config.lr, jnp.float32))
    start = 0
    if checkpointer is not None:
        start, state = _resume(checkpointer, state)
        snapshots = [_to_host(checkpointer.restore(state, step=e).params) for e in range(start)]
    else:
        snapshots = []
    snapshots.append(_to_host(state.params))
    for epoch, trained, _ in runner.run(
        state, period=1, start_epoch=start, progress=progress, label="experts"
    ):
        snapshots.append(_to_host(trained.params))
        if checkpointer is not None:
            checkpointer.save(epoch, trained, force=True)
    return jax.tree.map(lambda *s: np.stack(s, axis=1), *snapshots)


def _resume(checkpointer, state):
    """``(epoch, state)`` to start from: the newest intact checkpoint, or a saved init."""
    epoch, state = checkpointer.restore_latest(state)
    if epoch is None:
        checkpointer.save(0, state, force=True)
        return 0, state
    return epoch, state


def snapshot(trajectories: Params, expert: jax.Array, epoch: jax.Array) -> Params:
    """``trajectories[expert, epoch]`` for traced indices (no host round trip)."""
    return jax.tree.map(
        lambda leaf: jax.lax.dynamic_index_in_dim(
            jax.lax.dynamic_index_in_dim(leaf, expert, 0, keepdims=False), epoch, 0, False
        ),
        trajectories,
    )
