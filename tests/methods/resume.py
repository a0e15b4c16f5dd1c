"""Shared by the methods' resume tests: run the driver loop in a directory, compare states."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd import report
from jaxdd.checkpoint import Checkpointer
from jaxdd.distill import distill_loop


def loop(model, run_config, state, resources, path):
    """`distill_loop` in `path`, resuming from its latest checkpoint if there is one."""
    with Checkpointer(path / "ck", max_to_keep=2) as ckpt:
        if ckpt.latest_step() is not None:
            state = ckpt.restore(state)
        return distill_loop(
            model, run_config, state, resources, ckpt, report.RunDir.at(path), False
        )


def assert_same_state(a, b) -> None:
    """Every leaf equal, PRNG keys by their data."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(x, y)
