"""Pure kernels that train a network on a fixed (image, target) set.

One set of kernels serves every "train a fresh net" need: evaluation of a
distilled set (docs/algorithms.md §0.5), the ERM / random-subset baselines (0.6)
and, later, experts and referees. The learning rate is a traced scalar in
the state, so a driver can `vmap` over seeds *and* learning rates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdd.models.base import Model, Params, Stats
from jaxdd.ops import cutmix as cutmix_lib
from jaxdd.ops import dsa as dsa_lib
from jaxdd.ops.losses import LOSSES

Preprocess = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a fresh network is trained (defaults: the SGD protocol of 0.5).

    Attributes:
      optimizer: ``sgd`` (momentum, coupled weight decay as in PyTorch) or
        ``adam`` (linear warmup then cosine decay to 0, RCIG's protocol).
      lr: base learning rate (a driver may override it per run).
      epochs: passes over the training set.
      batch_size: minibatch size; a set smaller than it is one full batch.
      momentum: SGD momentum.
      weight_decay: L2 coefficient added to the gradient.
      lr_milestones: fractions of training after which the lr is multiplied
        by `lr_gamma` (SGD only).
      lr_gamma: the step-decay factor.
      warmup_steps: linear warmup steps (Adam only).
      loss: ``ce`` (soft cross-entropy on target probabilities) or ``mse``.
      dsa: apply DSA (0.2) to every training batch.
      dsa_families: the DSA families each batch's one family is drawn from
        (the references' strategy string ``color_crop_cutout_flip_scale_rotate``).
      cutmix: probability of CutMix on a batch, after DSA (`jaxdd.ops.cutmix`;
        DANCE's protocol: 0.5); 0 disables it.
      cutmix_beta: CutMix's Beta(β, β) mixing distribution.
      consistency: weight of a two-view consistency term, the squared
        distance between the softmax outputs on two DSA views of the batch
        (TAD referees, docs/algorithms.md §4.1); 0 disables it.
      num_seeds: networks trained at once (vmapped), each from its own init
        and data order.
      eval_batch: test-set batch size when measuring accuracy.
      epoch_steps: SGD steps that make one "epoch" (the unit of `epochs`,
        milestones and snapshots); None: one pass over the training set.
        Data order is unaffected: every pass is a fresh permutation, whatever
        the epoch length.
      sam_rho: GSAM's perturbation radius ρ (`gsam_gradient`); 0 (default)
        trains with the plain gradient. DATM's experts use 0.01 (from FTD).
      sam_alpha: GSAM's surrogate-gap weight α (0 with ``sam_rho > 0`` is
        SAM); DATM's experts use 0.3.
      drop_last: drop the last partial batch of every pass (``⌊N / batch⌋``
        steps per pass) instead of keeping it (``⌈N / batch⌉`` steps, the
        last one smaller), as PyTorch's DataLoader does by default and every
        reference therefore does: at N = 500, batch 128 and 1000 epochs that
        is 4000 SGD steps instead of 3000 (1000 at batch 256).
    """

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    epochs: int = 1000
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.5,)
    lr_gamma: float = 0.1
    warmup_steps: int = 500
    loss: Literal["ce", "mse"] = "ce"
    dsa: bool = True
    dsa_families: tuple[dsa_lib.Family, ...] = dsa_lib.FAMILIES
    cutmix: float = 0.0
    cutmix_beta: float = 1.0
    consistency: float = 0.0
    num_seeds: int = 5
    eval_batch: int = 500
    epoch_steps: int | None = None
    drop_last: bool = False
    sam_rho: float = 0.0
    sam_alpha: float = 0.0


# fold_in index of a step's CutMix draw (DSA views take 0 and 1).
_CUTMIX_STREAM = 2


class TrainState(NamedTuple):
    """State of ONE network in training; drivers stack it over seeds/lrs.

    `stats` holds the network's running statistics (batch norm), ``{}`` for
    networks without: updated by each training step, read by evaluation.
    """

    params: Params
    opt_state: optax.OptState
    lr: jax.Array  # scalar base learning rate
    key: jax.Array  # data order + augmentation randomness
    stats: Stats = {}


def batch_geometry(
    num_examples: int, batch_size: int, *, drop_last: bool = True
) -> tuple[int, int]:
    """``(batch, steps_per_pass)``: the last partial batch dropped, or kept as a step."""
    batch = min(batch_size, num_examples)
    steps = num_examples // batch if drop_last else -(-num_examples // batch)
    return batch, max(1, steps)


def steps_per_epoch(config: TrainConfig, num_examples: int) -> int:
    """SGD steps in one epoch: `config.epoch_steps`, or one pass over the data."""
    if config.epoch_steps is not None:
        if config.epoch_steps < 1:
            raise ValueError(f"epoch_steps must be >= 1, got {config.epoch_steps}")
        return config.epoch_steps
    return batch_geometry(num_examples, config.batch_size, drop_last=config.drop_last)[1]


def _gradient_transform(config: TrainConfig) -> optax.GradientTransformation:
    """The optimizer without its learning rate (applied by `lr_factor`)."""
    decay = optax.add_decayed_weights(config.weight_decay)
    if config.optimizer == "sgd":
        return optax.chain(decay, optax.trace(decay=config.momentum))
    if config.optimizer == "adam":
        return optax.chain(decay, optax.scale_by_adam())
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def lr_factor(config: TrainConfig, step: jax.Array, total_steps: int) -> jax.Array:
    """Multiplier of the base lr at `step` (step decay, or warmup + cosine)."""
    step = jnp.asarray(step, jnp.float32)
    if config.optimizer == "sgd":
        passed = [step >= round(m * total_steps) for m in config.lr_milestones]
        return config.lr_gamma ** jnp.sum(jnp.stack(passed)) if passed else jnp.float32(1)
    warm = max(1, min(config.warmup_steps, total_steps - 1))
    progress = jnp.clip((step - warm) / max(1, total_steps - warm), 0.0, 1.0)
    return jnp.where(step < warm, (step + 1) / warm, 0.5 * (1 + jnp.cos(jnp.pi * progress)))


def init_state(model: Model, config: TrainConfig, lr: jax.Array, *, key: jax.Array) -> TrainState:
    """A freshly initialised network and optimizer state."""
    init_key, run_key = jax.random.split(key)
    params = model.init(init_key)
    opt_state = _gradient_transform(config).init(params)
    return TrainState(params, opt_state, jnp.asarray(lr, jnp.float32), run_key, model.init_stats())


def batch_indices(
    key: jax.Array, step: jax.Array, num_examples: int, batch_size: int, *, drop_last: bool = True
) -> jax.Array:
    """Indices of minibatch `step`: a fresh permutation per pass. ``→ [batch] int32``.

    With ``drop_last=False`` the last step of a pass is the remainder of the
    permutation, padded to the static batch size with ``-1`` (`batch_mask`).
    """
    batch, per_pass = batch_geometry(num_examples, batch_size, drop_last=drop_last)
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_pass), num_examples)
    pad = max(0, per_pass * batch - num_examples)  # 0 when the remainder is dropped
    padded = jnp.concatenate([perm, jnp.full((pad,), -1, perm.dtype)])
    return jax.lax.dynamic_slice_in_dim(padded, (step % per_pass) * batch, batch)


def batch_mask(indices: jax.Array) -> jax.Array:
    """``[batch] float32``: 1 for a sample of `batch_indices`, 0 for its padding."""
    return (indices >= 0).astype(jnp.float32)


def gsam_gradient(
    loss_and_grad: Callable[[Params], tuple[jax.Array, Params]],
    params: Params,
    *,
    rho: float,
    alpha: float,
) -> tuple[jax.Array, Params]:
    """GSAM's update direction (Zhuang et al., 2022), as FTD/DATM train experts.

    With ``g = ∇L(θ)`` and ``g_a = ∇L(θ + ρ g / ‖g‖)`` (the same batch and
    augmentation), the part of ``g`` orthogonal to ``g_a`` is
    ``g⊥ = g − (⟨g, g_a⟩ / ‖g_a‖²) g_a`` and the direction is
    ``g_a − α g⊥``: descend the perturbed (sharpness-aware) loss while
    pushing the surrogate gap down. ``α = 0`` is SAM. The small constants
    guarding the norms (1e-12) are the reference implementation's.

    Args:
      loss_and_grad: ``params → (value, grads)`` on one fixed batch; `value`
        is the loss, or ``(loss, aux)`` (e.g. updated batch-norm statistics).
      params: θ.
      rho: ρ, the perturbation radius (constant: the references' ρ_min = ρ_max).
      alpha: α.

    Returns:
      ``(value(θ), direction)``: the value at the unperturbed θ and a pytree like θ.
    """
    eps = 1e-12
    loss, grad = loss_and_grad(params)
    grad_norm = optax.global_norm(grad)
    step = rho / (grad_norm + eps)
    _, adv = loss_and_grad(jax.tree.map(lambda p, g: p + step * g, params, grad))
    adv_norm = optax.global_norm(adv)
    cosine = optax.tree_utils.tree_vdot(grad, adv) / (grad_norm * adv_norm + eps)
    along = cosine * grad_norm / (adv_norm + eps)
    return loss, jax.tree.map(lambda g, a: a - alpha * (g - along * a), grad, adv)


def make_train_step(
    model: Model, config: TrainConfig, total_steps: int, preprocess: Preprocess | None = None
) -> Callable:
    """Builds ``step(state, step_index, x, targets) → (state, loss)``.

    `x` is ``[N, H, W, C]`` (float, or anything `preprocess` maps to float),
    `targets` ``[N, num_classes]`` float. Padding rows of a partial last
    batch (`TrainConfig.drop_last` False) count in no loss term. The minibatch is gathered by index
    inside the kernel, so the whole set stays on the device. An all-zero
    target row marks an unlabelled example: it adds nothing to the
    supervised loss (which averages over labelled rows) but takes part in the
    consistency term when ``config.consistency > 0`` (TAD referees, 4.1).

    ``step(..., family_key)`` (optional, a key shared by every run trained
    together) chooses each step's DSA family from ``fold_in(family_key, i)``
    instead of the run's own key: vmapped runs then share the family and
    only one family's code runs per step (`jaxdd.ops.dsa.dsa`).
    """
    tx = _gradient_transform(config)
    loss_fn = LOSSES[config.loss]
    augmentation = dsa_lib.DSAConfig(families=tuple(config.dsa_families))

    def augment(xb, key, family_key, view):
        if family_key is not None:
            family_key = jax.random.fold_in(family_key, view)
        return dsa_lib.dsa(
            xb, key=jax.random.fold_in(key, view), config=augmentation, family_key=family_key
        )

    def batch_loss(params, stats, xb, tb, mask, key, family_key):
        view = augment(xb, key, family_key, 0) if config.dsa else xb
        if config.cutmix:
            mix_key = jax.random.fold_in(key, _CUTMIX_STREAM)
            view, tb = cutmix_lib.cutmix(
                view, tb, key=mix_key, prob=config.cutmix, beta=config.cutmix_beta
            )
        logits, new_stats = model.apply_train(params, stats, view, mask)
        loss = loss_fn(logits, tb, mask)
        if config.consistency:
            other, _ = model.apply_train(params, stats, augment(xb, key, family_key, 1), mask)
            gap = jnp.sum(jnp.square(jax.nn.softmax(logits) - jax.nn.softmax(other)), axis=-1)
            loss = loss + config.consistency * jnp.sum(gap * mask) / jnp.sum(mask)
        return loss, new_stats

    def step(state: TrainState, i: jax.Array, x: jax.Array, targets: jax.Array, family_key=None):
        order_key, aug_key = jax.random.split(state.key)
        idx = batch_indices(order_key, i, x.shape[0], config.batch_size, drop_last=config.drop_last)
        mask = batch_mask(idx)
        idx = jnp.maximum(idx, 0)
        xb = jnp.take(x, idx, axis=0)
        xb = preprocess(xb) if preprocess is not None else xb
        tb = jnp.take(targets, idx, axis=0)
        key = jax.random.fold_in(aug_key, i)
        if family_key is not None:
            family_key = jax.random.fold_in(family_key, i)

        def loss_and_grad(params):
            return jax.value_and_grad(batch_loss, has_aux=True)(
                params, state.stats, xb, tb, mask, key, family_key
            )

        if config.sam_rho > 0:
            (loss, stats), grads = gsam_gradient(
                loss_and_grad, state.params, rho=config.sam_rho, alpha=config.sam_alpha
            )
        else:
            (loss, stats), grads = loss_and_grad(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        scale = -state.lr * lr_factor(config, i, total_steps)
        params = jax.tree.map(lambda p, u: p + scale * u, state.params, updates)
        return state._replace(params=params, opt_state=opt_state, stats=stats), loss

    return step


def accuracy(
    model: Model,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    batch_size: int,
    preprocess: Preprocess | None = None,
    stats: Stats | None = None,
) -> jax.Array:
    """Top-1 accuracy of one network on ``x [M, H, W, C]``, ``y [M] int``; scalar.

    The network runs in eval mode, on its running statistics `stats`
    (default: its initial ones; no effect on a network without batch norm).
    """
    stats = model.init_stats() if stats is None else stats
    m = x.shape[0]
    nb = -(-m // batch_size)
    pad = nb * batch_size - m
    xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(nb, batch_size, *x.shape[1:])
    ys = jnp.pad(y, (0, pad), constant_values=-1).reshape(nb, batch_size)

    def correct(batch):
        xb, yb = batch
        xb = preprocess(xb) if preprocess is not None else xb
        return jnp.sum(jnp.argmax(model.apply_eval(params, stats, xb), -1) == yb)

    return jnp.sum(jax.lax.map(correct, (xs, ys))) / m
