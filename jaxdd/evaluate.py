"""Train fresh networks on a (distilled or real) set and measure clean test accuracy.

Every number jaxdd reports goes through `train_and_evaluate` (docs/algorithms.md
§0.5): all seeds (× learning rates) are one leading axis, trained at once by
a vmapped, jitted kernel and sharded over the device mesh; the accuracy is
that of the FINAL network on the clean test set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd import hosts, parallel, training
from jaxdd.models.base import Model, Params
from jaxdd.ops.train import Preprocess, TrainConfig


def sgd_protocol(**overrides) -> TrainConfig:
    """Trajectory-matching evaluation: SGD 0.9, wd 5e-4, ×0.1 at half, DSA."""
    return dataclasses.replace(TrainConfig(), **overrides)


def dance_protocol(**overrides) -> TrainConfig:
    """DANCE/IDC evaluation: 1500 epochs, SGD 0.01, momentum 0.9, wd 5e-4, ×0.2 at
    epochs 1000 and 1250 (2/3 and 5/6), DSA + CutMix (p 0.5, β 1).

    DSA draws from colour, crop, flip, scale and rotate: the IDC trainer drops
    cutout from its strategy whenever CutMix is on (and flip for MNIST/SVHN,
    whose digits flipping changes; pass ``dsa_families`` for those).
    """
    base = TrainConfig(
        epochs=1500,
        lr_milestones=(2 / 3, 5 / 6),
        lr_gamma=0.2,
        dsa=True,
        dsa_families=("color", "crop", "flip", "scale", "rotate"),
        cutmix=0.5,
    )
    return dataclasses.replace(base, **overrides)


def adam_protocol(**overrides) -> TrainConfig:
    """RCIG evaluation: Adam 1e-4, 500 warmup steps + cosine, MSE, no decay."""
    base = TrainConfig(
        optimizer="adam", lr=1e-4, weight_decay=0.0, loss="mse", lr_milestones=(), dsa=False
    )
    return dataclasses.replace(base, **overrides)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Clean-test accuracies of the trained networks.

    Attributes:
      accuracies: ``[L, S]`` final test accuracy per learning rate and seed.
      lrs: the L learning rates.
      history: one dict per evaluation point (epoch, mean train loss,
        ``[L, S]`` test accuracy); the last one is the final accuracy.
      val_accuracies: ``[L, S]`` final accuracy on the noisy validation split
        against its GIVEN labels (None without one): the model-selection
        criterion. Under symmetric noise of rate r < (C−1)/C it is the
        affine, increasing ``(1 − r − r/(C−1))·clean + r/(C−1)`` of the clean
        accuracy on that split, so it ranks settings as clean accuracy would.
    """

    accuracies: np.ndarray
    lrs: tuple[float, ...]
    history: list[dict]
    val_accuracies: np.ndarray | None = None

    def summary(self) -> dict:
        """The summary fields of a single-lr result: final test accuracy, and validation."""
        fields = {
            "accuracy_mean": self.mean,
            "accuracy_std": self.std,
            "accuracies": self.accuracies[self._lr_index(None)].tolist(),
        }
        if self.val_accuracies is not None:
            val = self.val_accuracies[self._lr_index(None)]
            fields |= {
                "val_accuracy_mean": float(val.mean()),
                "val_accuracy_std": float(val.std()),
                "val_accuracies": val.tolist(),
            }
        return fields

    def at_lr(self, lr: float) -> np.ndarray:
        """``[S]`` final test accuracies of the networks trained at learning rate `lr`."""
        return self.accuracies[self._lr_index(lr)]

    @property
    def mean(self) -> float:
        """Mean final accuracy over the seeds; only for a single learning rate."""
        return float(self.accuracies[self._lr_index(None)].mean())

    @property
    def std(self) -> float:
        """Std of the final accuracy over the seeds; only for a single learning rate."""
        return float(self.accuracies[self._lr_index(None)].std())

    def best_epoch(self, lr: float | None = None) -> dict:
        """The history entry with the highest mean test accuracy at `lr`.

        This is test-set model selection (what the references report); label
        it as such wherever it is printed. `lr` may be omitted for a single
        learning rate.
        """
        i = self._lr_index(lr)
        return max(self.history, key=lambda h: float(np.mean(h["test_accuracy"][i])))

    def _lr_index(self, lr: float | None) -> int:
        """The row of `accuracies` of `lr` (None: the only learning rate)."""
        if lr is None:
            if len(self.lrs) != 1:
                raise ValueError(
                    f"this result holds {len(self.lrs)} learning rates {self.lrs}: a mean over "
                    "all of them means nothing; use at_lr(lr) or accuracies[i] (one row per lr)"
                )
            return 0
        if lr not in self.lrs:
            raise ValueError(f"no networks were trained at lr {lr}: the lrs are {self.lrs}")
        return self.lrs.index(lr)


def train_and_evaluate(
    model: Model,
    x: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    x_test: jax.typing.ArrayLike,
    y_test: jax.typing.ArrayLike,
    config: TrainConfig,
    *,
    key: jax.Array,
    lrs: Sequence[float] | None = None,
    eval_every: int | None = None,
    preprocess: Preprocess | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    vectorize: bool | None = None,
    on_eval: Callable[[dict], None] | None = None,
    label: str = "evaluate",
    validation: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> tuple[EvalResult, Params]:
    """Trains ``num_seeds × len(lrs)`` fresh networks on (x, targets) and tests them.

    Args:
      model: the network (`make_convnet`, `jaxdd.models.zoo.make_network`).
      x: ``[N, H, W, C]`` training images (float, or mapped by `preprocess`).
      targets: ``[N, num_classes]`` float targets (one-hot, soft, or MSE labels).
      x_test, y_test: ``[M, H, W, C]`` clean test images and ``[M] int`` labels.
      config: the training protocol.
      key: seeds the S networks; seed s gets the same init for every lr.
      lrs: learning rates to sweep (vmapped); default ``(config.lr,)``.
      eval_every: also test every this many epochs (for curves / best-epoch).
      preprocess: pure map applied to every gathered batch (e.g. uint8 → float).
      devices: devices to shard the seed×lr axis over (default: all).
      progress: show a tqdm bar.
      vectorize: vmap the runs (True) or loop over them (False); default
        by backend (`jaxdd.ops.loops.vectorize_runs`). Same results.
      on_eval: called with each history entry as it is made (metrics logging).
      label: the progress bar's label.
      validation: ``([V, H, W, C], [V] int)`` a held-out split and its given
        (noisy) labels; the final networks' accuracy on it is
        `EvalResult.val_accuracies`.

    Returns:
      the `EvalResult` and the trained params, stacked ``[L·S, ...]``.
    """
    lrs = tuple(float(v) for v in (lrs if lrs is not None else (config.lr,)))
    seed_keys = jax.random.split(key, config.num_seeds)
    keys = jnp.concatenate([seed_keys] * len(lrs))
    lr_axis = jnp.repeat(jnp.asarray(lrs, jnp.float32), config.num_seeds)
    runner = training.Runner(
        model, x, targets, config, preprocess=preprocess, devices=devices, vectorize=vectorize
    )
    initial = runner.init(keys, lr_axis)
    x_test, y_test = parallel.replicate((x_test, y_test), runner.mesh)
    history: list[dict] = []
    state = initial
    for epoch, state, loss in runner.run(
        initial, period=eval_every, progress=progress, label=label
    ):
        acc = hosts.fetch(runner.test_accuracy(state.params, state.stats, x_test, y_test))
        acc = acc.reshape(len(lrs), -1)
        entry = {"epoch": epoch, "train_loss": loss, "test_accuracy": acc.tolist()}
        history.append(entry)
        if on_eval is not None:
            on_eval(entry)
    val = None
    if validation is not None:
        x_val, y_val = parallel.replicate(tuple(validation), runner.mesh)
        val = runner.test_accuracy(state.params, state.stats, x_val, y_val)
        val = hosts.fetch(val).reshape(len(lrs), -1)
    result = EvalResult(np.asarray(history[-1]["test_accuracy"]), lrs, history, val)
    return result, state.params
