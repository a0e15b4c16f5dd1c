import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdd.checkpoint import Checkpointer, CheckpointError, UnreadableStepWarning
from jaxdd.errors import ConfigError, JaxddError


class Counters(NamedTuple):
    step: int
    seen: np.ndarray


def make_state(seed: int = 0) -> dict:
    """A state shaped like a distillation driver's: NNX-style int keys, optax, key, mask."""
    k = jax.random.split(jax.random.key(seed), 3)
    params = {
        "blocks": {
            0: {"w": jax.random.normal(k[0], (3, 4)), "b": jnp.zeros(4)},
            1: {"w": jax.random.normal(k[1], (4, 2)), "b": jnp.arange(2, dtype=jnp.float32)},
        },
        "scale": jnp.asarray(1.5, jnp.float32),
    }
    return {
        "params": params,
        "opt": optax.sgd(0.1, momentum=0.9).init(params),
        "key": k[2],
        "iteration": jnp.asarray(7, jnp.int32),
        "mask": jnp.array([True, False, True]),
        "labels": np.array([3, 1, 2], np.int32),
        "counters": Counters(step=4, seen=np.float32(0.25)),
        "lr": 0.01,
    }


def assert_identical(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert type(a) is type(b) or (isinstance(a, jax.Array) and isinstance(b, jax.Array))
        if isinstance(b, jax.Array) and jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
            assert a.dtype == b.dtype
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_round_trip_keeps_structure_dtypes_and_values(tmp_path):
    state = make_state()
    with Checkpointer(tmp_path, every=1) as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.save(1, state)
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(make_state(seed=1))
    assert_identical(restored, state)
    assert set(restored["params"]["blocks"]) == {0, 1}  # int keys, not '0', '1'
    assert isinstance(restored["opt"][0], optax.TraceState)
    assert isinstance(restored["counters"], Counters)
    assert type(restored["lr"]) is float and type(restored["counters"].step) is int
    assert restored["key"].dtype == jax.random.key(0).dtype


def test_restore_into_shape_dtype_structs(tmp_path):
    state = make_state()
    like = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if isinstance(x, jax.Array) else x, state
    )
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(2, state)
        restored = ckpt.restore(like)
    assert_identical(restored, state)


def test_every_latest_and_max_to_keep(tmp_path):
    with Checkpointer(tmp_path, every=2, max_to_keep=2) as ckpt:
        saved = [ckpt.save(s, {"x": jnp.full(2, s)}) for s in range(1, 8)]
        assert saved == [False, True, False, True, False, True, False]
        assert ckpt.should_save(4) and not ckpt.should_save(5)
        assert ckpt.steps() == [4, 6]
        assert ckpt.save(7, {"x": jnp.full(2, 7)}, force=True)
        assert ckpt.steps() == [6, 7] and ckpt.latest_step() == 7
        # A resumed run repeating a saved (or older) step does not overwrite it.
        assert not ckpt.save(6, {"x": jnp.zeros(2, jnp.int32)}, force=True)
        older = ckpt.restore({"x": jnp.zeros(2, jnp.int32)}, step=6)
    np.testing.assert_array_equal(older["x"], [6, 6])


def test_keep_all_and_restore_older_step(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        for s in range(3):
            ckpt.save(s, {"x": jnp.full((2,), s, jnp.float32)})
        assert ckpt.steps() == [0, 1, 2]
        like = {"x": jnp.zeros(2, jnp.float32)}
        np.testing.assert_array_equal(ckpt.restore(like, step=1)["x"], [1.0, 1.0])
        np.testing.assert_array_equal(ckpt.restore(like)["x"], [2.0, 2.0])
        with pytest.raises(ConfigError, match="no checkpoint at step 5"):
            ckpt.restore(like, step=5)


def test_sharded_arrays_keep_their_sharding(tmp_path):
    mesh = jax.make_mesh((4,), ("runs",))
    sharding = NamedSharding(mesh, P("runs"))
    state = {
        "w": jax.device_put(jnp.arange(24.0).reshape(8, 3), sharding),
        "keys": jax.device_put(jax.random.split(jax.random.key(3), 8), sharding),
        "ok": jax.device_put(jnp.arange(8) % 3 == 0, sharding),
    }
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
        like = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state
        )
        restored = ckpt.restore(like)
    assert_identical(restored, state)
    for leaf in jax.tree.leaves(restored):
        assert leaf.sharding == sharding


def test_weakly_typed_scalars_stay_weak(tmp_path):
    # A strong float32 scalar would promote bfloat16 params to float32 on resume.
    state = {"lr": jnp.asarray(0.1), "p": jnp.ones(2, jnp.bfloat16)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
        restored = ckpt.restore(state)
    assert restored["lr"].weak_type
    assert (restored["lr"] * restored["p"]).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "like, message",
    [
        ({"w": jnp.zeros((2, 3))}, "holds 2 arrays, this run's state has 1"),
        ({"w": jnp.zeros((2, 4)), "b": jnp.zeros(3)}, r"float32\[2, 3\], this run expects"),
        ({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3, jnp.int32)}, "int32"),
        ({"w": jnp.zeros((2, 3)), "c": jnp.zeros(3)}, r"\['b'\] where this run's state has"),
    ],
)
def test_mismatched_like_raises_config_error(tmp_path, like, message):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, {"w": jnp.ones((2, 3)), "b": jnp.ones(3)})
        with pytest.raises(ConfigError, match=message) as info:
            ckpt.restore(like)
    assert str(tmp_path) in str(info.value) and f"Delete {tmp_path}" in str(info.value)


def test_metadata_round_trip(tmp_path):
    config = {"method": "datm", "ipc": 10, "lrs": [0.01, 0.1], "zca": True}
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.read_metadata() is None
        ckpt.save(1, {"x": jnp.zeros(1)}, metadata=config)
        ckpt.save(2, {"x": jnp.zeros(1)})
        assert ckpt.read_metadata(step=1) == config
        assert ckpt.read_metadata() is None
        with pytest.raises(TypeError, match="JSON"):
            ckpt.save(3, {"x": jnp.zeros(1)}, metadata={"f": object()})
        assert ckpt.steps() == [1, 2]


def test_interrupted_write_is_not_the_latest_step(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, {"x": jnp.ones(2)})
    # What a kill during the write of step 2 leaves behind: an uncommitted tmp dir.
    partial = tmp_path / "2.orbax-checkpoint-tmp-123"
    (partial / "state").mkdir(parents=True)
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 1 and ckpt.steps() == [1]
        np.testing.assert_array_equal(ckpt.restore({"x": jnp.zeros(2)})["x"], [1.0, 1.0])
    assert not partial.exists()


class LoopState(NamedTuple):
    w: jax.Array
    key: jax.Array
    step: jax.Array


@jax.jit
def loop_step(s: LoopState) -> LoopState:
    key, sub = jax.random.split(s.key)
    noise = jax.random.normal(sub, s.w.shape)
    return LoopState(0.9 * s.w + noise, key, s.step + 1)


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    init = LoopState(jnp.zeros((2, 3)), jax.random.key(42), jnp.asarray(0, jnp.int32))
    straight = init
    for _ in range(6):
        straight = loop_step(straight)

    with Checkpointer(tmp_path, every=3) as ckpt:
        s = init
        for it in range(1, 4):
            s = loop_step(s)
            ckpt.save(it, s)
    del s  # the "kill": nothing of the first run survives but the directory

    with Checkpointer(tmp_path, every=3) as ckpt:
        start = ckpt.latest_step()
        s = ckpt.restore(init)
        for it in range(start + 1, 7):
            s = loop_step(s)
            ckpt.save(it, s)
        assert ckpt.steps() == [3, 6]
    assert start == 3
    assert_identical(s, straight)


def test_invalid_options_raise(tmp_path):
    with pytest.raises(ConfigError, match="every"):
        Checkpointer(tmp_path, every=0)
    with pytest.raises(ConfigError, match="max_to_keep"):
        Checkpointer(tmp_path, max_to_keep=0)
    assert os.listdir(tmp_path) == []


def big_state(value: float) -> dict:
    """Arrays large enough to be stored apart from the index, a small one and a key."""
    rng = np.random.default_rng(int(value))
    return {
        "w": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32),  # 16 KiB: its own chunk file
        "b": jnp.full(3, value),
        "key": jax.random.key(int(value)),
    }


def save_two_steps(directory) -> dict:
    """Steps 1 and 2 of `big_state` in `directory`; returns step 1's state."""
    with Checkpointer(directory, max_to_keep=None) as ckpt:
        ckpt.save(1, big_state(1.0))
        ckpt.save(2, big_state(2.0))
    return big_state(1.0)


def array_files(step_dir):
    return [p for p in (step_dir / "state").rglob("*") if p.is_file()]


def largest_array_file(step_dir):
    return max(array_files(step_dir), key=lambda p: p.stat().st_size)


def write_garbage(paths):
    for path in paths:
        path.write_bytes(b"\x00\xffnot a checkpoint{" * 8)


CORRUPTIONS = {
    "garbage in every array file": lambda d: write_garbage(array_files(d)),
    "garbage in the array data": lambda d: write_garbage([largest_array_file(d)]),
    "array data truncated": lambda d: largest_array_file(d).write_bytes(b"\x28\xb5"),
    "array data deleted": lambda d: largest_array_file(d).unlink(),
    "garbage layout JSON": lambda d: write_garbage([d / "layout" / "metadata"]),
    "malformed layout JSON": lambda d: (d / "layout" / "metadata").write_text(
        '{"format": 1, "leaves": 3}'
    ),
    "layout deleted": lambda d: (d / "layout" / "metadata").unlink(),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_damaged_latest_step_falls_back_to_the_previous_one(tmp_path, corrupt):
    earlier = save_two_steps(tmp_path)
    corrupt(tmp_path / "2")
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        assert ckpt.latest_step() == 2  # damage is only seen by reading
        with pytest.warns(UnreadableStepWarning, match=r"\(step 2: \w") as record:
            step, state = ckpt.restore_latest(big_state(0.0))
        assert step == 1 and len(record) == 1 and "restored step 1" in str(record[0].message)
        assert_identical(state, earlier)
        # From now on step 2 is absent: the resumed run saves it again.
        assert ckpt.steps() == [1] and ckpt.latest_step() == 1
        assert ckpt.save(2, big_state(3.0))
        step, state = ckpt.restore_latest(big_state(0.0))
    assert step == 2
    assert_identical(state, big_state(3.0))


def test_restore_without_step_falls_back_too(tmp_path):
    earlier = save_two_steps(tmp_path)
    write_garbage([tmp_path / "2" / "layout" / "metadata"])
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        with pytest.warns(UnreadableStepWarning):
            state = ckpt.restore(big_state(0.0))
        assert_identical(state, earlier)
        assert ckpt.read_metadata() is None  # the restored step's, not the damaged one's


def test_every_step_damaged_raises_one_clear_error(tmp_path):
    save_two_steps(tmp_path)
    write_garbage([tmp_path / "2" / "layout" / "metadata"])
    write_garbage(array_files(tmp_path / "1"))
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        with pytest.raises(CheckpointError) as info:
            ckpt.restore_latest(big_state(0.0))
        # Nothing readable is left: a fresh start saves from step 1 again.
        assert ckpt.latest_step() is None
        assert ckpt.save(1, big_state(4.0))
    message = str(info.value)
    assert isinstance(info.value, JaxddError) and "\n" not in message
    assert message.startswith(f"no step of the checkpoint in {tmp_path} can be read")
    assert "step 2: reading its layout: UnicodeDecodeError" in message
    assert "step 1: reading its state" in message
    assert message.endswith(f"delete {tmp_path} to start over")


def test_explicit_damaged_step_names_the_directory_to_delete(tmp_path):
    save_two_steps(tmp_path)
    largest_array_file(tmp_path / "2").unlink()
    write_garbage([tmp_path / "1" / "metadata" / "metadata"])
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        with pytest.raises(CheckpointError, match=f"delete {tmp_path / '2'} to resume") as info:
            ckpt.restore(big_state(0.0), step=2)
        assert "\n" not in str(info.value)
        with pytest.raises(CheckpointError, match=r"step 1 .*\(reading its metadata"):
            ckpt.read_metadata(step=1)


def test_mismatched_config_does_not_fall_back(tmp_path):
    save_two_steps(tmp_path)
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        with pytest.raises(ConfigError, match=r"\(step 2\) belongs to a different config"):
            ckpt.restore_latest({"w": jnp.zeros((64, 64))})
        assert ckpt.steps() == [1, 2]


def test_restore_latest_without_checkpoint_returns_like(tmp_path):
    like = {"x": jnp.zeros(2)}
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.restore_latest(like) == (None, like)
        with pytest.raises(ConfigError, match="no checkpoint to restore"):
            ckpt.restore(like)


def test_many_damaged_steps_are_summarised(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        for s in range(1, 5):
            ckpt.save(s, {"x": jnp.full(2, s)})
    write_garbage([tmp_path / str(s) / "layout" / "metadata" for s in range(1, 5)])
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt, pytest.raises(CheckpointError) as info:
        ckpt.restore_latest({"x": jnp.zeros(2, jnp.int32)})
    message = str(info.value)
    assert "step 4: " in message and "step 3: " in message and "; 2 older ones)" in message
    assert "step 2: " not in message
