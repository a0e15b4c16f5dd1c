import jax
import jax.numpy as jnp
import numpy as np

from jaxdd import parallel


def test_runs_mesh_uses_devices_that_divide_the_runs():
    assert parallel.runs_mesh(8).devices.size == 4
    assert parallel.runs_mesh(6).devices.size == 3
    assert parallel.runs_mesh(5).devices.size == 1


def test_shard_runs_splits_the_leading_axis():
    mesh = parallel.runs_mesh(8)
    x = parallel.shard_runs(jnp.arange(16.0).reshape(8, 2), mesh)
    assert len(x.sharding.device_set) == 4
    assert x.addressable_shards[0].data.shape == (2, 2)


def test_map_runs_loop_equals_vmap():
    def fn(w, x):
        return jnp.tanh(x @ w), jnp.sum(w)

    w = jax.random.normal(jax.random.key(0), (3, 4, 2))
    x = jnp.ones((5, 4))
    a = parallel.map_runs(fn, (0, None), vectorize=True)(w, x)
    b = parallel.map_runs(fn, (0, None), vectorize=False)(w, x)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6)
    assert a[0].shape == (3, 5, 2)
