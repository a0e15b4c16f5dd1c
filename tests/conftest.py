"""Test-wide JAX settings: 4 simulated CPU devices, strict numerics."""

import jax

# Must run before any JAX backend starts: the multi-device tests shard over
# these simulated devices; single-device code simply uses the first one.
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")
