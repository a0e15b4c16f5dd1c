"""The one helper every training / unrolled loop goes through.

XLA:CPU runs a convolution's weight gradient inside a loop body (`lax.scan`,
`fori_loop`, `while_loop`) one to two orders of magnitude slower than the
same ops unrolled (docs/architecture.md, "Known platform traps"; measured again
here: 4 SGD steps of a 64-channel conv, 6.4 s in `scan` vs 0.55 s unrolled).
GPUs and TPUs are not affected. So loops are `lax.scan` on accelerators and
fully unrolled scans of short chunks on CPU; drivers loop over chunks in
Python (where progress bars and checkpoints live anyway).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from jaxdd import hosts

# Set by `accelerator_paths`: take the accelerator code paths on any backend.
_FORCE_ACCELERATOR_PATHS = False


def on_cpu() -> bool:
    """Whether to take the CPU code paths: XLA:CPU, unless `accelerator_paths` is active."""
    return jax.default_backend() == "cpu" and not _FORCE_ACCELERATOR_PATHS


@contextlib.contextmanager
def accelerator_paths() -> Iterator[None]:
    """Within the block, trace what accelerators run: rolled scans, long chunks,
    vmapped runs, remat where a config leaves it to the backend.

    For tests on CPU (where the defaults loop and unroll instead); the
    results must equal the CPU paths'. Only functions traced inside the
    block are affected, so drivers key their kernel caches by `on_cpu()`.
    """
    global _FORCE_ACCELERATOR_PATHS
    before, _FORCE_ACCELERATOR_PATHS = _FORCE_ACCELERATOR_PATHS, True
    try:
        yield
    finally:
        _FORCE_ACCELERATOR_PATHS = before


def scan(
    f: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any = None,
    length: int | None = None,
    *,
    unroll: int | bool | None = None,
) -> tuple[Any, Any]:
    """`jax.lax.scan`, fully unrolled on CPU unless `unroll` is given.

    Semantics (and gradients) are exactly those of `lax.scan`; only the
    compiled loop structure changes.
    """
    if unroll is None:
        unroll = True if on_cpu() else 1
    steps = length if length is not None else len(jax.tree.leaves(xs)[0])
    if unroll is True and steps == 1:
        # XLA:CPU keeps a 1-trip scan as a loop even when "unrolled" (the trap
        # again: 2.5 s vs 0.09 s per ConvNet step measured here): call the body.
        carry, y = f(init, jax.tree.map(lambda a: a[0], xs))
        return carry, jax.tree.map(lambda a: jnp.asarray(a)[None], y)
    return jax.lax.scan(f, init, xs, length=length, unroll=unroll)


def vectorize_runs() -> bool:
    """Whether a runs axis should be vmapped (accelerators) or looped (CPU).

    Always vmapped in a multi-process run (`jaxdd.hosts`): a loop would slice
    one run out of an array that spans the processes, and XLA:CPU's
    cross-process collectives then lose step.
    """
    return not on_cpu() or hosts.count() > 1


def default_chunk(num_steps: int, *, cpu_chunk: int = 2, accel_chunk: int = 500) -> int:
    """Steps per jitted call of a driver loop: short on CPU (each is unrolled).

    Two on CPU: the unrolled chunk's compile time grows with its length,
    while one more host dispatch per two steps is far below a step's cost.
    """
    return max(1, min(num_steps, cpu_chunk if on_cpu() else accel_chunk))
