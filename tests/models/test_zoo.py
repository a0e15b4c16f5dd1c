"""The cross-architecture networks: the references' parameter counts and shapes, modes, names."""

import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdd.errors import ConfigError
from jaxdd.models.base import num_params
from jaxdd.models.zoo import NETWORKS, EvalNet, make_network, network_spec

# Trainable parameters of the references' definitions (DC/DSA networks.py, reused by
# MTT/DATM/DANCE), 10 classes. Derivations, layer by layer:
# * ResNet18 / ResNet18BN at 32x32x3: 11,173,962, the well-known count of the CIFAR
#   ResNet-18 (kuangliu/pytorch-cifar, which DC's ResNet acknowledges); GroupNorm(C, C)
#   and BatchNorm2d both hold 2C affine parameters. A 1-channel stem has 64·9·2 = 1,152
#   fewer: 11,172,810.
# * VGG11 / VGG11BN at 32x32x3: 9,231,114 (kuangliu's VGG('VGG11'), same layers); 1 channel:
#   64·9·2 fewer = 9,229,962.
# * AlexNet at 32x32x3: conv 3·128·25+128 = 9,728; 128·192·25+192 = 614,592; 192·256·9+256 =
#   442,624; 256·192·9+192 = 442,560; 192·192·9+192 = 331,968; fc 192·4·4·10+10 = 30,730;
#   total 1,872,202; 1 channel: 128·25·2 fewer = 1,865,802.
# * ResNet18_AP: ResNet18's convolutions with a classifier over the unpooled map,
#   512·4·4 = 8,192 features at 32 px (11,173,962 − 5,130 + 81,930 = 11,250,762) and
#   512·3·3 = 4,608 at 28 px (11,172,810 − 5,130 + 46,090 = 11,213,770).
PARAMS = {
    (32, 3): {
        "alexnet": 1_872_202,
        "vgg11": 9_231_114,
        "resnet18": 11_173_962,
        "resnet18_ap": 11_250_762,
    },
    (28, 1): {
        "alexnet": 1_865_802,
        "vgg11": 9_229_962,
        "resnet18": 11_172_810,
        "resnet18_ap": 11_213_770,
    },
}
# Running statistics of the BN variants: 2 per channel of every BatchNorm2d.
# VGG11BN: 2·(64+128+256+256+512+512+512+512); ResNet18BN: 2·(64 + 2·2·(64+128+256+512)
# + 128+256+512) for the stem, the blocks' two norms and the three projection norms.
STATS = {"vgg11bn": 5_504, "resnet18bn": 9_600, "resnet18bn_ap": 9_600}
FEATURES = {  # length of φ at (28 px, 1 channel) and (32 px, 3 channels)
    "alexnet": (192 * 4 * 4, 192 * 4 * 4),
    "vgg11": (512, 512),
    "resnet18": (512, 512),
    "resnet18_ap": (512 * 3 * 3, 512 * 4 * 4),
}


@pytest.mark.parametrize("size,channels", [(32, 3), (28, 1)])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_parameter_counts_and_shapes_match_the_references(name, size, channels):
    model = make_network(network_spec(name, 10, (size, size, channels)))
    params = jax.eval_shape(model.init, jax.random.key(0))
    arch = NETWORKS[name][0]
    assert num_params(params) == PARAMS[(size, channels)][arch]
    stats = model.init_stats()
    assert sum(v.size for v in jax.tree.leaves(stats)) == STATS.get(name, 0)
    x = jax.ShapeDtypeStruct((3, size, size, channels), jnp.float32)
    logits, new_stats = jax.eval_shape(lambda p, x: model.apply_train(p, stats, x, None), params, x)
    assert logits.shape == (3, 10)
    assert jax.tree.structure(new_stats) == jax.tree.structure(stats)
    phi = jax.eval_shape(model.features, params, x)
    assert phi.shape == (3, FEATURES[arch][channels == 3])


def test_batch_norm_network_trains_its_statistics_and_evaluates_on_them():
    model = make_network(network_spec("vgg11bn", 10, (28, 28, 1), width_scale=0.125))
    params, stats = jax.jit(model.init)(jax.random.key(0)), model.init_stats()
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    logits, moved = jax.jit(model.apply_train)(params, stats, x, None)
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), logits, rtol=1e-5, atol=1e-6)
    assert not np.allclose(moved["layers"][0]["norm"]["mean"], stats["layers"][0]["norm"]["mean"])
    # Eval mode normalises by the running statistics: a sample's logits ignore the batch.
    apply_eval = jax.jit(model.apply_eval)
    full = apply_eval(params, moved, x)
    np.testing.assert_allclose(apply_eval(params, moved, x[:1]), full[:1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(full, logits, atol=1e-3)


def test_instance_norm_networks_are_stateless_and_modes_agree():
    model = make_network(network_spec("vgg11", 10, (28, 28, 1), width_scale=0.125))
    params = jax.jit(model.init)(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    assert model.init_stats() == {}
    evaluated = jax.jit(model.apply_eval)(params, {}, x)
    np.testing.assert_allclose(evaluated, jax.jit(model.apply)(params, x), rtol=1e-5, atol=1e-6)


def test_width_scale_scales_every_layer():
    full = make_network(network_spec("resnet18", 10, (28, 28, 1)))
    quarter = make_network(network_spec("resnet18", 10, (28, 28, 1), width_scale=0.25))
    kernel = jax.eval_shape(quarter.init, jax.random.key(0))["blocks"][7]["conv2"]["kernel"]
    assert kernel.shape == (3, 3, 128, 128)
    assert num_params(jax.eval_shape(full.init, jax.random.key(0))) > 10 * num_params(
        jax.eval_shape(quarter.init, jax.random.key(0))
    )


def test_names_and_bad_inputs():
    assert set(typing.get_args(EvalNet)) == {"convnet", *NETWORKS}
    with pytest.raises(ConfigError, match="choose among convnet, alexnet"):
        network_spec("resnet50", 10, (32, 32, 3))
    with pytest.raises(ConfigError, match="at least 28 px"):
        make_network(network_spec("vgg11", 10, (8, 8, 1)))
    with pytest.raises(ConfigError, match="width_scale"):
        network_spec("vgg11", 10, (32, 32, 3), width_scale=0)
