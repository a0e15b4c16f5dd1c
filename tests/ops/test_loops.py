"""`jaxdd.ops.loops`: the one loop helper keeps `lax.scan`'s semantics on every path."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.ops import loops


def _body(carry, x):
    """A carry that depends on the order of the steps, and a per-step output."""
    new = jnp.sin(carry) * 1.5 + x
    return new, new * x


XS = jnp.linspace(-1.0, 1.0, 7)


@pytest.mark.parametrize("unroll", [None, True, 1, 3])
def test_scan_equals_lax_scan(unroll):
    expected = jax.lax.scan(_body, jnp.float32(0.3), XS)
    got = jax.jit(lambda c, xs: loops.scan(_body, c, xs, unroll=unroll))(jnp.float32(0.3), XS)
    chex.assert_trees_all_close(got, expected, rtol=1e-6)


def test_one_step_scan_calls_the_body_and_keeps_the_stacked_output():
    carry, ys = loops.scan(_body, jnp.float32(0.3), XS[:1], unroll=True)
    expected = jax.lax.scan(_body, jnp.float32(0.3), XS[:1])
    chex.assert_trees_all_close((carry, ys), expected, rtol=1e-6)
    chex.assert_shape(ys, (1,))
    # No loop primitive is left in the program.
    jaxpr = str(jax.make_jaxpr(lambda c: loops.scan(_body, c, XS[:1], unroll=True))(0.3))
    assert "scan[" not in jaxpr and "while[" not in jaxpr


def test_gradients_through_scan_match_lax_scan():
    def total(c, f):
        return jnp.sum(f(_body, c, XS)[1])

    ours = jax.grad(total)(0.3, lambda *a: loops.scan(*a))
    ref = jax.grad(total)(0.3, jax.lax.scan)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_cpu_unrolls_and_accelerator_paths_roll():
    def unroll_param():
        jaxpr = str(jax.make_jaxpr(lambda c: loops.scan(_body, c, XS))(0.3))
        return [line.strip() for line in jaxpr.splitlines() if "unroll=" in line]

    assert loops.on_cpu() and not loops.vectorize_runs()
    assert unroll_param() == [f"unroll={len(XS)}"]  # every step unrolled
    with loops.accelerator_paths():
        assert not loops.on_cpu() and loops.vectorize_runs()
        assert unroll_param() == ["unroll=1"]  # a rolled loop
        assert loops.default_chunk(10_000) == 500
    assert loops.on_cpu()  # restored on exit
    assert loops.default_chunk(10_000) == 2 and loops.default_chunk(1) == 1


def test_accelerator_paths_is_restored_after_an_error():
    with pytest.raises(RuntimeError), loops.accelerator_paths():
        raise RuntimeError
    assert loops.on_cpu()


def test_a_jitted_scan_traces_once_per_shape():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(c, xs):
        return loops.scan(_body, c, xs)

    for seed in range(3):
        run(jnp.float32(seed), XS + seed)
    chex.clear_trace_counter()
