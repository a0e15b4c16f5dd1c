"""The driver that trains a runs axis (seeds, lrs, experts) of fresh networks.

Kernels come from `jaxdd.ops.train`; this module owns the Python loop over
jitted chunks (progress bar, periodic hand-back to the caller for testing,
snapshots or checkpoints) and where the runs go (`jaxdd.parallel`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdd import hosts, parallel
from jaxdd.models.base import Model
from jaxdd.ops import loops
from jaxdd.ops.train import (
    Preprocess,
    TrainConfig,
    TrainState,
    accuracy,
    init_state,
    make_train_step,
    steps_per_epoch,
)

# Folded into the first run's key for the shared DSA-family stream.
_FAMILY_STREAM = 0x5EED


@functools.lru_cache(maxsize=16)
def _kernels(
    model, config, total_steps, chunk, preprocess, vectorize, cpu_paths, per_run_x, per_run
):
    """The jitted (init, run_chunk, test_accuracy) of one training setup.

    Cached so that repeated evaluations of the same setup (seeds of a sweep,
    successive distilled sets) reuse one compilation; `cpu_paths` keys the
    loop structure (`jaxdd.ops.loops.on_cpu`), `per_run_x` and `per_run`
    whether the images and the targets have a runs axis. `run_chunk` donates its state when
    vectorised: it may only be given a state that nobody else holds
    (`Runner.run`).
    """
    step = make_train_step(model, config, total_steps, preprocess)

    def run(state: TrainState, start, stop, x, targets, family_key):
        def body(s, i):
            new, loss = step(s, i, x, targets, family_key)
            active = i < stop
            s = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, s)
            return s, jnp.where(active, loss, jnp.nan)

        return loops.scan(body, state, start + jnp.arange(chunk))

    def test_accuracy(params, stats, x_test, y_test):
        return accuracy(
            model,
            params,
            x_test,
            y_test,
            batch_size=config.eval_batch,
            preprocess=preprocess,
            stats=stats,
        )

    init = jax.jit(jax.vmap(lambda k, lr: init_state(model, config, lr, key=k)))
    axes = (0, None, None, 0 if per_run_x else None, 0 if per_run else None, None)
    run_chunk = parallel.map_runs(run, axes, vectorize=vectorize, donate=(0,))
    test_acc = parallel.map_runs(test_accuracy, (0, 0, None, None), vectorize=vectorize)
    return init, run_chunk, test_acc


def _kernel_setup(config: TrainConfig, total_steps: int) -> tuple[TrainConfig, int]:
    """``(config, total_steps)`` with what the compiled step does not read cleared.

    The step reads the training length only through the lr schedule: with a
    constant lr (SGD without milestones — experts, TAD referees) runs of any
    length share one compilation (a referee warm start and its rounds, the
    experts of different epoch counts). The base lr is a traced state value
    (a distilled set's learned lr never recompiles), the number of runs is
    the number of keys, and the epoch length only drives the host loop.
    """
    scheduled = config.optimizer != "sgd" or bool(config.lr_milestones)
    config = dataclasses.replace(config, lr=0.0, num_seeds=1, epoch_steps=None)
    return (config, total_steps) if scheduled else (dataclasses.replace(config, epochs=1), 0)


def _chunk(total_steps: int) -> int:
    """Steps per compiled chunk (`jaxdd.ops.loops.default_chunk`'s length).

    Fixed on CPU (a short run's spare steps are masked), so runs of any
    length share it; on accelerators the power of two covering the run, at
    most the full chunk, so short runs share it too and waste < 2x.
    """
    cap = loops.default_chunk(1 << 30)
    if loops.on_cpu():
        return cap
    return min(cap, 1 << max(0, total_steps - 1).bit_length())


def _own_copy(tree):
    """Fresh buffers with the values (and shardings) of `tree`'s arrays."""
    return jax.tree.map(_copy, tree)


def _copy(a: jax.Array) -> jax.Array:
    """`a` in fresh buffers; an array spanning several processes copied shard by shard."""
    if a.is_fully_addressable:
        return jax.device_put(a, a.sharding, may_alias=False)
    shards = [jax.device_put(s.data, s.device, may_alias=False) for s in a.addressable_shards]
    return jax.make_array_from_single_device_arrays(a.shape, a.sharding, shards)


class Runner:
    """Trains R networks (a leading runs axis) on one (x, targets) set, or one per run.

    Args:
      model: the network.
      x: ``[N, H, W, C]`` training images shared by the runs, or ``[R, N, H, W, C]``,
        one set per run (then `targets` has a runs axis too: e.g. the distilled
        sets of a sweep's points, `jaxdd.sweep`).
      targets: ``[N, num_classes]`` float targets shared by the runs, or
        ``[R, N, num_classes]``, one set per run (e.g. TAD's cross-fitted
        referees, each labelled on its own fold; an all-zero row is
        unlabelled, `jaxdd.ops.train.make_train_step`).
      config: the training protocol (how many runs there are is the number
        of keys given to `init`; `train_and_evaluate` and `train_experts`
        pass `config.num_seeds` keys).
      preprocess: pure map applied to every gathered batch.
      devices: devices to shard the runs over (default: all).
      vectorize: vmap (True) or loop (False) over runs; default by backend.
    """

    def __init__(
        self,
        model: Model,
        x: jax.typing.ArrayLike,
        targets: jax.typing.ArrayLike,
        config: TrainConfig,
        *,
        preprocess: Preprocess | None = None,
        devices: Sequence[jax.Device] | None = None,
        vectorize: bool | None = None,
    ):
        self.config = config
        self.devices = devices
        self.per_run_x = np.ndim(x) == 5
        self.per_run_targets = np.ndim(targets) == 3
        if self.per_run_x and not self.per_run_targets:
            raise ValueError("per-run images [R, N, H, W, C] need per-run targets [R, N, C]")
        self.steps_per_epoch = steps_per_epoch(config, int(np.shape(x)[-4]))
        self.total_steps = config.epochs * self.steps_per_epoch
        self.chunk = _chunk(self.total_steps)
        self.vectorize = loops.vectorize_runs() if vectorize is None else vectorize
        self._x, self._targets = x, targets
        self.mesh = None  # set by `_place`
        self._init, self._run_chunk, self.test_accuracy = _kernels(
            model,
            *_kernel_setup(config, self.total_steps),
            self.chunk,
            preprocess,
            self.vectorize,
            loops.on_cpu(),
            self.per_run_x,
            self.per_run_targets,
        )

    def init(self, keys: jax.Array, lrs: jax.Array) -> TrainState:
        """Fresh states for ``keys [R]`` and base learning rates ``lrs [R]``, sharded."""
        self._place(len(keys))
        keys, lrs = parallel.shard_runs((keys, lrs), self.mesh)
        # Every leaf split over the runs (jit may leave constant leaves such
        # as zero momenta replicated), so the chunks see one input sharding
        # and compile once.
        return parallel.shard_runs(self._init(keys, lrs), self.mesh)

    def _place(self, num_runs: int) -> None:
        """The runs mesh, and the data replicated over it (once per Runner).

        A Runner that continues a state trained elsewhere (never `init`) places
        its data as one that started it, so both compile the same program.
        """
        if self.mesh is None:
            if self.per_run_targets and len(self._targets) != num_runs:
                raise ValueError(
                    f"per-run targets have {len(self._targets)} runs, the state {num_runs}: "
                    "give one [N, C] target set per run"
                )
            self.mesh = parallel.runs_mesh(num_runs, self.devices)
            place_x = parallel.shard_runs if self.per_run_x else parallel.replicate
            self._x = place_x(self._x, self.mesh)
            place = parallel.shard_runs if self.per_run_targets else parallel.replicate
            self._targets = place(self._targets, self.mesh)

    def run(
        self,
        state: TrainState,
        *,
        period: int | None = None,
        start_epoch: int = 0,
        progress: bool = True,
        label: str = "train",
        family_key: jax.Array | None = None,
    ) -> Iterator[tuple[int, TrainState, float]]:
        """Trains from `start_epoch`, yielding ``(epoch, state, mean loss)`` every `period` epochs.

        The last yield is at ``config.epochs``. Stepping is deterministic in
        the state and the step index, so a run resumed from a yielded state
        continues exactly as it would have. Yielded states (and `state`
        itself) stay valid: only intermediate states that were never handed
        out are donated to the next chunk.

        `family_key` is shared by all R runs: it chooses each step's DSA
        family, so that vmapped runs run one family per step
        (`jaxdd.ops.train.make_train_step`). Default: a stream folded out of
        the first run's key, which training never changes, so a resumed run
        draws the same families.
        """
        self._place(len(state.lr))
        if family_key is None:
            family_key = jax.random.fold_in(state.key[0], _FAMILY_STREAM)
        per_epoch, total = self.steps_per_epoch, self.total_steps
        span = (period or self.config.epochs) * per_epoch
        bar = tqdm(
            total=total,
            initial=start_epoch * per_epoch,
            disable=not progress,
            desc=label,
            unit="step",
            leave=False,
        )
        for seg_start in range(start_epoch * per_epoch, total, span):
            stop = min(seg_start + span, total)
            losses = []
            # The chunks donate their state: train on a copy of the one the
            # caller holds (the input, or the state yielded last).
            state = _own_copy(state) if self.vectorize else state
            for start in range(seg_start, stop, self.chunk):
                bounds = np.int32(start), np.int32(stop)  # traced, never baked in
                state, loss = self._run_chunk(state, *bounds, self._x, self._targets, family_key)
                losses.append(loss)
                bar.update(min(self.chunk, stop - start))
            losses = hosts.fetch(losses)  # [R, steps] chunks, gathered from every process
            yield stop // per_epoch, state, float(np.nanmean(np.concatenate(losses, axis=1)))
        bar.close()
