"""Device meshes and shardings for the one-axis-one-transform design.

A leading "runs" axis (seeds, learning rates, experts, referees) is what
jaxdd spreads over devices: `jax.make_mesh` + `NamedSharding`, so the same
jitted, vmapped kernel runs on one device or many with no code change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

RUNS = "runs"


def runs_mesh(num_runs: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over as many devices as evenly divide `num_runs`.

    Args:
      num_runs: length of the leading axis to shard.
      devices: devices to use (default: all).

    Returns:
      a mesh with the single axis ``"runs"``; 5 seeds on 4 devices use 1
      device, 8 seeds on 4 devices use 4.
    """
    devices = list(devices if devices is not None else jax.devices())
    count = max(d for d in range(1, len(devices) + 1) if num_runs % d == 0)
    # Auto axes: jit's partitioner places the gathers and collectives (the
    # Explicit default of `make_mesh` would ask every gather for an out-sharding).
    auto = (jax.sharding.AxisType.Auto,)
    return jax.make_mesh((count,), (RUNS,), devices=devices[:count], axis_types=auto)


def shard_runs(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf with its leading axis split over the ``runs`` axis."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(RUNS)))


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
        return jax.device_put(x, split if sharded else whole)

    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf whole on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


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
