"""Test-wide JAX settings (4 simulated CPU devices, strict numerics) and shared data."""

import json
import os
import pathlib

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
    """Share compiled programs between tests that build identical kernels.

    Under pytest-xdist the workers share one cache directory (beside their
    own temporary roots), so a kernel compiled by one is read by the other.
    A size bound turns on JAX's file lock around every read and write, which
    makes the sharing safe between processes.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    cache = root / "xla_cache"
    cache.mkdir(exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    yield


# Seconds each test file took on a 2-core CPU (`make durations` refreshes it).
_DURATIONS = pathlib.Path(__file__).with_name("durations.json")


def pytest_collection_modifyitems(config, items):
    """Longest test files first, so that no long file starts last on a worker.

    `make test` hands whole files to two workers in collection order
    (``--dist loadfile --no-loadscope-reorder``); longest-first is the greedy
    schedule that keeps the workers' last files short. A file missing from
    ``durations.json`` counts one second per test. Within a file, the order
    stays as written.
    """
    known = json.loads(_DURATIONS.read_text()) if _DURATIONS.exists() else {}
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    cost = {f: known.get(f, float(len(tests))) for f, tests in files.items()}
    items[:] = [item for f in sorted(files, key=lambda f: -cost[f]) for item in files[f]]
