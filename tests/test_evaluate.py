import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd import evaluate
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops import loops
from jaxdd.ops.losses import LOSSES, one_hot
from jaxdd.ops.train import (
    TrainConfig,
    accuracy,
    batch_indices,
    batch_mask,
    lr_factor,
    steps_per_epoch,
)

MODEL = make_convnet(ConvNetSpec(10, (8, 8, 1), width=8, depth=2))
FAST = TrainConfig(epochs=6, batch_size=128, lr=0.05, num_seeds=2, dsa=False, eval_batch=250)


def _run(digits, config=FAST, n=400, **kw):
    x, y, xt, yt = digits
    result, params = evaluate.train_and_evaluate(
        MODEL,
        x[:n],
        one_hot(y[:n], 10),
        xt,
        yt,
        config,
        key=kw.pop("key", jax.random.key(0)),
        progress=False,
        **kw,
    )
    return result, params


def test_training_learns_digits(digits):
    result, _ = _run(digits, dataclasses.replace(FAST, dsa=True), n=1297, eval_every=3)
    assert result.accuracies.shape == (1, 2)
    assert result.mean > 0.7  # 10 classes; 6 epochs of strongly augmented 8x8 images
    assert [h["epoch"] for h in result.history] == [3, 6]
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]


def test_same_key_reproduces_and_other_key_differs(digits):
    a, pa = _run(digits)
    b, pb = _run(digits)
    c, pc = _run(digits, key=jax.random.key(1))
    np.testing.assert_array_equal(a.accuracies, b.accuracies)
    for u, v in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.allclose(jax.tree.leaves(pa)[0], jax.tree.leaves(pc)[0])


def test_lr_sweep_equals_separate_runs(digits):
    sweep, _ = _run(digits, lrs=(0.01, 0.1))
    alone, _ = _run(digits, lrs=(0.1,))
    assert sweep.accuracies.shape == (2, 2)
    np.testing.assert_allclose(sweep.accuracies[1], alone.accuracies[0], atol=1e-6)


def test_vmapped_and_looped_runs_agree(digits):
    a, pa = _run(digits, vectorize=True)
    b, pb = _run(digits, vectorize=False)
    np.testing.assert_allclose(a.accuracies, b.accuracies, atol=0.01)
    for u, v in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_allclose(u, v, rtol=2e-3, atol=2e-4)


def test_one_and_four_devices_give_the_same_accuracies(digits):
    assert len(jax.devices()) == 4
    config = dataclasses.replace(FAST, num_seeds=4)
    one, p1 = _run(digits, config, vectorize=True, devices=jax.devices()[:1])
    four, p4 = _run(digits, config, vectorize=True, devices=jax.devices())
    leaf = jax.tree.leaves(p4)[0]
    # Split, not replicated: each device holds one of the four runs.
    assert {s.data.shape[0] for s in leaf.addressable_shards} == {1}
    assert len(leaf.sharding.device_set) == 4
    # One device runs the four runs' convolutions as one grouped convolution,
    # four devices as four plain ones: equal up to float summation order.
    np.testing.assert_allclose(one.accuracies, four.accuracies, atol=2 / len(digits[3]))
    for u, v in zip(jax.tree.leaves(p1), jax.tree.leaves(p4), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=5e-5)


@pytest.mark.parametrize("chunk", [3, 5])
def test_chunking_with_masked_tail_equals_step_by_step(digits, monkeypatch, chunk):
    ref, p_ref = _run(digits, dataclasses.replace(FAST, epochs=2))  # 6 steps, chunk 6
    monkeypatch.setattr(loops, "default_chunk", lambda n, **_: chunk)
    got, p_got = _run(digits, dataclasses.replace(FAST, epochs=2))
    for u, v in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_got), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def test_sgd_step_decay_and_adam_warmup_cosine():
    sgd = TrainConfig(lr_milestones=(0.5, 0.75), lr_gamma=0.1)
    got = [float(lr_factor(sgd, s, 100)) for s in (0, 49, 50, 74, 75, 99)]
    np.testing.assert_allclose(got, [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    adam = evaluate.adam_protocol(warmup_steps=10)
    np.testing.assert_allclose(float(lr_factor(adam, 0, 110)), 0.1, rtol=1e-6)
    np.testing.assert_allclose(float(lr_factor(adam, 9, 110)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(lr_factor(adam, 60, 110)), 0.5, rtol=1e-6)
    assert float(lr_factor(adam, 110, 110)) < 1e-6


def test_batches_of_an_epoch_are_a_permutation():
    key = jax.random.key(3)
    epoch = jnp.concatenate([batch_indices(key, s, 100, 25) for s in range(4)])
    assert sorted(np.asarray(epoch).tolist()) == list(range(100))
    next_epoch = jnp.concatenate([batch_indices(key, s, 100, 25) for s in range(4, 8)])
    assert not np.array_equal(epoch, next_epoch)


def test_a_kept_partial_batch_covers_the_remainder_once_and_is_masked():
    key = jax.random.key(4)
    config = TrainConfig(batch_size=32)
    assert steps_per_epoch(config, 70) == 3  # 32 + 32 + 6, as PyTorch's DataLoader
    assert steps_per_epoch(dataclasses.replace(config, drop_last=True), 70) == 2
    batches = np.stack([batch_indices(key, s, 70, 32, drop_last=False) for s in range(3)])
    real = batches[batches >= 0]
    assert sorted(real.tolist()) == list(range(70))
    np.testing.assert_array_equal(batches[2, 6:], -1)
    np.testing.assert_array_equal(batch_mask(jnp.asarray(batches[2])), [1.0] * 6 + [0.0] * 26)
    # The masked loss of the padded batch is the loss of its real rows alone.
    logits = jax.random.normal(jax.random.key(5), (32, 10))
    targets = one_hot(jnp.arange(32) % 10, 10)
    mask = batch_mask(jnp.asarray(batches[2]))
    for name, loss in LOSSES.items():
        np.testing.assert_allclose(
            loss(logits, targets, mask), loss(logits[:6], targets[:6]), rtol=1e-6, err_msg=name
        )


def test_accuracy_matches_naive_count_with_padding(digits):
    x, y, xt, yt = digits
    params = MODEL.init(jax.random.key(0))
    naive = np.mean(np.argmax(MODEL.apply(params, xt), -1) == yt)
    got = accuracy(MODEL, params, jnp.asarray(xt), jnp.asarray(yt), batch_size=77)
    np.testing.assert_allclose(float(got), naive, atol=1e-6)


def test_validation_accuracy_is_the_final_networks_accuracy_on_the_split(digits):
    _, _, xt, yt = digits
    # The test set given as the "validation" split: the same networks, the same numbers.
    result, _ = _run(digits, lrs=(0.01, 0.1), validation=(xt, yt))
    np.testing.assert_allclose(result.val_accuracies, result.accuracies, atol=1e-6)
    wrong = (yt + 1) % 10  # every label wrong: right exactly where the clean one was missed
    result, _ = _run(digits, validation=(xt[:200], wrong[:200]))
    clean, _ = _run(digits, validation=(xt[:200], yt[:200]))
    assert np.all(result.val_accuracies <= 1 - clean.val_accuracies + 1e-6)
    summary = clean.summary()
    assert summary["val_accuracies"] == clean.val_accuracies[0].tolist()
    assert summary["accuracy_mean"] == clean.mean
    assert "val_accuracy_mean" not in _run(digits)[0].summary()
