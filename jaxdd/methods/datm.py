"""Trajectory matching: DATM, and MTT as a configuration of it (docs/algorithms.md §1.2–1.4).

Each iteration picks an expert e and a start epoch t, unrolls `syn_steps`
SGD steps of a student from ``θ₀ = snap[e, t]`` on the synthetic set, and
minimises ``‖θ_N − θ*‖² / ‖θ₀ − θ*‖²`` with ``θ* = snap[e, t + M]`` w.r.t.
the images, the learnable student lr and (DATM) the soft labels.

The gradient is plain reverse mode through the unrolled `scan` — exact.
With ``remat=True`` every student step is a `jax.checkpoint`, so activations
are recomputed in the backward pass and peak memory no longer grows with
the activations of all N steps (only the N parameter carries stay); this is
still the exact gradient, unlike TESLA's approximation (1.5).

Choices where the spec leaves room (also in docs/deviations.md):
  * the student lr α is optimised directly (so the references' lr_lr values
    keep their meaning) and clipped to ``min_syn_lr`` > 0 after each update;
  * the start epoch is drawn from ``[t_min, t_upper)`` like the references'
    ``np.random.randint``;
  * minibatches of the synthetic set come from fresh permutations cut into
    ``N_s // batch_syn`` full chunks (the references also emit a short last
    chunk when ``batch_syn`` does not divide ``N_s``);
  * a non-finite loss or gradient skips the update exactly like the loss
    gate does, and is counted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdd import parallel, rng
from jaxdd.errors import ConfigError
from jaxdd.experts import snapshot
from jaxdd.methods import base
from jaxdd.methods.datm_init import initialise
from jaxdd.models.base import Model, Params
from jaxdd.ops import dsa as dsa_lib
from jaxdd.ops import loops
from jaxdd.ops.losses import soft_cross_entropy


@dataclasses.dataclass(frozen=True)
class DATMConfig:
    """DATM hyper-parameters (docs/algorithms.md §1.6 names in brackets).

    Attributes:
      ipc: synthetic images per class.
      iterations: distillation iterations.
      syn_steps: N, student steps unrolled per iteration.
      expert_epochs: M, epochs between θ₀ and θ*.
      min_start_epoch: t_min.
      current_max_start_epoch: T, the initial upper end of the window.
      max_start_epoch: T⁺, the final upper end (exclusive, as the references).
      sequential_generation: grow the window from T to T⁺ (1.4).
      expansion_end_epoch: iteration at which the window reaches T⁺.
      lr_img, lr_lr, lr_y: SGD learning rates of images, student lr, labels.
      momentum_img, momentum_lr, momentum_y: their SGD momenta.
      lr_teacher: initial student lr α, the experts' lr. In a `DistillConfig`
        it is one setting with `ExpertConfig.lr`.
      min_syn_lr: α is clipped to at least this after every update.
      threshold: skip the update when the matching loss exceeds it (inf: off).
      batch_syn: synthetic images per student step (None: all).
      soft_labels: learn soft labels initialised from expert logits (DATM);
        False keeps fixed one-hot labels (MTT).
      init: ``correct`` (samples_predicted_correctly) or ``real`` (random).
      dsa: DSA on every student batch. In a `DistillConfig` it is one setting
        with the experts' and the evaluation's.
      remat: `jax.checkpoint` every student step, so activation memory no
        longer grows with N (same gradient). None: on for accelerators, where
        the rolled scan without it needs ~35 GiB at N = 80 (benchmarks/);
        off on CPU, where the unrolled loop gains no memory from it.
    """

    ipc: int = 10
    iterations: int = 5000
    syn_steps: int = 80
    expert_epochs: int = 2
    min_start_epoch: int = 0
    current_max_start_epoch: int = 10
    max_start_epoch: int = 20
    sequential_generation: bool = True
    expansion_end_epoch: int = 1000
    lr_img: float = 100.0
    lr_lr: float = 1e-5
    lr_y: float = 2.0
    momentum_img: float = 0.5
    momentum_lr: float = 0.5
    momentum_y: float = 0.9
    lr_teacher: float = 0.01
    min_syn_lr: float = 1e-5
    threshold: float = 1.0
    batch_syn: int | None = None
    soft_labels: bool = True
    init: Literal["correct", "real"] = "correct"
    dsa: bool = True
    remat: bool | None = None


def mtt_config(**overrides) -> DATMConfig:
    """MTT: hard fixed labels, random real init, fixed window, no loss gate."""
    base = DATMConfig(
        soft_labels=False,
        init="real",
        sequential_generation=False,
        threshold=math.inf,
        syn_steps=30,
        iterations=5000,
    )
    return dataclasses.replace(base, **overrides)


class DATMState(NamedTuple):
    """Everything a distillation run needs to continue (checkpointed whole).

    Attributes:
      images: ``[C·ipc, H, W, C_in]`` synthetic images (normalised space).
      labels: ``[C·ipc, C]`` label logits (soft) or one-hot (hard).
      syn_lr: scalar student learning rate α.
      opt_state: SGD-momentum states of (images, labels, syn_lr).
      iteration: scalar int32, iterations done.
      skipped: scalar int32, updates skipped by the gate or non-finite values.
      key: PRNG key of the next iteration.
    """

    images: jax.Array
    labels: jax.Array
    syn_lr: jax.Array
    opt_state: tuple
    iteration: jax.Array
    skipped: jax.Array
    key: jax.Array


def _optimizers(config: DATMConfig) -> tuple[optax.GradientTransformation, ...]:
    return (
        optax.sgd(config.lr_img, momentum=config.momentum_img),
        optax.sgd(config.lr_y, momentum=config.momentum_y),
        optax.sgd(config.lr_lr, momentum=config.momentum_lr),
    )


def init_state(
    images: jax.Array, labels: jax.Array, config: DATMConfig, *, key: jax.Array
) -> DATMState:
    """The state before iteration 0.

    Args:
      images: ``[N_s, H, W, C]`` initial synthetic images.
      labels: ``[N_s, C]`` initial label logits (soft) or one-hot (hard).
      config: the method's hyper-parameters.
      key: randomness of all iterations.
    """
    syn_lr = jnp.asarray(config.lr_teacher, jnp.float32)
    params = (images, labels, syn_lr)
    opt_state = tuple(tx.init(p) for tx, p in zip(_optimizers(config), params, strict=True))
    # Two distinct zero buffers: the step donates the state, and one buffer
    # cannot be donated twice.
    iteration, skipped = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
    return DATMState(images, labels, syn_lr, opt_state, iteration, skipped, key)


def window_upper(config: DATMConfig, iteration: jax.Array) -> jax.Array:
    """t_upper(it) of 1.4: grows from T to T⁺ by `expansion_end_epoch`, else T⁺."""
    if not config.sequential_generation:
        return jnp.asarray(config.max_start_epoch, jnp.int32)
    span = config.max_start_epoch - config.current_max_start_epoch
    grown = config.current_max_start_epoch + (span * iteration) // config.expansion_end_epoch
    return jnp.minimum(grown, config.max_start_epoch).astype(jnp.int32)


def minibatch_schedule(key: jax.Array, num_syn: int, batch: int, steps: int) -> jax.Array:
    """``[steps, batch]`` indices: consecutive chunks of fresh permutations of the set."""
    per_perm = num_syn // batch
    perms = -(-steps // per_perm)
    keys = jax.random.split(key, perms)
    order = jax.vmap(lambda k: jax.random.permutation(k, num_syn))(keys)
    return order[:, : per_perm * batch].reshape(perms * per_perm, batch)[:steps]


def _param_distance(a: Params, b: Params) -> jax.Array:
    return sum(
        jnp.sum(jnp.square(x - y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def matching_loss(
    model: Model,
    config: DATMConfig,
    images: jax.Array,
    labels: jax.Array,
    syn_lr: jax.Array,
    start: Params,
    target: Params,
    *,
    key: jax.Array,
) -> jax.Array:
    """‖θ_N − θ*‖² / ‖θ₀ − θ*‖² after N student steps on (images, labels); scalar.

    Args:
      model: the student network.
      config: supplies syn_steps, batch_syn, soft_labels, dsa, remat.
      images: ``[N_s, H, W, C]``.
      labels: ``[N_s, C]`` logits (soft) or one-hot (hard).
      syn_lr: scalar α.
      start, target: θ₀ and θ* parameter pytrees.
      key: minibatch order and augmentation.
    """
    n_syn = images.shape[0]
    batch = min(config.batch_syn or n_syn, n_syn)
    order_key, aug_key = jax.random.split(key)
    batches = minibatch_schedule(order_key, n_syn, batch, config.syn_steps)
    targets = jax.nn.softmax(labels) if config.soft_labels else labels

    def student_step(params, inputs):
        idx, step_key = inputs
        xb = jnp.take(images, idx, axis=0)
        if config.dsa:
            xb = dsa_lib.dsa(xb, key=step_key)
        yb = jnp.take(targets, idx, axis=0)
        grads = jax.grad(lambda p: soft_cross_entropy(model.apply(p, xb), yb))(params)
        return jax.tree.map(lambda p, g: p - syn_lr * g, params, grads), None

    if config.remat or (config.remat is None and not loops.on_cpu()):
        student_step = jax.checkpoint(student_step)
    step_keys = jax.random.split(aug_key, config.syn_steps)
    final, _ = loops.scan(student_step, start, (batches, step_keys))
    return _param_distance(final, target) / _param_distance(start, target)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def distill_step(
    model: Model, config: DATMConfig, state: DATMState, trajectories: Params
) -> tuple[DATMState, dict]:
    """One DATM iteration (1.2): sample (e, t), match, gated SGD update.

    Args:
      model: the student network.
      config: the method's hyper-parameters.
      state: the current `DATMState`.
      trajectories: expert snapshots, leaves ``[E, T + 1, ...]`` on device.

    Returns:
      the next state and metrics (loss, syn_lr, start_epoch, expert, accepted).
    """
    key, e_key, t_key, loss_key = jax.random.split(state.key, 4)
    num_experts = jax.tree.leaves(trajectories)[0].shape[0]
    expert = jax.random.randint(e_key, (), 0, num_experts)
    upper = window_upper(config, state.iteration)
    start_epoch = jax.random.randint(t_key, (), config.min_start_epoch, upper)
    start = snapshot(trajectories, expert, start_epoch)
    target = snapshot(trajectories, expert, start_epoch + config.expert_epochs)

    params = (state.images, state.labels, state.syn_lr)
    loss, grads = jax.value_and_grad(
        lambda i, y, lr: matching_loss(model, config, i, y, lr, start, target, key=loss_key),
        argnums=(0, 1, 2),
    )(*params)
    if not config.soft_labels:
        grads = (grads[0], jnp.zeros_like(grads[1]), grads[2])
    accept = jnp.isfinite(loss) & _all_finite(grads) & (loss <= config.threshold)

    new_params, new_opt = [], []
    for tx, p, g, s in zip(_optimizers(config), params, grads, state.opt_state, strict=True):
        g = jnp.where(accept, g, jnp.zeros_like(g))  # keep NaN out of the momentum
        updates, s2 = tx.update(g, s, p)
        new_params.append(jnp.where(accept, optax.apply_updates(p, updates), p))
        new_opt.append(jax.tree.map(lambda a, b: jnp.where(accept, a, b), s2, s))
    images, labels, syn_lr = new_params
    next_state = DATMState(
        images,
        labels,
        jnp.maximum(syn_lr, config.min_syn_lr),
        tuple(new_opt),
        state.iteration + 1,
        state.skipped + (~accept).astype(jnp.int32),
        key,
    )
    metrics = {
        "loss": loss,
        "syn_lr": syn_lr,
        "start_epoch": start_epoch,
        "expert": expert,
        "accepted": accept,
    }
    return next_state, metrics


def shard_state(state: DATMState, mesh: jax.sharding.Mesh) -> DATMState:
    """Splits the synthetic images/labels (and their momenta) over the mesh's runs axis.

    Everything else is replicated; `jax.jit` then partitions the student's
    minibatch work across devices (GSPMD). Needs ``N_s`` divisible by the
    mesh size (`jaxdd.parallel.runs_mesh(N_s)` picks such a mesh).
    """
    return parallel.split_leading(state, state.images.shape[0], mesh)


def init_from_all(config) -> bool:
    """Whether a run's image init draws from every given label (`TADConfig.init_pool`).

    Only an init that keeps the images the experts predict as their label
    (``correct``) may; an unfiltered one draws from the trusted space.
    """
    trust = config.trust
    return trust is not None and trust.init_pool == "all" and config.datm.init == "correct"


class TrajectoryMatching:
    """DATM (or MTT, its configuration) behind the driver's `base.Method` interface."""

    field = "datm"
    uses_experts = True
    curves = {"loss": "matching loss", "syn_lr": "student lr"}
    shown = ("loss", "syn_lr")

    def __init__(self, name: str) -> None:
        self.name = name

    def defaults(self) -> dict:
        """MTT: `mtt_config`; DATM: `DATMConfig`'s defaults."""
        return {"datm": mtt_config()} if self.name == "mtt" else {}

    networks = staticmethod(base.same_network)

    def check(self, config, label) -> None:
        """The window fits in the experts' snapshots and is not empty."""
        d = config.datm
        needed = d.max_start_epoch - 1 + d.expert_epochs
        if needed > config.experts.epochs:
            raise ConfigError(
                f"the window needs expert snapshots up to epoch {needed} but experts train "
                f"{config.experts.epochs} epochs: raise {label('experts.epochs')} or lower "
                f"{label('datm.max_start_epoch')}"
            )
        upper = min(d.current_max_start_epoch, d.max_start_epoch)
        if d.sequential_generation and d.current_max_start_epoch > d.max_start_epoch:
            raise ConfigError(
                f"{label('datm.current_max_start_epoch')}={d.current_max_start_epoch} exceeds "
                f"{label('datm.max_start_epoch')}={d.max_start_epoch}: the window grows up to it"
            )
        if not d.min_start_epoch < (upper if d.sequential_generation else d.max_start_epoch):
            also = f" and {label('datm.current_max_start_epoch')}"
            raise ConfigError(
                f"{label('datm.min_start_epoch')}={d.min_start_epoch} leaves an empty window: "
                f"it must be below {label('datm.max_start_epoch')}"
                + (also if d.sequential_generation else "")
            )

    def unused(self, config) -> dict[str, str]:
        d = config.datm
        unused = {"eval.lr": "distilled sets are evaluated with the learned student lr"}
        if not d.soft_labels:
            why = "the labels stay one-hot (datm.soft_labels=false)"
            unused |= {"datm.lr_y": why, "datm.momentum_y": why}
        if not d.sequential_generation:
            why = "the window is fixed (datm.sequential_generation=false)"
            unused |= {"datm.current_max_start_epoch": why, "datm.expansion_end_epoch": why}
        if d.init != "correct":
            unused["trust.init_pool"] = "only datm.init=correct draws from every given label"
        return unused

    def setup(self, config, model: Model, data, services: base.Services) -> base.Setup:
        """Expert trajectories (the step's resources) and the image/label init."""
        d = config.datm
        traj = services.experts(config)
        pool_x, pool_labels, pool_clean = data.init_candidates(every_sample=init_from_all(config))
        init = initialise(
            model,
            traj,
            pool_x,
            pool_labels,
            data.ds.num_classes,
            d.ipc,
            how=d.init,
            soft_labels=d.soft_labels,
            seed=rng.numpy_rng(services.seed, "init"),
        )
        state = init_state(
            jnp.asarray(pool_x[init.indices]),
            jnp.asarray(init.labels),
            d,
            key=rng.stream(services.seed, "distill"),
        )
        chosen = init.indices
        noise = float(np.mean(pool_labels[chosen] != pool_clean[chosen]))
        return base.Setup(state, traj, {"filled": init.filled, "label_noise": noise})

    def step(self, model, config, state, resources):
        return distill_step(model, config.datm, state, resources)

    def shard(self, state, resources, mesh):
        return shard_state(state, mesh), parallel.replicate(resources, mesh)

    def distilled(self, config, state):
        targets = jax.nn.softmax(state.labels) if config.datm.soft_labels else state.labels
        classes = np.arange(state.images.shape[0]) // config.datm.ipc
        return base.Distilled(state.images, state.labels, targets, float(state.syn_lr), classes)

    def summary(self, state) -> dict:
        return {"syn_lr": float(state.syn_lr)}


METHODS = {"datm": TrajectoryMatching("datm"), "mtt": TrajectoryMatching("mtt")}
