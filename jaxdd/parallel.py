"""Device meshes and shardings for the one-axis-one-transform design.

A leading "runs" axis (seeds, learning rates, experts, referees) is what
jaxdd spreads over devices: `jax.make_mesh` + `NamedSharding`, so the same
jitted, vmapped kernel runs on one device or many with no code change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
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
    return Mesh(np.asarray(devices[:count]), (RUNS,))


def shard_runs(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf with its leading axis split over the ``runs`` axis."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(RUNS)))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf whole on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
