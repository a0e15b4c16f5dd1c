"""Multi-host runs on JAX's multi-controller runtime; process 0 does the I/O.

Every host runs the same command. `initialize` joins the processes
(`jax.distributed.initialize`), after which `jax.devices()` lists the devices
of every host, `jaxdd.parallel.runs_mesh` spans them and each jitted program
runs as one SPMD program over all of them: nothing in the kernels changes.
What differs between processes is I/O, and three rules keep them in step:

- process 0 alone writes: run directories, logs, pictures, locks and
  progress bars (`is_main`); orbax checkpoints are written collectively,
  every process its own shards, process 0 the metadata;
- every decision that reads the filesystem (a cache hit, the step to resume
  from, the name of a new run directory, a refusal) is made by process 0 and
  broadcast (`decide`), so every process takes the same branch and reaches
  the same collectives in the same order;
- an array pulled to the host is first gathered from every process that
  holds a part of it (`fetch`).

A single process (the default) skips all of this: `decide` just calls its
function and `fetch` is `np.asarray`.

Run directories, expert caches and checkpoints must be on a filesystem every
host sees (NFS, GCS through gcsfuse), as orbax's multi-host checkpoints need.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from jaxdd.errors import ConfigError, JaxddError

T = TypeVar("T")

# Environment variables by which a cluster announces several processes, for
# `initialize(auto=True)`'s message when detection fails.
_CLUSTER_HINTS = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES")


class ProcessError(JaxddError):
    """Process 0 refused or failed; every other process stops with its message."""


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
) -> bool:
    """Joins this process to a multi-process run (call before any other JAX call).

    With an explicit `coordinator_address` (``host:port`` of process 0) the
    other two are needed too; with ``auto=True`` and no address JAX detects
    the cluster (Cloud TPU pod slices, SLURM, Open MPI, GKE). With neither,
    nothing happens: a single process.

    On the CPU backend the processes' collectives go through gloo.

    Returns:
      whether a multi-process runtime was initialised.

    Raises:
      ConfigError: incomplete flags, or JAX could not join the processes.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if all(v is None for v in explicit) and not auto:
        return False
    if coordinator_address is not None and None in explicit:
        raise ConfigError(
            "--coordinator-address needs --num-processes and --process-id too (the same "
            "address and count on every host, process ids 0 … N-1)"
        )
    if None not in (num_processes, process_id) and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id {process_id} is not in 0 … {num_processes - 1}")
    import jax

    # Only the CPU client reads it; GPU and TPU collectives are their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (ValueError, RuntimeError) as err:
        hints = [name for name in _CLUSTER_HINTS if name in os.environ]
        found = f" (found {', '.join(hints)})" if hints else " (no cluster found)"
        raise ConfigError(
            f"could not join the processes{found}: {' '.join(str(err).split())}; give "
            "--coordinator-address HOST:PORT --num-processes N --process-id I on every host"
        ) from None
    return True


def count() -> int:
    """How many processes the run has (1 unless `initialize` joined several).

    Neither imports JAX nor starts its backend when no runtime was joined.
    """
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return 1
    return jax.process_count()


def is_main() -> bool:
    """Whether this is process 0, the one that writes files and shows progress."""
    return count() == 1 or sys.modules["jax"].process_index() == 0


def decide(fn: Callable[[], T]) -> T:
    """`fn()` as process 0 computes it, on every process.

    `fn` runs on process 0 only; its result (JSON-able: bools, numbers,
    strings, lists, dicts) is broadcast to the others. If it raises, the
    others raise `ProcessError` with its message (a tuple comes back as a
    list on the other processes).
    """
    if count() == 1:
        return fn()
    failure: BaseException | None = None
    text = ""
    if is_main():
        try:
            text = json.dumps({"value": fn()})
        except Exception as err:  # shared, then raised again on process 0
            failure = err
            text = json.dumps({"error": " ".join(str(err).split()) or type(err).__name__})
    message = json.loads(broadcast_text(text))
    if failure is not None:
        raise failure
    if "error" in message:
        raise ProcessError(f"process 0 stopped: {message['error']}")
    return message["value"]


def broadcast_text(text: str) -> str:
    """Process 0's `text` on every process (collective: every process calls it)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(text.encode(), np.uint8) if is_main() else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    padded = np.zeros(max(size, 1), np.uint8)
    padded[: data.size] = data
    out = np.asarray(multihost_utils.broadcast_one_to_all(padded))
    return out[:size].tobytes().decode()


def fetch(tree: Any) -> Any:
    """Every array leaf of `tree` as a whole numpy array on this host.

    A leaf split over devices of several processes is gathered from them
    (collective: every process calls `fetch` on the same tree); other leaves
    are copied to host as they are.
    """
    import jax

    if count() == 1:
        return jax.tree.map(_to_host, tree)
    from jax.experimental import multihost_utils

    def whole(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                impl = jax.random.key_impl(leaf)
                data = multihost_utils.process_allgather(jax.random.key_data(leaf), tiled=True)
                return jax.random.wrap_key_data(np.asarray(data), impl=impl)
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return _to_host(leaf)

    return jax.tree.map(whole, tree)


def _to_host(leaf: Any) -> Any:
    """A numpy copy of `leaf`; a PRNG key stays a key."""
    import jax

    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return leaf
    return np.asarray(leaf)


def sync(name: str) -> None:
    """Waits until every process reaches the barrier `name` (no-op for one process)."""
    if count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
