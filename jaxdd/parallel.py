"""Device meshes and shardings for the one-axis-one-transform design.

A leading "runs" axis (seeds, learning rates, experts, referees) is what
jaxdd spreads over devices: `jax.make_mesh` + `NamedSharding`, so the same
jitted, vmapped kernel runs on one device or many with no code change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

RUNS = "runs"
# The second axis of a multi-process mesh: copies of each part of the runs.
COPIES = "copies"


def runs_mesh(num_runs: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh whose ``"runs"`` axis is as many devices as evenly divide `num_runs`.

    Args:
      num_runs: length of the leading axis to shard.
      devices: devices to use (default: all).

    Returns:
      a 1-D mesh with the single axis ``"runs"``; 5 seeds on 4 devices use 1
      device, 8 seeds on 4 devices use 4. In a multi-process run
      (`jaxdd.hosts`) every process must hold a part of every array, so the
      mesh spans all devices: ``("runs", "copies")``, the runs split over a
      divisor of both counts and each part copied over ``copies`` (5 seeds on
      2 × 2 devices: 1 × 4; 6 images: 2 × 2).
    """
    devices = list(devices if devices is not None else jax.devices())
    # Auto axes: jit's partitioner places the gathers and collectives (the
    # Explicit default of `make_mesh` would ask every gather for an out-sharding).
    auto = jax.sharding.AxisType.Auto
    if len({d.process_index for d in devices}) > 1:
        count = max(d for d in range(1, len(devices) + 1) if num_runs % d == len(devices) % d == 0)
        shape = (count, len(devices) // count)
        return jax.make_mesh(shape, (RUNS, COPIES), devices=devices, axis_types=(auto, auto))
    count = max(d for d in range(1, len(devices) + 1) if num_runs % d == 0)
    return jax.make_mesh((count,), (RUNS,), devices=devices[:count], axis_types=(auto,))


def put(tree: Any, sharding: NamedSharding) -> Any:
    """`jax.device_put` of every leaf, also onto devices of other processes.

    In a multi-process run (`jaxdd.hosts`) a mesh spans every process's
    devices; a host value (or a process-local array: every process computes
    the same one) is placed by each process on its own devices.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda leaf: _put_global(leaf, sharding), tree)


def _put_global(leaf: Any, sharding: NamedSharding) -> Any:
    """One leaf onto a sharding that spans several processes.

    Every process holds the whole value (each loads the data, computes the
    same keys); each builds only the shards that live on its own devices.
    """
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.device_put(leaf, sharding)  # already global: a reshard
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _put_global(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def shard_runs(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf with its leading axis split over the ``runs`` axis."""
    return put(tree, NamedSharding(mesh, PartitionSpec(RUNS)))


def split_leading(tree: Any, size: int, mesh: Mesh) -> Any:
    """Leaves whose leading axis has `size` split over the runs axis; others replicated.

    A distilled set's images (and whatever per-image state goes with them)
    are split this way; `jax.jit` then partitions the work on them (GSPMD).
    Needs `size` divisible by the mesh size (`runs_mesh(size)` picks one).
    """
    split = NamedSharding(mesh, PartitionSpec(RUNS))
    whole = NamedSharding(mesh, PartitionSpec())

    def place(x):
        sharded = getattr(x, "ndim", 0) >= 1 and x.shape[0] == size
        return put(x, split if sharded else whole)

    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf whole on every device of `mesh`."""
    return put(tree, NamedSharding(mesh, PartitionSpec()))


def map_runs(
    fn: Callable, in_axes: tuple, *, vectorize: bool, donate: tuple[int, ...] = ()
) -> Callable:
    """``fn`` over a leading runs axis: one jitted vmap, or a loop of one jitted fn.

    Both give the same results (the loop is what `vmap` means); which one is
    faster depends on the backend (`jaxdd.ops.loops.vectorize_runs`). In loop
    mode the runs are sliced out of, and stacked back into, their arrays, so
    callers always see stacked ``[R, ...]`` inputs and outputs.

    Args:
      fn: a function of one run.
      in_axes: per positional argument, 0 (mapped over runs) or None (shared).
      vectorize: vmap (True) or loop (False).
      donate: positions of the arguments whose buffers are donated (vmap mode).
    """
    if vectorize:
        return jax.jit(jax.vmap(fn, in_axes=in_axes), donate_argnums=donate)
    single = jax.jit(fn)

    def looped(*args):
        mapped = [a for a, ax in zip(args, in_axes, strict=True) if ax == 0]
        runs = len(jax.tree.leaves(mapped[0])[0])
        outs = []
        for r in range(runs):
            call = [
                jax.tree.map(lambda v, r=r: v[r], a) if ax == 0 else a
                for a, ax in zip(args, in_axes, strict=True)
            ]
            outs.append(single(*call))
        return jax.tree.map(lambda *vs: jax.numpy.stack(vs), *outs)

    return looped
