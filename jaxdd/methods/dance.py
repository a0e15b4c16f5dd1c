"""DANCE: distribution matching with an expert pool (docs/algorithms.md §2.2).

Each iteration picks an expert p of the pool (each kept at its init θ⁰ and
after training θ^T, `jaxdd.experts` with DANCE's schedule) and λ ~ U(0, 1):

  * intra-class view: DM's per-class mean-feature loss (`dm.class_losses`)
    under the middle encoder θ_mid = λ·θ⁰ + (1 − λ)·θ^T, a weight
    interpolation that is never trained;
  * inter-class view: the cross-entropy of the trained expert f(θ^T, ·) on
    the DSA-augmented synthetic images against their classes, summed over
    classes of each class's mean (the reference's per-class terms).

The two views are added 1:1 and one SGD-momentum step updates the images,
which are then clamped to the pixel range [0, 1]. Every class is in ONE
jitted step (the reference takes one SGD step per class and view, 2C steps
an iteration; docs/deviations.md). With multi-formation (``factor`` f > 1)
each stored image holds f×f tiles, each decoded by bilinear upsampling to a
full image (`decode`), at matching and at evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdd import evaluate, parallel, rng
from jaxdd.errors import ConfigError
from jaxdd.experts import ExpertConfig
from jaxdd.methods import base, dm
from jaxdd.models.base import Model, Params
from jaxdd.ops import dsa as dsa_lib
from jaxdd.ops import loops
from jaxdd.ops.losses import soft_cross_entropy


@dataclasses.dataclass(frozen=True)
class DANCEConfig:
    """DANCE hyper-parameters (docs/algorithms.md §2.2; the reference's values).

    Attributes:
      ipc: stored synthetic images per class (each decodes to factor² images).
      iterations: distillation iterations (the reference: 10 000).
      batch_real: real images per class per iteration (the reference: 128).
      lr_img: SGD lr of the images; None: the reference's 0.01·ipc.
      momentum_img: its momentum (the reference: 0.5).
      factor: multi-formation factor f (1: none; the reference's README: 2).
      dsa: Siamese DSA in the intra-class view, DSA in the inter-class view.
      dsa_families: the families each draw picks one of (the reference's
        matching ``aug_type``: colour, crop, cutout).
      per_class_updates: take the reference's 2C SGD steps per iteration (each
        class's intra-class loss, then each class's inter-class loss, one
        step each, momentum shared across them) instead of one step on the
        sum (docs/deviations.md: what was measured).
    """

    ipc: int = 10
    iterations: int = 10000
    batch_real: int = 128
    lr_img: float | None = None
    momentum_img: float = 0.5
    factor: int = 1
    dsa: bool = True
    dsa_families: tuple[dsa_lib.Family, ...] = ("color", "crop", "cutout")
    per_class_updates: bool = False

    @property
    def augmentation(self) -> dsa_lib.DSAConfig:
        """The DSA settings of both views."""
        return dsa_lib.DSAConfig(families=tuple(self.dsa_families))

    @property
    def image_lr(self) -> float:
        """`lr_img`, or the reference's 0.01·ipc."""
        return 0.01 * self.ipc if self.lr_img is None else self.lr_img


# DANCE's expert pool schedule (the reference's pretraining: 60 epochs, SGD 0.01,
# momentum 0.9, wd 5e-4, ×0.2 at 2/3 and 5/6, batch 64, colour + crop, CutMix 0.5;
# it pretrains 20 experts and uses 5).
POOL = ExpertConfig(
    num_experts=5,
    epochs=60,
    lr=0.01,
    batch_size=64,
    dsa=True,
    dsa_families=("color", "crop"),
    momentum=0.9,
    weight_decay=5e-4,
    lr_milestones=(2 / 3, 5 / 6),
    lr_gamma=0.2,
    cutmix=0.5,
)


class DANCEState(NamedTuple):
    """Everything a DANCE run needs to continue (checkpointed whole).

    Attributes:
      images: ``[C·ipc, H, W, C_in]`` stored synthetic images (normalised), class-major.
      opt_state: the SGD-momentum state of the images.
      iteration: scalar int32, iterations done.
      skipped: scalar int32, updates skipped for non-finite values.
      key: PRNG key of the next iteration.
    """

    images: jax.Array
    opt_state: Any
    iteration: jax.Array
    skipped: jax.Array
    key: jax.Array


class Pool(NamedTuple):
    """The expert pool's two ends, leaves ``[P, ...]``: θ⁰ and θ^T."""

    init: Params
    final: Params


class Resources(NamedTuple):
    """What a DANCE step reads: the real tables, the pool and the pixel bounds.

    Attributes:
      tables: `dm.RealTables`.
      pool: `Pool`.
      low, high: ``[C_in]`` the normalised values of pixels 0 and 1 (the clamp).
    """

    tables: dm.RealTables
    pool: Pool
    low: jax.Array
    high: jax.Array


def interpolate(theta0: Params, theta_t: Params, lam: jax.Array) -> Params:
    """The middle encoder λ·θ⁰ + (1 − λ)·θ^T (λ = 1: θ⁰, λ = 0: θ^T, exactly)."""
    return jax.tree.map(lambda a, b: lam * a + (1 - lam) * b, theta0, theta_t)


def decode(images: jax.Array, factor: int) -> jax.Array:
    """Multi-formation decode: ``[n, H, W, C] → [n·f², H, W, C]``.

    Image i's tile (r, c) (row-major) of size ``(H/f, W/f)`` becomes image
    ``i·f² + r·f + c``, upsampled bilinearly (half-pixel centres, PyTorch's
    ``align_corners=False``). Factor 1 is the identity.
    """
    if factor == 1:
        return images
    n, h, w, c = images.shape
    th, tw = h // factor, w // factor
    tiles = images.reshape(n, factor, th, factor, tw, c).transpose(0, 1, 3, 2, 4, 5)
    tiles = tiles.reshape(n * factor * factor, th, tw, c)
    return jax.image.resize(tiles, (tiles.shape[0], h, w, c), "bilinear", antialias=False)


def form(x: np.ndarray, factor: int) -> np.ndarray:
    """The inverse layout of `decode` for an init: ``[n·f², H, W, C] → [n, H, W, C]``.

    Each group of f² real images is shrunk (bilinear, antialiased) to tiles
    of one stored image.
    """
    if factor == 1:
        return x
    m, h, w, c = x.shape
    n, th, tw = m // factor**2, h // factor, w // factor
    small = np.asarray(jax.image.resize(jnp.asarray(x), (m, th, tw, c), "bilinear"))
    tiles = small.reshape(n, factor, factor, th, tw, c).transpose(0, 1, 3, 2, 4, 5)
    return tiles.reshape(n, h, w, c)


def _optimizer(config: DANCEConfig) -> optax.GradientTransformation:
    return optax.sgd(config.image_lr, momentum=config.momentum_img)


def init_state(images: jax.Array, config: DANCEConfig, *, key: jax.Array) -> DANCEState:
    """The state before iteration 0 from ``[C·ipc, H, W, C_in]`` stored images."""
    iteration, skipped = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
    return DANCEState(images, _optimizer(config).init(images), iteration, skipped, key)


def inter_class_loss(
    model: Model,
    params: Params,
    images: jax.Array,
    num_classes: int,
    *,
    key,
    dsa: bool,
    augmentation: dsa_lib.DSAConfig = dsa_lib.DEFAULT_CONFIG,
) -> jax.Array:
    """Σ_c mean CE of f(params, DSA(syn_c)) against c, over decoded class-major images."""
    view = dsa_lib.dsa(images, key=key, config=augmentation) if dsa else images
    per_class = images.shape[0] // num_classes
    targets = jax.nn.one_hot(jnp.arange(images.shape[0]) // per_class, num_classes)
    return num_classes * soft_cross_entropy(model.apply(params, view), targets)


def distill_step(
    model: Model, config: DANCEConfig, state: DANCEState, res: Resources
) -> tuple[DANCEState, dict]:
    """One DANCE iteration: expert p, λ, both views for every class, clamped SGD.

    One step on the sum of both views over every class, or with
    `DANCEConfig.per_class_updates` the reference's 2C steps. A non-finite
    loss or gradient skips its step (and counts the iteration as skipped).

    Returns:
      the next state and metrics (loss, intra, inter, expert, lam, accepted).
    """
    key, e_key, lam_key, batch_key, intra_key, inter_key = jax.random.split(state.key, 6)
    num_experts = jax.tree.leaves(res.pool.init)[0].shape[0]
    expert = jax.random.randint(e_key, (), 0, num_experts)
    lam = jax.random.uniform(lam_key)
    theta0 = jax.tree.map(lambda a: a[expert], res.pool.init)
    theta_t = jax.tree.map(lambda a: a[expert], res.pool.final)
    views = _Views(
        model,
        config,
        res.tables.table.shape[0],
        jax.lax.stop_gradient(interpolate(theta0, theta_t, lam)),
        jax.lax.stop_gradient(theta_t),
        *dm.sample_class_batches(
            res.tables, min(config.batch_real, res.tables.table.shape[1]), key=batch_key
        ),
    )
    sgd = _optimizer(config)
    if config.per_class_updates:
        images, opt_state, intra, inter, accept = _per_class_steps(
            views, sgd, state.images, state.opt_state, intra_key, inter_key
        )
    else:

        def loss_fn(images):
            intra, inter = views.intra(images, intra_key), views.inter(images, inter_key)
            return intra + inter, (intra, inter)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (intra, inter)), grad = grad_fn(state.images)
        grad = jnp.where(jnp.isfinite(loss), grad, jnp.nan)
        images, opt_state, accept = _guarded_step(sgd, grad, state.images, state.opt_state)
    low, high = res.low[None, None, None, :], res.high[None, None, None, :]
    images = jnp.clip(images, low, high)
    skipped = state.skipped + (~accept).astype(jnp.int32)
    next_state = DANCEState(images, opt_state, state.iteration + 1, skipped, key)
    metrics = {
        "loss": intra + inter,
        "intra": intra,
        "inter": inter,
        "expert": expert,
        "lam": lam,
        "accepted": accept,
    }
    return next_state, metrics


class _Views(NamedTuple):
    """Both views' losses of one iteration: its encoders and real batches.

    ``real`` is ``[C, b, H, W, C_in]`` and ``weight`` ``[C, b]`` (`dm.sample_class_batches`).
    """

    model: Model
    config: DANCEConfig
    num_classes: int
    mid: Params
    theta_t: Params
    real: jax.Array
    weight: jax.Array

    def _syn(self, images: jax.Array) -> jax.Array:
        """``[C, ipc·f², H, W, C_in]`` the decoded images by class."""
        full = decode(images, self.config.factor)
        return full.reshape(self.num_classes, -1, *full.shape[1:])

    def intra(self, images: jax.Array, key: jax.Array) -> jax.Array:
        """Σ_c of the intra-class (DM) losses under the middle encoder."""
        c = self.config
        losses = dm.class_losses(
            self.model,
            self.mid,
            self._syn(images),
            self.real,
            self.weight,
            key=key,
            dsa=c.dsa,
            augmentation=c.augmentation,
        )
        return jnp.sum(losses)

    def inter(self, images: jax.Array, key: jax.Array) -> jax.Array:
        """Σ_c of the mean cross-entropy of the trained expert on class c's images."""
        full = decode(images, self.config.factor)
        c = self.config
        return inter_class_loss(
            self.model,
            self.theta_t,
            full,
            self.num_classes,
            key=key,
            dsa=c.dsa,
            augmentation=c.augmentation,
        )

    def intra_of(self, images: jax.Array, cls: jax.Array, key: jax.Array) -> jax.Array:
        """Class `cls`'s intra-class loss alone."""
        syn_c = self._syn(images)[cls][None]
        real_c, w_c = self.real[cls][None], self.weight[cls][None]
        c = self.config
        return dm.class_losses(
            self.model,
            self.mid,
            syn_c,
            real_c,
            w_c,
            key=key,
            dsa=c.dsa,
            augmentation=c.augmentation,
        )[0]

    def inter_of(self, images: jax.Array, cls: jax.Array, key: jax.Array) -> jax.Array:
        """Class `cls`'s mean cross-entropy of the trained expert alone."""
        syn_c = self._syn(images)[cls]
        c = self.config
        view = dsa_lib.dsa(syn_c, key=key, config=c.augmentation) if c.dsa else syn_c
        targets = jax.nn.one_hot(jnp.full((syn_c.shape[0],), cls), self.num_classes)
        return soft_cross_entropy(self.model.apply(self.theta_t, view), targets)


def _guarded_step(sgd, grad, images, opt_state):
    """An SGD step, or none (state kept) when the gradient is not finite."""
    accept = jnp.all(jnp.isfinite(grad))
    grad = jnp.where(accept, grad, jnp.zeros_like(grad))
    updates, stepped_state = sgd.update(grad, opt_state, images)
    images = jnp.where(accept, optax.apply_updates(images, updates), images)
    opt_state = jax.tree.map(lambda a, b: jnp.where(accept, a, b), stepped_state, opt_state)
    return images, opt_state, accept


def _per_class_steps(views: _Views, sgd, images, opt_state, intra_key, inter_key):
    """The reference's iteration: one step per class on its intra-class loss, then
    one per class on its inter-class loss; each class draws its own augmentation.

    Returns ``(images, opt_state, Σ intra, Σ inter, every step accepted)``.
    """
    classes = jnp.arange(views.num_classes)

    def run(loss_of, key, carry):
        def body(carry, xs):
            images, opt_state, ok = carry
            cls, k = xs
            loss, grad = jax.value_and_grad(loss_of)(images, cls, k)
            grad = jnp.where(jnp.isfinite(loss), grad, jnp.nan)
            images, opt_state, accept = _guarded_step(sgd, grad, images, opt_state)
            return (images, opt_state, ok & accept), loss

        keys = jax.random.split(key, views.num_classes)
        return loops.scan(body, carry, (classes, keys))

    carry = (images, opt_state, jnp.array(True))
    carry, intra = run(views.intra_of, intra_key, carry)
    (images, opt_state, ok), inter = run(views.inter_of, inter_key, carry)
    return images, opt_state, jnp.sum(intra), jnp.sum(inter), ok


def pool_ends(trajectories: Params) -> Pool:
    """θ⁰ and θ^T of every expert from trajectories with leaves ``[P, T + 1, ...]``."""
    return Pool(
        jax.tree.map(lambda a: np.asarray(a[:, 0]), trajectories),
        jax.tree.map(lambda a: np.asarray(a[:, -1]), trajectories),
    )


class Dance:
    """DANCE behind the driver's `base.Method` interface."""

    name = "dance"
    field = "dance"
    uses_experts = True
    curves = {"loss": "total loss", "intra": "intra-class (DM) loss", "inter": "inter-class CE"}
    shown = ("loss",)

    networks = staticmethod(base.same_network)

    def defaults(self) -> dict:
        """DANCE's pool schedule (`POOL`) and its evaluation (`evaluate.dance_protocol`)."""
        return {"experts": POOL, "eval": evaluate.dance_protocol()}

    def check(self, config, label) -> None:
        """Pixels are clamped to [0, 1]: no ZCA; the image side divides by the factor."""
        if config.zca:
            raise ConfigError(
                f"DANCE clamps pixels to [0, 1], which ZCA-whitened images have no box for: "
                f"set {label('zca')}=false"
            )

    def unused(self, config) -> dict[str, str]:
        unused = {}
        if config.trust is not None:
            unused["trust.init_pool"] = "DANCE's init draws from the trusted space"
        return unused

    def setup(self, config, model: Model, data, services: base.Services) -> base.Setup:
        settings: DANCEConfig = config.dance
        f, c = settings.factor, data.ds.num_classes
        h, w = data.ds.image_shape[:2]
        if h % f or w % f:
            raise ConfigError(f"dance.factor={f} must divide the image side ({h}×{w})")
        pool = pool_ends(services.experts(config))
        real, noise = base.random_real_init(data, settings.ipc * f * f, services.seed)
        images = form(real, f)
        state = init_state(jnp.asarray(images), settings, key=rng.stream(services.seed, "distill"))
        table, weight = base.class_tables(data.labels, c, data.weights)
        tables = dm.RealTables(np.asarray(data.x), table, weight)
        low = (0.0 - data.space.mean) / data.space.std
        high = (1.0 - data.space.mean) / data.space.std
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        res = Resources(tables, pool, low.reshape(-1), high.reshape(-1))
        return base.Setup(state, res, {"filled": 0, "label_noise": noise})

    def step(self, model, config, state, resources):
        return distill_step(model, config.dance, state, resources)

    def shard(self, state, resources, mesh):
        n_syn = state.images.shape[0]
        return parallel.split_leading(state, n_syn, mesh), parallel.replicate(resources, mesh)

    def distilled(self, config, state) -> base.Distilled:
        settings = config.dance
        images = decode(state.images, settings.factor)
        per_class = settings.ipc * settings.factor**2
        classes = np.arange(images.shape[0]) // per_class
        labels = jax.nn.one_hot(jnp.asarray(classes), images.shape[0] // per_class)
        stored = {"stored_images": state.images, "factor": np.int32(settings.factor)}
        return base.Distilled(images, labels, labels, None, classes, stored)

    def summary(self, state) -> dict:
        return {}


METHODS = {"dance": Dance()}
