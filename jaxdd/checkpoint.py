"""Save and resume long runs: a small wrapper over orbax's `CheckpointManager`.

Drivers (expert training, distillation loops) save their whole state every
`every` iterations and, when restarted, restore the latest step and carry on;
the result is identical to an uninterrupted run (docs/architecture.md, principle 6).

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

A committed step can still be damaged later (a full disk, a bad copy, a
stray edit). `restore_latest` then falls back to the newest step that reads
back intact, with an `UnreadableStepWarning`, and the damaged steps are
treated as absent from then on: `steps` and `latest_step` skip them and
`save` rewrites them. A step that cannot be read raises `CheckpointError`,
whose message names the step directory to delete.

One process at a time: a `Checkpointer` deletes the temporary directories it
finds at start, which are leftovers of a killed run only if no other process
is writing into the same directory. Callers hold the lock of the directory
(`jaxdd.locking.DirectoryLock` on the run directory or expert cache that
contains it) for as long as the `Checkpointer` is open.

Example:
    with DirectoryLock(workdir), Checkpointer(workdir / "ckpt", every=100) as ckpt:
        start, state = ckpt.restore_latest(init_state(config))
        for it in range((start or 0) + 1, config.iterations + 1):
            state = step(state)
            ckpt.save(it, state, metadata=dataclasses.asdict(config))
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxdd import hosts, parallel
from jaxdd.errors import ConfigError, JaxddError

# Item names inside one step directory (orbax Composite items).
_STATE = "state"
_LAYOUT = "layout"
_METADATA = "metadata"
# Bumped if the on-disk layout ever changes, so old checkpoints are recognised.
_FORMAT = 1

_PY_SCALARS = (bool, int, float, complex)
# Longest description of why a step is unreadable, in characters.
_REASON_CHARS = 160
# How many unreadable steps an error or warning describes; the rest are counted.
_REASONS_LISTED = 2
_ORBAX_DIR = os.path.dirname(ocp.__file__)


class CheckpointError(JaxddError):
    """A checkpoint step cannot be read: its files are damaged or missing."""


class UnreadableStepWarning(UserWarning):
    """The newest step of a checkpoint was unreadable; an older one was restored."""


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
        return value if sharding is None else parallel.put(value, sharding)
    if isinstance(like, _PY_SCALARS):
        return type(like)(value.item())
    if isinstance(like, np.generic):
        return value[()]
    return value


class Checkpointer:
    """Saves a run's state every `every` steps and restores the latest intact one.

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
            # Leftovers of a run killed mid-write are removed on start; safe
            # because callers hold the directory lock (module docstring).
            cleanup_tmp_directories=True,
            # Saves block anyway (see `save`); no background thread to join.
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        # Steps `restore_latest` could not read: absent for `steps`, rewritten by `save`.
        self._unreadable: set[int] = set()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Releases orbax's resources; the checkpoints stay on disk."""
        self._manager.close()

    def steps(self) -> list[int]:
        """All complete steps on disk, ascending, except those found unreadable.

        In a multi-process run, as process 0 finds them (`jaxdd.hosts.decide`).
        """
        return hosts.decide(lambda: sorted(set(self._manager.all_steps()) - self._unreadable))

    def latest_step(self) -> int | None:
        """The newest of `steps()`, or None when there is none yet."""
        steps = self.steps()
        return steps[-1] if steps else None

    def should_save(self, step: int) -> bool:
        """Whether `save(step, ...)` will write (without `force`)."""
        return step % self.every == 0

    def save(
        self, step: int, state: Any, *, force: bool = False, metadata: dict | None = None
    ) -> bool:
        """Writes `state` as `step` if `should_save(step)` or `force`.

        Steps at or below `latest_step()` are skipped (a resumed run
        repeating a step it already saved), so intact steps are never
        replaced; a step `restore_latest` found unreadable is rewritten.
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
        if step in self._unreadable:
            self._manager.delete(step)
            self._unreadable.discard(step)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, like: Any, step: int | None = None) -> Any:
        """Reads the state saved at `step` (default: as `restore_latest`).

        Args:
          like: a pytree with the structure of the saved state, whose leaves
            are concrete values or `jax.ShapeDtypeStruct`s. The result has its
            structure (integer dict keys, NamedTuples, ...), dtypes, leaf kinds
            (jax/numpy/Python) and, for jax leaves, shardings.
          step: which step to read; None reads the newest readable one.

        Returns:
          The restored state.

        Raises:
          ConfigError: no such step (or no step at all), or `like` does not
            match the saved state (the checkpoint belongs to a different config).
          CheckpointError: the step (with `step=None`: every step) is unreadable.
        """
        if step is None:
            found, state = self.restore_latest(like)
            if found is None:
                raise ConfigError(f"no checkpoint to restore in {self.directory}")
            return state
        step = self._existing_step(step)
        try:
            return self._restore_step(like, step)
        except _UnreadableStepError as e:
            raise self._unreadable_error(step, e) from e

    def restore_latest(self, like: Any) -> tuple[int | None, Any]:
        """Restores the newest step that reads back intact, to resume a run from.

        Newer steps that cannot be read are skipped with an
        `UnreadableStepWarning` and treated as absent from then on (`steps`
        and `latest_step` leave them out, `save` rewrites them).

        Args:
          like: as in `restore`.

        Returns:
          ``(step, state)``: the step restored and its state, or
          ``(None, like)`` when there is no checkpoint yet.

        Raises:
          CheckpointError: there are steps but none can be read.
          ConfigError: the newest readable step does not match `like` (the
            checkpoint belongs to a different config).
        """
        skipped: list[tuple[int, str]] = []
        for step in reversed(self.steps()):
            try:
                state = self._restore_step(like, step)
            except _UnreadableStepError as e:
                skipped.append((step, str(e)))
                self._unreadable.add(step)
                continue
            if skipped:
                message = self._fallback_message(step, skipped)
                warnings.warn(message, UnreadableStepWarning, stacklevel=2)
            return step, state
        if skipped:
            raise CheckpointError(
                f"no step of the checkpoint in {self.directory} can be read "
                f"({_list_reasons(skipped)}); delete {self.directory} to start over"
            )
        return None, like

    def read_metadata(self, step: int | None = None) -> dict | None:
        """The metadata saved with `step` (default: the latest), or None if none.

        Raises:
          ConfigError: there is no such step.
          CheckpointError: the step's metadata cannot be read.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                return None
        step = self._existing_step(step)
        try:
            return self._read(step, _METADATA)
        except _UnreadableStepError as e:
            raise self._unreadable_error(step, e) from e

    def _existing_step(self, step: int) -> int:
        """`step` as an int, checked to be committed on disk (readable or not)."""
        steps = sorted(self._manager.all_steps())
        if step not in steps:
            raise ConfigError(
                f"no checkpoint at step {step} in {self.directory} (saved steps: {steps})"
            )
        return int(step)

    def _restore_step(self, like: Any, step: int) -> Any:
        """The state of one committed step; raises `_UnreadableStepError` if damaged."""
        saved = self._read(step, _LAYOUT)
        problem = _format_problem(saved)
        if problem is not None:
            raise _UnreadableStepError(problem)
        self._check_layout(step, saved, _layout(like))
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

    def _read(self, step: int, item: str, args: ocp.args.CheckpointArgs | None = None) -> Any:
        """One item of a step; raises `_UnreadableStepError` if it cannot be read.

        Damaged files fail inside orbax with many kinds of errors (JSON
        decoding, TensorStore, missing files, orbax's own bare `Exception`),
        so any error of the read itself marks the step unreadable.
        """
        args = args if args is not None else ocp.args.JsonRestore()
        _install_leftover_filter()
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
        except Exception as e:
            raise _UnreadableStepError(f"reading its {item}: {_reason(e)}") from e

    def _check_layout(self, step: int, saved: Any, expected: list[dict[str, Any]]) -> None:
        """Raises ConfigError if the saved layout is not the one `like` has."""
        problem = _layout_problem(saved, expected)
        if problem is not None:
            raise ConfigError(
                f"the checkpoint in {self.directory} (step {step}) belongs to a different "
                f"config: {problem}. Delete {self.directory} to start over, or use another "
                "directory."
            )

    def _unreadable_error(self, step: int, reason: _UnreadableStepError) -> CheckpointError:
        """The error telling the user which step is damaged and what to delete."""
        where = os.path.join(self.directory, str(step))
        return CheckpointError(
            f"checkpoint step {step} in {self.directory} is unreadable ({reason}); delete "
            f"{where} to resume from an earlier step, or {self.directory} to start over"
        )

    def _fallback_message(self, step: int, skipped: list[tuple[int, str]]) -> str:
        """What `restore_latest` warns when it had to skip damaged steps."""
        return (
            f"skipped unreadable checkpoint steps in {self.directory} "
            f"({_list_reasons(skipped)}); restored step {step} instead"
        )


class _LeftoverFilter:
    """A `sys.unraisablehook` that drops orbax's leftovers of a failed read.

    When one array of a step fails to read, orbax closes its event loop while
    the other reads are still pending. Later, each one's TensorStore callback
    finds the loop closed, and each pending coroutine, once garbage-collected,
    turns its cancellation into a bare `Exception`: tracebacks on stderr (and
    errors under pytest) long after the step was reported unreadable. This
    hook drops exactly those and passes everything else to the previous one.
    """

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if not _is_orbax_leftover(unraisable):
            self.previous(unraisable)


def _install_leftover_filter() -> None:
    """Puts a `_LeftoverFilter` in front of the current unraisable hook, once."""
    if not isinstance(sys.unraisablehook, _LeftoverFilter):
        sys.unraisablehook = _LeftoverFilter(sys.unraisablehook)


def _is_orbax_leftover(unraisable: Any) -> bool:
    """Whether an unraisable error is the aftermath of a failed orbax read."""
    source = unraisable.object
    if inspect.iscoroutine(source):
        return source.cr_code.co_filename.startswith(_ORBAX_DIR)
    error = unraisable.exc_value
    return (
        source is None and isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
    )


class _UnreadableStepError(Exception):
    """A step's files could not be read; the message says why."""


def _reason(error: BaseException) -> str:
    """One short line on why a read failed, from the innermost cause."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _list_reasons(skipped: list[tuple[int, str]]) -> str:
    """``step N: why`` for the first `_REASONS_LISTED` steps, then how many more."""
    listed = [f"step {step}: {reason}" for step, reason in skipped[:_REASONS_LISTED]]
    more = len(skipped) - _REASONS_LISTED
    return "; ".join(listed + ([f"{more} older ones"] if more > 0 else []))


def _format_problem(saved: Any) -> str | None:
    """Why `saved` is not a layout this version writes, or None if it is one."""
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
        return "its layout is in an unknown format"
    leaves = saved.get("leaves")
    if not isinstance(leaves, list) or not all(_is_entry(e) for e in leaves):
        return "its layout is malformed"
    return None


def _is_entry(entry: Any) -> bool:
    """Whether `entry` is one leaf's layout: a str path and dtype, a list of ints shape."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and isinstance(entry.get("dtype"), str)
        and isinstance(entry.get("shape"), list)
        and all(isinstance(d, int) for d in entry["shape"])
    )


def _layout_problem(saved: dict, expected: list[dict[str, Any]]) -> str | None:
    """The first difference between a well-formed saved layout and the expected one."""
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
