"""Test-wide JAX settings (4 simulated CPU devices, strict numerics) and shared data."""

import jax
import numpy as np
import pytest

# Must run before any JAX backend starts: the multi-device tests shard over
# these simulated devices; single-device code simply uses the first one.
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset, normalised: (x_train, y_train, x_test, y_test)."""
    from jaxdd.data import load_dataset, normalize

    ds = load_dataset("digits")
    mean, std = ds.channel_mean, ds.channel_std
    return (
        np.asarray(normalize(ds.x_train, mean, std)),
        ds.y_train,
        np.asarray(normalize(ds.x_test, mean, std)),
        ds.y_test,
    )


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """Share compiled programs between tests that build identical kernels."""
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    yield
