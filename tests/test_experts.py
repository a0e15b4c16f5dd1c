import dataclasses
import shutil

import jax
import numpy as np

from jaxdd.checkpoint import Checkpointer
from jaxdd.experts import ExpertConfig, snapshot, train_experts
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops.losses import one_hot

MODEL = make_convnet(ConvNetSpec(10, (8, 8, 1), width=4, depth=2))
CONFIG = ExpertConfig(num_experts=2, epochs=3, batch_size=100, dsa=False)


def _train(digits, **kw):
    x, y, _, _ = digits
    return train_experts(
        MODEL, x[:300], one_hot(y[:300], 10), CONFIG, key=jax.random.key(0), progress=False, **kw
    )


def test_trajectories_have_expert_and_epoch_axes(digits):
    traj = _train(digits)
    kernel = traj["head"]["kernel"]
    assert kernel.shape == (2, 4, 2 * 2 * 4, 10)
    assert not np.allclose(kernel[0, 0], kernel[1, 0])  # own inits
    assert not np.allclose(kernel[0, 0], kernel[0, 3])  # training moved them
    # constant lr, no momentum: epoch steps are roughly comparable in size
    steps = [np.linalg.norm(kernel[0, t + 1] - kernel[0, t]) for t in range(3)]
    assert min(steps) > 0
    picked = snapshot(jax.tree.map(jax.numpy.asarray, traj), 1, 2)
    np.testing.assert_array_equal(picked["head"]["kernel"], kernel[1, 2])


def test_interrupted_expert_training_resumes_to_the_same_trajectory(digits, tmp_path):
    straight = _train(digits)
    with Checkpointer(tmp_path / "ck", max_to_keep=None) as ckpt:
        _train(digits, checkpointer=ckpt)
        assert ckpt.steps() == [0, 1, 2, 3]
    shutil.rmtree(tmp_path / "ck" / "3")  # "killed" before the last epoch was saved
    shutil.rmtree(tmp_path / "ck" / "2")
    with Checkpointer(tmp_path / "ck", max_to_keep=None) as ckpt:
        assert ckpt.latest_step() == 1
        resumed = _train(digits, checkpointer=ckpt)
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_epoch_size_sets_the_sgd_steps_between_snapshots(digits):
    x, y, _, _ = digits
    x, t = x[:300], one_hot(y[:300], 10)  # batch 100: 3 steps per pass over the data
    by_pass = train_experts(MODEL, x, t, CONFIG, key=jax.random.key(0), progress=False)
    doubled = dataclasses.replace(CONFIG, epochs=1, epoch_size=600)  # 6 steps per epoch
    long = train_experts(MODEL, x, t, doubled, key=jax.random.key(0), progress=False)
    for a, b in zip(jax.tree.leaves(by_pass), jax.tree.leaves(long), strict=True):
        assert b.shape[1] == 2  # init + one epoch
        np.testing.assert_allclose(b[:, 1], a[:, 2], rtol=1e-5, atol=1e-6)


def test_unresolved_given_epoch_size_is_one_pass_over_the_data():
    assert CONFIG.epoch_size == "given"  # the default
    assert CONFIG.train_config().epoch_steps is None
    assert dataclasses.replace(CONFIG, epoch_size=250).train_config().epoch_steps == 2
