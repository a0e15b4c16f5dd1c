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

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def on_cpu() -> bool:
    """Whether jitted work runs on XLA:CPU (the loop trap applies)."""
    return jax.default_backend() == "cpu"


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
    """Whether a runs axis should be vmapped (accelerators) or looped (CPU)."""
    return not on_cpu()


def default_chunk(num_steps: int, *, cpu_chunk: int = 4, accel_chunk: int = 500) -> int:
    """Steps per jitted call of a driver loop: short on CPU (each is unrolled)."""
    return max(1, min(num_steps, cpu_chunk if on_cpu() else accel_chunk))
