"""RCIG: a linearised network, a closed-form KRR head and implicit gradients (§3).

Each iteration (`distill_step`) picks model p of the pool: its parameters θ₀
are the linearisation point. With ψ = (images X_s, labels Y_s, log-temperature):

* the linearised forward (`linearized`): ONE `jax.jvp` of the network at θ₀
  along the tangent Δθ gives the base features φ(x; θ₀) (primal) and the
  linearised output out(x) = J_f(x; θ₀)·Δθ (tangent);
* the KRR head on φ: α = (K_ss + λI)⁻¹(Y_s − out_s), K_ss = φ_sφ_sᵀ,
  λ = l2_rate·(IPC·C), predictions ŷ(x) = out(x) + φ(x)φ_sᵀα (`krr_alpha`);
* the inner problem (`inner_loss`), convex and exactly quadratic in Δθ:
  [½‖Y_s − ŷ_s‖² + ½λ(tr(αᵀK_ssα) + ‖Δθ‖²)] / (N_s·C), solved from Δθ = 0
  (`solve_inner`: conjugate gradient, or the reference's Adam steps);
* the outer loss on a real batch (`outer_loss`): cross-entropy of
  ŷ·exp(log_temp) against the batch's labels, minus the clipped label
  margin mean_i min(top1(y_i) − top2(y_i), 1/(2C));
* its gradient dL/dψ = ∂L/∂ψ (direct, at fixed Δθ*) + the implicit part
  −∂/∂ψ ⟨v, ∇_Δθ L_in(Δθ*, ψ)⟩ with H v = ∂L/∂Δθ, H = ∇²_Δθ L_in
  (`implicit_gradient`; forward-over-reverse HVPs, CG or Adam on the
  quadratic), each implicit leaf clipped to the norm of its direct leaf;
* AdaBelief on ψ, an EMA of ψ (what is evaluated and saved), then model p
  trains 1–15 Adam steps on the current set and is re-initialised after its
  step budget (`train_pool_model`). The pool lives on the device, stacked.

Deviations from the reference (docs/deviations.md, RCIG): the head kernel's
tangent is not part of Δθ (the reference masks it out of its optimiser but
optax's mask then passes the raw gradient through); the inner problem is
solved by CG by default (it is a quadratic: no learning rate to tune) rather
than by Adam with an auto-tuned rate; each inner solve starts from a fresh
optimiser and the linearisation point does not move during it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdd import config as config_lib
from jaxdd import evaluate, parallel, rng
from jaxdd.errors import ConfigError
from jaxdd.methods import base
from jaxdd.models.convnet import ConvNetSpec, Model, Params
from jaxdd.ops import loops

Solver = Literal["cg", "adam"]


@dataclasses.dataclass(frozen=True)
class RCIGConfig:
    """RCIG hyper-parameters (docs/algorithms.md §3; the reference's values).

    Attributes:
      ipc: synthetic images per class (before flip copies).
      iterations: meta-steps (the reference: 10 000).
      batch_real: real images per meta-step (the reference: 1024).
      l2_rate: λ = l2_rate · IPC · C (the reference: 5e-4; 5e-2 at 128 px).
      inner_steps: iterations of the inner solve (the reference: 20 Adam steps).
      inner_solver: ``cg`` or ``adam`` (at `inner_lr`).
      inner_lr: Adam's lr on the inner problem (the reference tunes it online).
      hinv_steps: iterations of the H⁻¹g solve (the reference: 20 Adam steps).
      hinv_solver: ``cg`` or ``adam`` (at `hinv_lr`, the reference's).
      hinv_lr: Adam's lr on ½vᵀHv − vᵀg (the reference tunes it once).
      lr_img, lr_label: AdaBelief lr of images and labels (the reference: 3e-3).
      lr_temp: AdaBelief lr of the log-temperature (the reference: 0.03).
      learn_labels: learn Y_s (from one-hot − 1/C) or keep it fixed.
      flip: train on X_s and its horizontal flip (the reference: on, off for
        MNIST-type data).
      ema_decay: decay of the EMA of ψ (the reference: 0.99, bias-corrected).
      pool_size: P, models in the pool (the reference: 30).
      pool_max_steps: a picked model trains U{1, …, this} Adam steps (15).
      pool_reset: a model is re-initialised once it has trained this many steps (100).
      pool_lr: their Adam lr, MSE on the current set (5e-5).
      real_chunk: run the real batch's forward in chunks of this many images,
        rematerialised in the backward pass (memory of one chunk; the same
        gradient); None: the whole batch at once. Must divide `batch_real`.
      softplus_beta: β of softplus(βx)/β during distillation (ReLU at evaluation);
        0: ReLU while distilling too (the reference's 64 px and larger configs).
    """

    ipc: int = 10
    iterations: int = 10000
    batch_real: int = 1024
    l2_rate: float = 5e-4
    inner_steps: int = 20
    inner_solver: Solver = "cg"
    inner_lr: float = 1e-4
    hinv_steps: int = 20
    hinv_solver: Solver = "cg"
    hinv_lr: float = 5e-5
    lr_img: float = 3e-3
    lr_label: float = 3e-3
    lr_temp: float = 0.03
    learn_labels: bool = True
    flip: bool = True
    ema_decay: float = 0.99
    pool_size: int = 30
    pool_max_steps: int = 15
    pool_reset: int = 100
    pool_lr: float = 5e-5
    real_chunk: int | None = None
    softplus_beta: float = 60.0


class Coreset(NamedTuple):
    """ψ, what the meta-step learns: ``images [C·ipc, H, W, C_in]``, ``labels
    [C·ipc, C]`` and the scalar ``log_temp``."""

    images: jax.Array
    labels: jax.Array
    log_temp: jax.Array


# ---------------------------------------------------------------------------
# The linearised network and the KRR head


def _is_head_kernel(path) -> bool:
    keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
    return keys[-2:] == ["head", "kernel"]


def zero_tangent(params: Params) -> Params:
    """Δθ = 0 in the layout of `params`."""
    return jax.tree.map(jnp.zeros_like, params)


def mask_tangent(delta: Params) -> Params:
    """`delta` with the head kernel's tangent set to 0 (not part of Δθ)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, d: jnp.zeros_like(d) if _is_head_kernel(path) else d, delta
    )


def linearized(
    model: Model, theta0: Params, delta: Params, x: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(f(x; θ₀) [N, C], φ(x; θ₀) [N, F], J_f(x; θ₀)·Δθ [N, C])`` from one `jax.jvp`.

    θ₀ is a constant (no gradient flows into it); gradients flow into `x`
    and `delta`.
    """
    theta0 = jax.lax.stop_gradient(theta0)

    def both(params):
        phi = model.features(params, x)
        head = params["head"]
        return phi @ head["kernel"] + head["bias"][None], phi

    (logits, phi), (out, _) = jax.jvp(both, (theta0,), (delta,))
    return logits, phi, out


def krr_alpha(phi_s: jax.Array, residual: jax.Array, lam: jax.Array) -> jax.Array:
    """α = (φ_sφ_sᵀ + λI)⁻¹ residual: ``[N_s, F], [N_s, C] → [N_s, C]`` (a solve)."""
    k_ss = phi_s @ phi_s.T
    return jnp.linalg.solve(k_ss + lam * jnp.eye(k_ss.shape[0], dtype=k_ss.dtype), residual)


def with_flips(images: jax.Array, labels: jax.Array, flip: bool) -> tuple[jax.Array, jax.Array]:
    """The set trained on: X_s and its horizontal flip (``[2N, ...]``), or X_s alone."""
    if not flip:
        return images, labels
    return jnp.concatenate([images, images[:, :, ::-1]]), jnp.concatenate([labels, labels])


# ---------------------------------------------------------------------------
# Inner and outer problems


class Problem(NamedTuple):
    """One meta-step's fixed parts: the network, θ₀, λ, flips, the real batch.

    With `real_chunk`, the real batch's linearised forward runs in chunks of
    that many images, each rematerialised in the backward pass, so its
    activation memory is one chunk's (the value and gradients are the same).
    """

    model: Model
    theta0: Params
    lam: jax.Array
    flip: bool
    x_real: jax.Array
    y_real: jax.Array
    real_chunk: int | None = None

    def support(self, psi: Coreset, delta: Params):
        """``(φ_s, out_s, Y_s)`` of the (flipped) coreset under Δθ."""
        images, labels = with_flips(psi.images, psi.labels, self.flip)
        _, phi_s, out_s = linearized(self.model, self.theta0, delta, images)
        return phi_s, out_s, labels

    def inner_loss(self, delta: Params, psi: Coreset) -> jax.Array:
        """[½‖Y_s − ŷ_s‖² + ½λ(tr(αᵀK_ssα) + ‖Δθ‖²)] / (N_s·C), quadratic in Δθ."""
        phi_s, out_s, y_s = self.support(psi, delta)
        alpha = krr_alpha(phi_s, y_s - out_s, self.lam)
        k_alpha = phi_s @ (phi_s.T @ alpha)
        fit = 0.5 * jnp.sum(jnp.square(y_s - out_s - k_alpha))
        ridge = jnp.sum(alpha * k_alpha) + _sq_norm(delta)
        return (fit + 0.5 * self.lam * ridge) / y_s.size

    def outer_loss(self, delta: Params, psi: Coreset) -> jax.Array:
        """CE of ŷ_real·exp(log_temp) on the real batch − the clipped label margin."""
        phi_s, out_s, y_s = self.support(psi, delta)
        alpha = krr_alpha(phi_s, y_s - out_s, self.lam)
        head = phi_s.T @ alpha  # [F, C]: the KRR head as a linear map of φ
        temperature = jnp.exp(psi.log_temp)

        def ce_sum(x, y):
            _, phi_t, out_t = linearized(self.model, self.theta0, delta, x)
            preds = (out_t + phi_t @ head) * temperature
            return -jnp.sum(y * jax.nn.log_softmax(preds))

        n = self.x_real.shape[0]
        chunk = self.real_chunk
        if chunk is None or chunk >= n:
            total = ce_sum(self.x_real, self.y_real)
        else:
            if n % chunk:
                raise ValueError(f"rcig.real_chunk={chunk} must divide the real batch ({n})")
            xs = self.x_real.reshape(n // chunk, chunk, *self.x_real.shape[1:])
            ys = self.y_real.reshape(n // chunk, chunk, -1)
            body = jax.checkpoint(lambda c, xy: (c + ce_sum(*xy), None))
            total, _ = loops.scan(body, jnp.zeros((), head.dtype), (xs, ys))
        return total / n - label_margin(y_s)

    def hvp(self, delta: Params, psi: Coreset) -> Callable[[Params], Params]:
        """v ↦ H v, H = ∇²_Δθ L_in at Δθ (forward-over-reverse)."""
        grad = jax.grad(self.inner_loss)

        def apply(v):
            return mask_tangent(jax.jvp(lambda d: grad(d, psi), (delta,), (v,))[1])

        return apply


def label_margin(labels: jax.Array) -> jax.Array:
    """mean_i min(top1(y_i) − top2(y_i), 1/(2C)) over ``[N, C]`` labels."""
    top = jax.lax.top_k(labels, 2)[0]
    return jnp.mean(jnp.minimum(top[:, 0] - top[:, 1], 1.0 / (2 * labels.shape[-1])))


def _sq_norm(tree: Params) -> jax.Array:
    return sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree))


def _vdot(a: Params, b: Params) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def solve_quadratic(
    matvec: Callable[[Params], Params],
    b: Params,
    *,
    steps: int,
    solver: Solver,
    lr: float,
) -> Params:
    """x ≈ A⁻¹b for PSD A = `matvec`, from x = 0: `steps` conjugate-gradient
    iterations (`conjugate_gradient`), or Adam steps at `lr` on ½xᵀAx − bᵀx
    (gradient Ax − b), the reference's way."""
    if solver == "cg":
        return conjugate_gradient(matvec, b, steps=steps)
    opt = optax.adam(lr)
    x = jax.tree.map(jnp.zeros_like, b)

    def body(carry, _):
        x, state = carry
        grad = jax.tree.map(jnp.subtract, matvec(x), b)
        updates, state = opt.update(grad, state, x)
        return (optax.apply_updates(x, updates), state), None

    (x, _), _ = loops.scan(body, (x, opt.init(x)), length=steps)
    return x


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, *, steps: int) -> Params:
    """`steps` CG iterations on A x = b from x = 0, over pytrees.

    A fixed number of iterations in `loops.scan` (unrolled on CPU, where a
    rolled loop of convolution gradients is slow); once the residual is 0
    the iterate stays put.
    """
    x = jax.tree.map(jnp.zeros_like, b)
    rs = _vdot(b, b)

    def body(carry, _):
        x, r, p, rs = carry
        ap = matvec(p)
        curvature = _vdot(p, ap)
        alpha = jnp.where(curvature > 0, rs / jnp.where(curvature > 0, curvature, 1.0), 0.0)
        x = jax.tree.map(lambda a, d: a + alpha * d, x, p)
        r = jax.tree.map(lambda a, d: a - alpha * d, r, ap)
        rs_next = _vdot(r, r)
        beta = jnp.where(rs > 0, rs_next / jnp.where(rs > 0, rs, 1.0), 0.0)
        p = jax.tree.map(lambda a, d: a + beta * d, r, p)
        return (x, r, p, rs_next), None

    (x, *_), _ = loops.scan(body, (x, b, b, rs), length=steps)
    return x


def solve_inner(problem: Problem, psi: Coreset, config: RCIGConfig, theta0: Params) -> Params:
    """Δθ* ≈ argmin L_in(·, ψ) from Δθ = 0 (`RCIGConfig.inner_solver`).

    L_in is quadratic in Δθ, so its minimiser solves H Δθ = −∇L_in(0).
    """
    zero = zero_tangent(theta0)
    if config.inner_solver == "cg":
        b = jax.tree.map(jnp.negative, mask_tangent(jax.grad(problem.inner_loss)(zero, psi)))
        return solve_quadratic(
            problem.hvp(zero, psi), b, steps=config.inner_steps, solver="cg", lr=0.0
        )
    opt = optax.adam(config.inner_lr)

    def body(carry, _):
        delta, state = carry
        grad = mask_tangent(jax.grad(problem.inner_loss)(delta, psi))
        updates, state = opt.update(grad, state, delta)
        return (optax.apply_updates(delta, updates), state), None

    (delta, _), _ = loops.scan(body, (zero, opt.init(zero)), length=config.inner_steps)
    return delta


class Gradients(NamedTuple):
    """One meta-step's gradients w.r.t. ψ and what they came from."""

    total: Coreset
    direct: Coreset
    implicit: Coreset
    outer: jax.Array
    inner: jax.Array
    implicit_finite: jax.Array


def raw_gradients(
    problem: Problem, psi: Coreset, delta: Params, config: RCIGConfig
) -> tuple[jax.Array, Coreset, Coreset]:
    """``(L_out, direct, implicit)`` at the inner solution `delta`, unclipped.

    direct = ∂L_out/∂ψ at fixed Δθ; implicit = −∂/∂ψ ⟨v, ∇_Δθ L_in(Δθ, ψ)⟩
    with v ≈ H⁻¹ ∂L_out/∂Δθ (`RCIGConfig.hinv_solver`).
    """
    outer, (g_delta, direct) = jax.value_and_grad(problem.outer_loss, argnums=(0, 1))(delta, psi)
    v = solve_quadratic(
        problem.hvp(delta, psi),
        mask_tangent(g_delta),
        steps=config.hinv_steps,
        solver=config.hinv_solver,
        lr=config.hinv_lr,
    )
    v = jax.lax.stop_gradient(v)

    def mixed(p):
        return -_vdot(v, jax.grad(problem.inner_loss)(delta, p))

    return outer, direct, jax.grad(mixed)(psi)


def meta_gradient(problem: Problem, psi: Coreset, delta: Params, config: RCIGConfig) -> Gradients:
    """dL_out/dψ: the direct gradient + the implicit part clipped leaf by leaf.

    Each implicit leaf is scaled to at most the norm of its direct leaf (the
    reference's rule). A non-finite implicit part is dropped (the direct
    gradient alone is used) and reported in ``implicit_finite``, never
    silently zeroed.
    """
    outer, direct, implicit = raw_gradients(problem, psi, delta, config)
    implicit = jax.tree.map(_clip_to, implicit, direct)
    finite = _all_finite(implicit)
    implicit = jax.tree.map(lambda a: jnp.where(finite, a, jnp.zeros_like(a)), implicit)
    total = jax.tree.map(jnp.add, direct, implicit)
    if not config.learn_labels:
        total = total._replace(labels=jnp.zeros_like(total.labels))
    inner = problem.inner_loss(delta, psi)
    return Gradients(total, direct, implicit, outer, inner, finite)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _clip_to(g: jax.Array, ref: jax.Array) -> jax.Array:
    """`g` rescaled to at most the (Frobenius) norm of `ref`, per leaf."""
    norm, limit = jnp.linalg.norm(g.ravel()), jnp.linalg.norm(ref.ravel())
    return g * jnp.minimum(1.0, limit / jnp.maximum(norm, 1e-30))


# ---------------------------------------------------------------------------
# The model pool and the meta-step


class Real(NamedTuple):
    """The real data the outer loss samples: ``x [N, H, W, C_in]`` and one-hot
    ``targets [N, C]`` (each row scaled by its sample's training weight)."""

    x: jax.Array
    targets: jax.Array


class RCIGState(NamedTuple):
    """Everything an RCIG run needs to continue (checkpointed whole, pool included).

    Attributes:
      psi: the current `Coreset`.
      ema: the EMA accumulators of ψ (bias-corrected by `ema_value`).
      opt_state: AdaBelief's state of ψ.
      pool: the P base models, leaves ``[P, ...]``.
      pool_opt: their Adam states, leaves ``[P, ...]``.
      pool_steps: ``[P] int32`` Adam steps each model has trained since its init.
      iteration: scalar int32, meta-steps done.
      skipped: scalar int32, meta-steps whose update was not finite (skipped).
      implicit_dropped: scalar int32, meta-steps whose implicit part was not
        finite (the direct gradient alone was used).
      key: PRNG key of the next meta-step.
    """

    psi: Coreset
    ema: Coreset
    opt_state: Any
    pool: Params
    pool_opt: Any
    pool_steps: jax.Array
    iteration: jax.Array
    skipped: jax.Array
    implicit_dropped: jax.Array
    key: jax.Array

    @property
    def images(self) -> jax.Array:
        """``[C·ipc, H, W, C_in]`` the current images (the driver sizes its mesh by them)."""
        return self.psi.images


def _meta_optimizer(config: RCIGConfig) -> optax.GradientTransformation:
    """AdaBelief on images, labels and the log-temperature, each at its own lr."""
    return optax.multi_transform(
        {
            "images": optax.adabelief(config.lr_img),
            "labels": optax.adabelief(config.lr_label),
            "log_temp": optax.adabelief(config.lr_temp),
        },
        Coreset("images", "labels", "log_temp"),
    )


def _pool_optimizer(config: RCIGConfig) -> optax.GradientTransformation:
    return optax.adam(config.pool_lr)


def initial_labels(num_classes: int, ipc: int) -> jax.Array:
    """``[C·ipc, C]`` one-hot − 1/C, class-major (the reference's init)."""
    classes = jnp.arange(num_classes * ipc) // ipc
    return jax.nn.one_hot(classes, num_classes) - 1.0 / num_classes


def init_state(
    model: Model, images: jax.Array, num_classes: int, config: RCIGConfig, *, key: jax.Array
) -> RCIGState:
    """The state before meta-step 0 from ``[C·ipc, H, W, C_in]`` initial images."""
    pool_key, key = jax.random.split(key)
    psi = Coreset(images, initial_labels(num_classes, config.ipc), jnp.zeros((), images.dtype))
    pool = jax.vmap(model.init)(jax.random.split(pool_key, config.pool_size))
    pool_opt = jax.vmap(_pool_optimizer(config).init)(pool)
    zeros = [jnp.zeros((), jnp.int32) for _ in range(3)]  # distinct buffers (donation)
    return RCIGState(
        psi,
        jax.tree.map(jnp.zeros_like, psi),
        _meta_optimizer(config).init(psi),
        pool,
        pool_opt,
        jnp.zeros((config.pool_size,), jnp.int32),
        *zeros,
        key,
    )


def ema_value(state: RCIGState, config: RCIGConfig) -> Coreset:
    """The bias-corrected EMA of ψ (ψ itself before the first meta-step)."""
    t = state.iteration.astype(jnp.float32)
    correction = 1.0 - jnp.power(config.ema_decay, t)
    return jax.tree.map(
        lambda e, p: jnp.where(t > 0, e / jnp.maximum(correction, 1e-12), p), state.ema, state.psi
    )


def train_pool_model(
    model: Model,
    params: Params,
    opt_state: Any,
    images: jax.Array,
    labels: jax.Array,
    steps: jax.Array,
    config: RCIGConfig,
) -> tuple[Params, Any]:
    """`steps` (traced, ≤ `pool_max_steps`) Adam steps of the base network on the
    set: MSE Σ½(f(x; θ) − y)² / (N·C), full batch."""
    opt = _pool_optimizer(config)

    def loss(p):
        return 0.5 * jnp.sum(jnp.square(model.apply(p, images) - labels)) / labels.size

    def one(carry):
        p, s = carry
        updates, s = opt.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    def body(carry, i):
        return jax.lax.cond(i < steps, one, lambda c: c, carry), None

    carry, _ = loops.scan(body, (params, opt_state), jnp.arange(config.pool_max_steps))
    return carry


def _select(condition: jax.Array, if_true, if_false):
    """`if_true` where the scalar `condition` holds, else `if_false` (leaf by leaf)."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


def _take(tree, i):
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), tree)


def _put(tree, i, value):
    return jax.tree.map(lambda a, v: jax.lax.dynamic_update_index_in_dim(a, v, i, 0), tree, value)


def distill_step(
    model: Model, config: RCIGConfig, state: RCIGState, real: Real
) -> tuple[RCIGState, dict]:
    """One meta-step: pool model p, inner solve, meta-gradient, AdaBelief, EMA, pool training.

    Args:
      model: the distillation network (softplus, no normalisation).
      config: the method's hyper-parameters.
      state: the current state (donated by the driver).
      real: the real data the outer loss samples a batch of.

    Returns:
      the next state and metrics (outer, inner, temperature, model, pool_steps,
      implicit_finite, accepted).
    """
    key, k_model, k_batch, k_steps, k_reset = jax.random.split(state.key, 5)
    psi = state.psi
    num_classes = psi.labels.shape[-1]
    p = jax.random.randint(k_model, (), 0, config.pool_size)
    theta0 = _take(state.pool, p)
    n_real = real.x.shape[0]
    idx = jax.random.choice(k_batch, n_real, (min(config.batch_real, n_real),), replace=False)
    lam = jnp.asarray(config.l2_rate * config.ipc * num_classes, psi.images.dtype)
    problem = Problem(
        model, theta0, lam, config.flip, real.x[idx], real.targets[idx], config.real_chunk
    )
    delta = solve_inner(problem, psi, config, theta0)
    grads = meta_gradient(problem, psi, delta, config)
    accept = _all_finite(grads.total) & jnp.isfinite(grads.outer)
    total = jax.tree.map(lambda g: jnp.where(accept, g, jnp.zeros_like(g)), grads.total)
    updates, stepped = _meta_optimizer(config).update(total, state.opt_state, psi)
    new_psi = _select(accept, optax.apply_updates(psi, updates), psi)
    opt_state = _select(accept, stepped, state.opt_state)
    decay = config.ema_decay
    ema = jax.tree.map(lambda e, v: decay * e + (1 - decay) * v, state.ema, new_psi)
    # Model p trains on the updated set from where it was, then ages out.
    images, labels = with_flips(new_psi.images, new_psi.labels, config.flip)
    images, labels = jax.lax.stop_gradient((images, labels))
    steps = jax.random.randint(k_steps, (), 1, config.pool_max_steps + 1)
    trained, trained_opt = train_pool_model(
        model, theta0, _take(state.pool_opt, p), images, labels, steps, config
    )
    age = state.pool_steps[p] + steps
    reset = age >= config.pool_reset

    def renewed(_):
        fresh = model.init(k_reset)
        return fresh, _pool_optimizer(config).init(fresh)

    # A fresh model is drawn only when one ages out, not every meta-step.
    trained, trained_opt = jax.lax.cond(reset, renewed, lambda pair: pair, (trained, trained_opt))
    next_state = RCIGState(
        new_psi,
        ema,
        opt_state,
        _put(state.pool, p, trained),
        _put(state.pool_opt, p, trained_opt),
        state.pool_steps.at[p].set(jnp.where(reset, 0, age)),
        state.iteration + 1,
        state.skipped + (~accept).astype(jnp.int32),
        state.implicit_dropped + (~grads.implicit_finite).astype(jnp.int32),
        key,
    )
    metrics = {
        "outer": grads.outer,
        "inner": grads.inner,
        "temperature": jnp.exp(new_psi.log_temp),
        "model": p,
        "pool_steps": steps,
        "implicit_finite": grads.implicit_finite,
        "accepted": accept,
    }
    return next_state, metrics


# ---------------------------------------------------------------------------
# The driver's interface


def networks(spec: ConvNetSpec, config: RCIGConfig) -> tuple[ConvNetSpec, ConvNetSpec]:
    """RCIG's (distillation, evaluation) ConvNets from the run's `spec`.

    No normalisation, widths doubling per block, LeCun init (the
    reference's Flax defaults); softplus(βx)/β while distilling, ReLU at
    evaluation.
    """
    base_spec = dataclasses.replace(spec, norm="none", growth=2, init="lecun")
    evaluation = dataclasses.replace(base_spec, activation="relu")
    if config.softplus_beta == 0:  # the reference's softplus_temp 0: ReLU throughout
        return evaluation, evaluation
    distil = dataclasses.replace(
        base_spec, activation="softplus", softplus_beta=config.softplus_beta
    )
    return distil, evaluation


class Rcig:
    """RCIG behind the driver's `base.Method` interface."""

    name = "rcig"
    field = "rcig"
    uses_experts = False
    curves = {
        "outer": "outer loss (real batch)",
        "inner": "inner loss",
        "temperature": "temperature",
    }
    shown = ("outer", "temperature")

    def check(self, config, label) -> None:
        """`real_chunk` divides the real batch."""
        r = config.rcig
        if r.real_chunk is not None and r.batch_real % r.real_chunk:
            raise ConfigError(
                f"{label('rcig.real_chunk')}={r.real_chunk} must divide "
                f"{label('rcig.batch_real')}={r.batch_real}: pick a divisor, or none"
            )

    def unused(self, config) -> dict[str, str]:
        why = "RCIG trains its own model pool, no experts"
        unused = {f"experts.{path}": why for path in config_lib.paths(config.experts)}
        if config.trust is not None:
            unused["trust.init_pool"] = "RCIG's init draws from the trusted space"
        return unused

    def defaults(self) -> dict:
        """RCIG evaluates with the Adam/MSE protocol (`evaluate.adam_protocol`)."""
        return {"eval": evaluate.adam_protocol()}

    def networks(self, config, spec: ConvNetSpec) -> tuple[ConvNetSpec, ConvNetSpec]:
        return networks(spec, config.rcig)

    def setup(self, config, model: Model, data, services: base.Services) -> base.Setup:
        settings: RCIGConfig = config.rcig
        c = data.ds.num_classes
        images, noise = base.random_real_init(data, settings.ipc, services.seed)
        key = rng.stream(services.seed, "distill")
        state = init_state(model, jnp.asarray(images), c, settings, key=key)
        real = Real(np.asarray(data.x), np.asarray(data.targets(), np.float32))
        return base.Setup(state, real, {"filled": 0, "label_noise": noise})

    def step(self, model, config, state, resources):
        return distill_step(model, config.rcig, state, resources)

    def shard(self, state, resources, mesh):
        """Everything replicated: one meta-step is one model's solve."""
        return parallel.replicate(state, mesh), parallel.replicate(resources, mesh)

    def distilled(self, config, state) -> base.Distilled:
        """The EMA of ψ (with its flip copies), trained on with MSE on its labels."""
        settings = config.rcig
        ema = ema_value(state, settings)
        images, labels = with_flips(ema.images, ema.labels, settings.flip)
        classes = np.tile(np.arange(ema.images.shape[0]) // settings.ipc, 2 if settings.flip else 1)
        kept = {"log_temp": ema.log_temp, "flip": np.bool_(settings.flip)}
        return base.Distilled(images, labels, labels, None, classes, kept)

    def summary(self, state) -> dict:
        return {"implicit_dropped": int(state.implicit_dropped)}


METHODS = {"rcig": Rcig()}
