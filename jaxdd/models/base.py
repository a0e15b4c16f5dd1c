"""A network as pure functions over plain pytrees: what every kernel is given.

Networks are written as Flax NNX modules and converted ONCE into a `Model`,
whose functions take a parameter pytree (and, for batch-normalised networks,
a pytree of running statistics): that is what `vmap` over seeds, gradients
through unrolled training and `jax.jvp` linearisation need.

Running statistics are not parameters: they are threaded through the
training state by `apply_train` (train mode: normalise by the batch, return
updated running statistics) and read by `apply_eval` (eval mode). A network
without batch norm has empty statistics (``{}``), so the same training and
evaluation kernels serve every network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

Params = dict
Stats = dict


class Model(NamedTuple):
    """A network as pure functions.

    Attributes:
      init: ``key → params``; vmappable over keys.
      apply: ``(params, x [N, H, W, C]) → logits [N, num_classes]``; for a
        batch-normalised network the train-mode forward (batch statistics,
        running statistics untouched), as distillation losses use it.
      features: ``(params, x) → φ [N, feature_dim]``, the input of the head.
      spec: the architecture it was built from (hashable).
      init_stats: ``() → stats``, the initial running statistics (``{}``
        without batch norm).
      apply_train: ``(params, stats, x, mask) → (logits, stats)``: the
        train-mode forward and the updated running statistics; `mask`
        (``[N]`` float, or None) marks the rows that count in the batch
        statistics (padding rows of a partial batch do not).
      apply_eval: ``(params, stats, x) → logits``: the eval-mode forward.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    features: Callable[[Params, jax.Array], jax.Array]
    spec: Any
    init_stats: Callable[[], Stats]
    apply_train: Callable[..., tuple[jax.Array, Stats]]
    apply_eval: Callable[[Params, Stats, jax.Array], jax.Array]


def stateless_model(init, apply, features, spec) -> Model:
    """A `Model` of a network without running statistics."""

    def apply_train(params, stats, x, mask=None):
        return apply(params, x), stats

    def apply_eval(params, stats, x):
        return apply(params, x)

    return Model(init, apply, features, spec, dict, apply_train, apply_eval)


def pure_model(build: Callable[[nnx.Rngs], nnx.Module], spec) -> Model:
    """Converts the NNX module ``build(rngs)`` into a `Model`.

    The module's ``__call__(x, *, train, mask)`` and ``features(x, *, train,
    mask)`` take the mode; its `nnx.BatchStat` variables are the running
    statistics, updated in place in train mode.
    """
    abstract = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    graphdef, _, stats_shape = nnx.split(abstract, nnx.Param, nnx.BatchStat)
    initial = _initial_stats(stats_shape.to_pure_dict())

    def init(key: jax.Array) -> Params:
        return nnx.split(build(nnx.Rngs(key)), nnx.Param, nnx.BatchStat)[1].to_pure_dict()

    def init_stats() -> Stats:
        return jax.tree.map(jnp.asarray, initial)

    def apply_train(params, stats, x, mask=None):
        module = nnx.merge(graphdef, params, stats)
        logits = module(x, train=True, mask=mask)
        return logits, nnx.state(module, nnx.BatchStat).to_pure_dict()

    def apply_eval(params, stats, x):
        return nnx.merge(graphdef, params, stats)(x, train=False, mask=None)

    def apply(params, x):
        return apply_train(params, init_stats(), x)[0]

    def features(params, x):
        return nnx.merge(graphdef, params, init_stats()).features(x, train=True, mask=None)

    return Model(init, apply, features, spec, init_stats, apply_train, apply_eval)


def _initial_stats(shapes: dict) -> dict:
    """Running means 0 and variances 1 (PyTorch's), for a pure dict of shapes."""

    def fill(path, leaf):
        value = 0.0 if getattr(path[-1], "key", None) == "mean" else 1.0
        return jnp.full(leaf.shape, value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def num_params(params: Params) -> int:
    """The number of trainable scalars of a parameter pytree."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(params))
