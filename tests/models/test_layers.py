"""The evaluation networks' layers against numpy: batch norm (both modes, masked), pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdd.errors import ConfigError
from jaxdd.models import layers


def _batch(shape=(6, 5, 4, 3), seed=0):
    return np.random.default_rng(seed).normal(2.0, 3.0, shape).astype(np.float32)


def _norm_with_affine(kind, channels=3):
    norm = layers.Norm(channels, kind)
    norm.scale.value = jnp.asarray([0.5, 2.0, -1.0])
    norm.shift.value = jnp.asarray([0.1, -0.3, 0.7])
    return norm


def test_batch_norm_train_mode_equals_numpy_and_moves_running_statistics():
    x = _batch()
    norm = _norm_with_affine("batch")
    out = norm(jnp.asarray(x), train=True, mask=None)
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))  # biased, as BatchNorm2d normalises
    expected = (x - mean) / np.sqrt(var + 1e-5) * [0.5, 2.0, -1.0] + [0.1, -0.3, 0.7]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    np.testing.assert_allclose(norm.mean.value, 0.1 * mean, rtol=1e-5)
    # PyTorch moves the running variance towards the UNBIASED batch variance.
    np.testing.assert_allclose(norm.var.value, 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)


def test_masked_rows_count_in_no_batch_statistic():
    x = _batch()
    mask = jnp.asarray([1, 1, 0, 1, 0, 1], jnp.float32)
    masked = layers.Norm(3, "batch")
    out = masked(jnp.asarray(x), train=True, mask=mask)
    valid = layers.Norm(3, "batch")
    expected = valid(jnp.asarray(x[mask > 0]), train=True, mask=None)
    np.testing.assert_allclose(out[mask > 0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(masked.mean.value, valid.mean.value, rtol=1e-6)
    np.testing.assert_allclose(masked.var.value, valid.var.value, rtol=1e-6)


def test_batch_norm_eval_mode_uses_the_running_statistics_sample_by_sample():
    x = _batch()
    norm = _norm_with_affine("batch")
    norm.mean.value = jnp.asarray([1.0, -2.0, 0.5])
    norm.var.value = jnp.asarray([4.0, 0.25, 9.0])
    out = np.asarray(norm(jnp.asarray(x), train=False, mask=None))
    expected = (x - [1.0, -2.0, 0.5]) / np.sqrt(np.asarray([4.0, 0.25, 9.0]) + 1e-5)
    affine = expected * [0.5, 2.0, -1.0] + [0.1, -0.3, 0.7]
    np.testing.assert_allclose(out, affine, rtol=1e-5, atol=1e-6)
    # Eval mode reads no batch statistic: a sample's output ignores the others.
    alone = norm(jnp.asarray(x[:1]), train=False, mask=None)
    np.testing.assert_allclose(alone, out[:1], rtol=1e-6)
    np.testing.assert_array_equal(norm.mean.value, [1.0, -2.0, 0.5])  # not moved


def test_instance_norm_normalises_each_sample_and_channel_over_space():
    x = _batch()
    out = np.asarray(_norm_with_affine("instance")(jnp.asarray(x), train=True, mask=None))
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * [0.5, 2.0, -1.0] + [0.1, -0.3, 0.7]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert not nnx.state(_norm_with_affine("instance"), nnx.BatchStat)  # no running state


def test_pools_floor_odd_sizes_like_torch():
    x = _batch((2, 5, 7, 3))
    crop = x[:, :4, :6].reshape(2, 2, 2, 3, 2, 3)
    np.testing.assert_allclose(layers.max_pool(jnp.asarray(x)), crop.max(axis=(2, 4)))
    np.testing.assert_allclose(layers.avg_pool(jnp.asarray(x)), crop.mean(axis=(2, 4)), rtol=1e-6)
    with pytest.raises(ConfigError, match="too small"):
        layers.avg_pool(jnp.asarray(x), 6)


def test_conv_pads_symmetrically_and_strides_like_torch():
    layer = layers.conv(1, 1, 3, stride=2, padding=1, bias=False, rngs=nnx.Rngs(0))
    layer.kernel.value = jnp.ones((3, 3, 1, 1))
    x = np.arange(49, dtype=np.float32).reshape(1, 7, 7, 1)
    out = np.asarray(layer(jnp.asarray(x)))[0, :, :, 0]
    padded = np.pad(x[0, :, :, 0], 1)
    expected = [
        [padded[i : i + 3, j : j + 3].sum() for j in range(0, 7, 2)] for i in range(0, 7, 2)
    ]
    np.testing.assert_allclose(out, expected)  # torch: floor((7 + 2 - 3) / 2) + 1 = 4


def test_unknown_norm_is_refused():
    with pytest.raises(ConfigError, match="norm must be"):
        layers.Norm(3, "layer")
    assert jax.tree.leaves(nnx.state(layers.Norm(3, "none"))) == []
