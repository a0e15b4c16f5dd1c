"""Named random streams: one root key per run seed, split once by stage name.

Every stage of a run draws from its own stream,
``fold_in(key(seed), crc32(name))``, instead of from ``key(seed + offset)``:
with offsets, seed 0's distillation key was seed 1's expert key, so runs with
different seeds shared randomness. A stage that needs several keys splits or
folds its stream further (by expert, by round, by step).

Example:
  >>> experts_key = stream(seed, "experts")
  >>> rng = numpy_rng(seed, "init")   # numpy draws (shuffles, subsets)
"""

from __future__ import annotations

import zlib

import jax
import numpy as np

# The stages of a run; a name outside this list is refused, so that a typo
# cannot silently alias another stage's stream.
STREAMS = (
    "subset",  # the stratified training subset (`max_train`)
    "validation",  # the noisy validation split (`val_fraction`)
    "trust",  # TAD referees / the small-loss warm start
    "experts",  # expert inits, data order and augmentation
    "init",  # the distilled set's real-image initialisation
    "distill",  # the distillation iterations
    "eval",  # the evaluated networks
    "baseline",  # the baselines' networks
    "baseline-subset",  # the random-subset baseline's picks
)


def _stream_id(name: str) -> int:
    if name not in STREAMS:
        raise ValueError(f"unknown random stream {name!r}; known: {', '.join(STREAMS)}")
    return zlib.crc32(name.encode())


def stream(seed: int, name: str) -> jax.Array:
    """The typed PRNG key of stage `name` in the run seeded `seed`."""
    return jax.random.fold_in(jax.random.key(seed), _stream_id(name))


def numpy_rng(seed: int, name: str) -> np.random.Generator:
    """A numpy generator seeded from `stream(seed, name)` (host-side shuffles)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(stream(seed, name))))
