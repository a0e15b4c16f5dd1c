"""Named random streams: no two (seed, stage) pairs share a key, and the drivers use them."""

import jax
import numpy as np
import pytest

from jaxdd import rng


def _data(key) -> tuple[int, ...]:
    return tuple(np.asarray(jax.random.key_data(key)).ravel().tolist())


def test_different_seeds_and_stages_share_no_stream():
    seen = {}
    for seed in range(64):
        for name in rng.STREAMS:
            key = rng.stream(seed, name)
            # The first keys each stage splits off (experts, eval seeds, ...) too.
            for sub in [key, *jax.random.split(key, 8)]:
                data = _data(sub)
                assert data not in seen, (seed, name, seen.get(data))
                seen[data] = (seed, name)


def test_streams_are_reproducible_and_named():
    assert _data(rng.stream(3, "experts")) == _data(rng.stream(3, "experts"))
    a = rng.numpy_rng(3, "init").permutation(100)
    np.testing.assert_array_equal(a, rng.numpy_rng(3, "init").permutation(100))
    assert not np.array_equal(a, rng.numpy_rng(4, "init").permutation(100))
    with pytest.raises(ValueError, match="unknown random stream"):
        rng.stream(0, "expert")


def test_no_driver_derives_keys_from_offset_seeds():
    import pathlib
    import re

    root = pathlib.Path(__file__).parents[1] / "jaxdd"
    offsets = re.compile(r"random\.key\([^)]*\+|default_rng\(\s*seed\s*\+")
    bad = [str(p) for p in root.rglob("*.py") if offsets.search(p.read_text())]
    assert bad == []
