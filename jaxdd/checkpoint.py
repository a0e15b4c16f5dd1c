"""Save and resume long runs: a small wrapper over orbax's `CheckpointManager`.

Drivers (expert training, distillation loops) save their whole state every
`every` iterations and, when restarted, restore the latest step and carry on;
the result is identical to an uninterrupted run (ARCHITECTURE.md, principle 6).

Any pytree of arrays and numbers can be saved. It is stored flat, one array
per leaf, next to a JSON *layout* (each leaf's path, shape and dtype), and is
restored into the structure of a `like` pytree the caller supplies. This is
what lets states orbax cannot describe by itself come back unchanged: dicts
with integer keys (Flax NNX `nnx.List` params), NamedTuples (optax states)
and typed PRNG keys (stored as their raw `key_data`).

Each step is written by orbax into a temporary directory that is renamed (or
marked with a commit file on object stores) only once complete, so a run
killed mid-write never leaves a step that `latest_step` returns: resuming
simply picks the previous one. `save` blocks until the step is committed.

Example:
    with Checkpointer(workdir / "ckpt", every=100) as ckpt:
        state = init_state(config)
        start = ckpt.latest_step()
        if start is not None:
            state = ckpt.restore(state)
        for it in range((start or 0) + 1, config.iterations + 1):
            state = step(state)
            ckpt.save(it, state, metadata=dataclasses.asdict(config))
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxdd.errors import ConfigError

# Item names inside one step directory (orbax Composite items).
_STATE = "state"
_LAYOUT = "layout"
_METADATA = "metadata"
# Bumped if the on-disk layout ever changes, so old checkpoints are recognised.
_FORMAT = 1

_PY_SCALARS = (bool, int, float, complex)


def _is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _shape_dtype(path: str, leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an array, numpy/Python scalar or `jax.ShapeDtypeStruct`."""
    if isinstance(leaf, _PY_SCALARS):
        leaf = np.asarray(leaf)
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        raise TypeError(
            f"cannot checkpoint the leaf at {path} of type {type(leaf).__name__}: "
            "leaves must be arrays or numbers"
        )
    return tuple(leaf.shape), leaf.dtype


def _layout(state: Any) -> list[dict[str, Any]]:
    """One JSON entry per leaf (path, shape, dtype), in flattening order."""
    entries = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = jax.tree_util.keystr(path)
        shape, dtype = _shape_dtype(name, leaf)
        entries.append({"path": name, "shape": list(shape), "dtype": str(dtype)})
    return entries


def _leaf_name(index: int) -> str:
    return f"leaf_{index}"


def _to_savable(leaf: Any) -> Any:
    """An array orbax can write: raw data for PRNG keys, numpy for host values."""
    if isinstance(leaf, jax.Array):
        # Sharded jax.Arrays stay on device: orbax writes each shard where it lives.
        return jax.random.key_data(leaf) if _is_key(leaf.dtype) else leaf
    return np.asarray(leaf)


def _restore_target(leaf: Any) -> Any:
    """What orbax should restore a leaf as: a sharded jax.Array or a numpy array."""
    shape, dtype = _shape_dtype("", leaf)
    if _is_key(dtype):
        # Key data is tiny: read it to host, then wrap and place it like `leaf`.
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))
        return np.empty(data.shape, data.dtype)
    if isinstance(leaf, jax.Array | jax.ShapeDtypeStruct):
        sharding = leaf.sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    return np.empty(shape, dtype)


def _from_restored(like: Any, value: Any, impl: str | None) -> Any:
    """Turn a restored array back into the kind of leaf `like` is."""
    if isinstance(like, jax.Array | jax.ShapeDtypeStruct):
        if impl is not None:
            value = jax.random.wrap_key_data(value, impl=impl)
        elif like.weak_type and value.ndim == 0:
            # A weakly typed scalar (`jnp.asarray(0.1)`) promotes differently
            # from a strong one; only a Python scalar rebuilds the weak type.
            weak = jnp.asarray(value.item())
            value = weak if weak.dtype == value.dtype else value
        sharding = like.sharding
        return value if sharding is None else jax.device_put(value, sharding)
    if isinstance(like, _PY_SCALARS):
        return type(like)(value.item())
    if isinstance(like, np.generic):
        return value[()]
    return value


class Checkpointer:
    """Saves a run's state every `every` steps and restores the latest one.

    Args:
      directory: where step directories are written (created if missing);
        local path or an orbax-supported URL such as ``gs://bucket/run``.
      every: `should_save(step)` is true when `step % every == 0`.
      max_to_keep: how many of the newest steps to keep (None keeps all).

    Use as a context manager, or call `close()` when done.
    """

    def __init__(
        self, directory: str | os.PathLike, *, every: int = 1, max_to_keep: int | None = 2
    ) -> None:
        if every < 1:
            raise ConfigError(f"checkpoint interval must be >= 1, got every={every}")
        if max_to_keep is not None and max_to_keep < 1:
            raise ConfigError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
        directory = os.fspath(directory)
        self.directory = directory if "://" in directory else os.path.abspath(directory)
        self.every = every
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(n=max_to_keep),
            create=True,
            # Leftovers of a run killed mid-write are removed on start.
            cleanup_tmp_directories=True,
            # Saves block anyway (see `save`); no background thread to join.
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Releases orbax's resources; the checkpoints stay on disk."""
        self._manager.close()

    def steps(self) -> list[int]:
        """All complete steps on disk, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete step, or None when there is none yet."""
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        """Whether `save(step, ...)` will write (without `force`)."""
        return step % self.every == 0

    def save(
        self, step: int, state: Any, *, force: bool = False, metadata: dict | None = None
    ) -> bool:
        """Writes `state` as `step` if `should_save(step)` or `force`.

        Steps at or below the latest saved one are skipped (a resumed run
        repeating a step it already saved), so old steps are never replaced.
        Returns only once the step is complete on disk, so a kill right after
        still leaves it to resume from.

        Args:
          step: the iteration count the state belongs to.
          state: any pytree of jax/numpy arrays, numpy or Python scalars and
            typed PRNG keys.
          force: save even if `step` is not a multiple of `every` (e.g. the
            final step).
          metadata: a JSON-serialisable dict saved with the step (e.g. the
            config), read back with `read_metadata`.

        Returns:
          Whether a checkpoint was written.
        """
        step = int(step)
        latest = self.latest_step()
        if not (force or self.should_save(step)) or (latest is not None and step <= latest):
            return False
        try:
            json.dumps(metadata)
        except TypeError as e:
            raise TypeError(f"checkpoint metadata must be JSON-serialisable: {e}") from e
        leaves = jax.tree.leaves(state)
        layout = _layout(state)
        for entry, leaf in zip(layout, leaves, strict=True):
            if isinstance(leaf, jax.Array) and _is_key(leaf.dtype):
                entry["key_impl"] = str(jax.random.key_impl(leaf))
        items = {
            _LAYOUT: ocp.args.JsonSave({"format": _FORMAT, "leaves": layout}),
            _METADATA: ocp.args.JsonSave(metadata),
        }
        if leaves:  # orbax refuses an empty item
            arrays = {_leaf_name(i): _to_savable(x) for i, x in enumerate(leaves)}
            items[_STATE] = ocp.args.StandardSave(arrays)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, like: Any, step: int | None = None) -> Any:
        """Reads the state saved at `step` (default: the latest).

        Args:
          like: a pytree with the structure of the saved state, whose leaves
            are concrete values or `jax.ShapeDtypeStruct`s. The result has its
            structure (integer dict keys, NamedTuples, ...), dtypes, leaf kinds
            (jax/numpy/Python) and, for jax leaves, shardings.
          step: which step to read.

        Returns:
          The restored state.

        Raises:
          ConfigError: no such step, or `like` does not match the saved state
            (the checkpoint belongs to a different config).
        """
        step = self._existing_step(step)
        saved = self._read(step, _LAYOUT)
        expected = _layout(like)
        self._check_layout(step, saved, expected)
        like_leaves, treedef = jax.tree.flatten(like)
        if not like_leaves:
            return like
        targets = {_leaf_name(i): _restore_target(x) for i, x in enumerate(like_leaves)}
        arrays = self._read(step, _STATE, ocp.args.StandardRestore(targets))
        leaves = [
            _from_restored(x, arrays[_leaf_name(i)], entry.get("key_impl"))
            for i, (x, entry) in enumerate(zip(like_leaves, saved["leaves"], strict=True))
        ]
        return jax.tree.unflatten(treedef, leaves)

    def read_metadata(self, step: int | None = None) -> dict | None:
        """The metadata saved with `step` (default: the latest), or None if none."""
        if step is None and self.latest_step() is None:
            return None
        return self._read(self._existing_step(step), _METADATA)

    def _existing_step(self, step: int | None) -> int:
        """`step`, or the latest one, checked to exist on disk."""
        steps = self.steps()
        if step is None and steps:
            return steps[-1]
        if step not in steps:
            raise ConfigError(
                f"no checkpoint at step {step} in {self.directory} (saved steps: {steps})"
            )
        return int(step)

    def _read(self, step: int, item: str, args: ocp.args.CheckpointArgs | None = None) -> Any:
        """One item of a step; a step without it was not written by this class."""
        args = args if args is not None else ocp.args.JsonRestore()
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
        except KeyError as e:
            raise ConfigError(
                f"{self.directory} step {step} is not a jaxdd checkpoint (no '{item}' item); "
                "use --fresh or another checkpoint directory"
            ) from e

    def _check_layout(self, step: int, saved: Any, expected: list[dict[str, Any]]) -> None:
        """Raises ConfigError if the saved layout is not the one `like` has."""
        problem = _layout_problem(saved, expected)
        if problem is not None:
            raise ConfigError(
                f"the checkpoint in {self.directory} (step {step}) belongs to a different "
                f"config: {problem}. Use --fresh to start over, or another checkpoint directory."
            )


def _layout_problem(saved: Any, expected: list[dict[str, Any]]) -> str | None:
    """The first difference between a saved layout and the expected one, or None."""
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
        return "it was written in an unknown format"
    if len(saved["leaves"]) != len(expected):
        return f"it holds {len(saved['leaves'])} arrays, this run's state has {len(expected)}"
    for have, want in zip(saved["leaves"], expected, strict=True):
        have = {k: have.get(k) for k in want}
        if have["path"] != want["path"]:
            return f"it holds {have['path']} where this run's state has {want['path']}"
        if have != want:
            return f"{have['path']} is {_describe(have)}, this run expects {_describe(want)}"
    return None


def _describe(entry: dict[str, Any]) -> str:
    return f"{entry['dtype']}{entry['shape']}"
