import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.evaluate import dance_protocol
from jaxdd.models.convnet import ConvNetSpec, make_convnet
from jaxdd.ops import train
from jaxdd.ops.cutmix import box_mask, cutmix

B, H, W, K = 6, 8, 10, 3


def _batch():
    # image i is filled with the value i: a pixel's value tells which image it came from
    x = jnp.broadcast_to(jnp.arange(B, dtype=jnp.float32)[:, None, None, None], (B, H, W, 2))
    targets = jax.nn.one_hot(jnp.arange(B) % K, K)
    return x, targets


def test_probability_zero_leaves_the_batch_alone():
    x, t = _batch()
    for seed in range(5):
        x2, t2 = cutmix(x, t, key=jax.random.key(seed), prob=0.0)
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(t2, t)


@pytest.mark.parametrize("seed", range(8))
def test_targets_mix_by_the_share_of_pixels_each_image_keeps(seed):
    x, t = _batch()
    x2, t2 = cutmix(x, t, key=jax.random.key(seed), prob=1.0)
    x2, t2 = np.asarray(x2), np.asarray(t2)
    own = (x2[..., 0] == np.arange(B)[:, None, None]).mean((1, 2))  # share kept, counted
    pasted = np.zeros(B, int)
    for i in range(B):
        values = np.unique(x2[i][x2[i] != i])
        assert len(values) <= 1  # one partner per image
        pasted[i] = int(values[0]) if len(values) else i
        # the pasted region is one axis-aligned box, the same for every image
        box = x2[i, ..., 0] != i
        if box.any():
            r, c = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
            assert box[r[0] : r[-1] + 1, c[0] : c[-1] + 1].all()
    expected = own[:, None] * np.asarray(t) + (1 - own[:, None]) * np.asarray(t)[pasted]
    # an image paired with itself keeps all its pixels under this count: its target is its own
    np.testing.assert_allclose(t2, expected, atol=1e-6)
    np.testing.assert_allclose(t2.sum(-1), 1.0, atol=1e-6)


def test_box_side_follows_the_reference_rule():
    lam = jnp.float32(0.75)  # cut ratio 0.5: a box of int(8·0.5) × int(10·0.5) before clipping
    areas = [int(box_mask(jax.random.key(s), H, W, lam).sum()) for s in range(50)]
    # unclipped, each side is 2·(cut // 2), as the reference's rand_bbox: 2·(4 // 2) × 2·(5 // 2)
    assert max(areas) == 4 * 4
    assert min(areas) >= 0


def test_vmapped_over_runs_equals_one_run_at_a_time():
    x, t = _batch()
    keys = jax.random.split(jax.random.key(3), 4)
    xs, ts = jax.vmap(lambda k: cutmix(x, t, key=k, prob=0.5))(keys)
    for i, k in enumerate(keys):
        xi, ti = cutmix(x, t, key=k, prob=0.5)
        np.testing.assert_array_equal(xs[i], xi)
        np.testing.assert_array_equal(ts[i], ti)


def test_a_train_step_with_cutmix_trains_on_mixed_batches():
    model = make_convnet(ConvNetSpec(K, (H, W, 1), width=4, depth=1))
    x = jax.random.normal(jax.random.key(0), (B, H, W, 1))
    t = jax.nn.one_hot(jnp.arange(B) % K, K)
    losses = {}
    for mix in (0.0, 1.0):
        config = dance_protocol(cutmix=mix, dsa=False, batch_size=B, epochs=1)
        state = train.init_state(model, config, jnp.float32(0.01), key=jax.random.key(1))
        step = jax.jit(train.make_train_step(model, config, total_steps=1))
        _, losses[mix] = step(state, jnp.int32(0), x, t)
    assert np.isfinite(losses[1.0]) and float(losses[1.0]) != float(losses[0.0])


def test_dance_protocol_is_the_references():
    config = dance_protocol()
    assert config.epochs == 1500 and config.lr == 0.01 and config.lr_gamma == 0.2
    np.testing.assert_allclose(np.array(config.lr_milestones) * 1500, [1000, 1250])
    assert config.cutmix == 0.5 and config.dsa and config.weight_decay == 5e-4
    assert "cutout" not in config.dsa_families  # IDC drops it under CutMix
