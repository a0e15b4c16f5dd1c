"""Tests of the label-noise generators (docs/algorithms.md §0.4)."""

import numpy as np
import pytest

from jaxdd.data import noise
from jaxdd.data.dataset import Dataset
from jaxdd.errors import ConfigError

C10 = 10


def balanced(num_classes: int, per_class: int) -> np.ndarray:
    """``[num_classes * per_class] int32`` labels, shuffled deterministically."""
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    return np.random.default_rng(0).permutation(labels)


def within_sigmas(observed: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    """Whether a binomial proportion is within ``sigmas`` standard errors of ``p``."""
    return abs(observed - p) <= sigmas * np.sqrt(p * (1 - p) / n)


def toy_dataset(name: str = "toy", noisy_labels=None, num_classes: int = 4) -> Dataset:
    rng = np.random.default_rng(1)
    y = balanced(num_classes, 30)
    return Dataset(
        name=name,
        x_train=rng.integers(0, 256, (y.size, 4, 4, 1), dtype=np.uint8),
        y_train=y,
        x_test=np.zeros((2, 4, 4, 1), np.uint8),
        y_test=np.zeros(2, np.int32),
        class_names=tuple("abcdefghij"[:num_classes]),
        noisy_labels=noisy_labels or {},
    )


def test_symmetric_flips_to_other_classes_uniformly_at_rate():
    y, r = balanced(C10, 2000), 0.4
    out = noise.symmetric(y, r, C10, seed=0)
    assert out.labels.dtype == np.int32 and out.labels.shape == y.shape
    np.testing.assert_array_equal(out.is_clean, out.labels == y)
    # A flip that could land on the true class would give r * 9/10 = 0.36, ~11 sigma off.
    assert within_sigmas(out.rate, r, y.size)
    assert out.rate == pytest.approx(np.mean(out.labels != y))
    off = out.transition[~np.eye(C10, dtype=bool)]
    np.testing.assert_allclose(np.diag(out.transition), 1 - r, atol=0.05)
    np.testing.assert_allclose(off, r / (C10 - 1), atol=0.02)


@pytest.mark.parametrize(("n", "r"), [(1001, 0.33), (500, 0.2), (37, 0.5), (10, 0.0)])
def test_symmetric_exact_flips_exactly_round_rn(n, r):
    y = np.arange(n, dtype=np.int32) % 3
    out = noise.symmetric(y, r, 3, seed=5, exact=True)
    assert int((~out.is_clean).sum()) == round(r * n)
    assert out.rate == pytest.approx(round(r * n) / n)


def test_symmetric_inclusive_rate_is_r_times_c_minus_1_over_c():
    y, r, c = balanced(4, 5000), 0.4, 4
    out = noise.symmetric_inclusive(y, r, c, seed=0)
    assert within_sigmas(out.rate, r * (c - 1) / c, y.size)  # 0.3, not 0.4
    np.testing.assert_allclose(np.diag(out.transition), 1 - r * (c - 1) / c, atol=0.03)


def test_asymmetric_cifar10_flips_only_sources_to_targets():
    y, r = balanced(C10, 2000), 0.4
    mapping = noise.ASYMMETRIC_MAPS["cifar10"]
    assert mapping == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    out = noise.asymmetric(y, r, C10, seed=0, mapping=mapping)
    flipped = ~out.is_clean
    assert set(np.unique(y[flipped])) == set(mapping)
    np.testing.assert_array_equal(out.labels[flipped], [mapping[c] for c in y[flipped]])
    for c in range(C10):
        row = out.transition[c]
        if c in mapping:
            assert within_sigmas(row[mapping[c]], r, 2000)
            assert row[c] + row[mapping[c]] == pytest.approx(1.0)
        else:
            assert row[c] == 1.0
    # Half of the classes are sources.
    assert abs(out.rate - r / 2) < 4 * np.sqrt(r * (1 - r) / 2 / y.size)


def test_builtin_maps_stay_inside_their_datasets():
    assert noise.ASYMMETRIC_MAPS["fashion_mnist"] == {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5}
    assert noise.ASYMMETRIC_MAPS["mnist"] == {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
    assert noise.ASYMMETRIC_MAPS["cifar10_n"] == noise.ASYMMETRIC_MAPS["cifar10"]
    assert noise.ASYMMETRIC_MAPS["cifar100_n"] == noise.ASYMMETRIC_MAPS["cifar100"]


def test_cifar100_map_cycles_within_full_superclasses():
    names = noise.CIFAR100_FINE_NAMES
    assert len(names) == 100 and list(names) == sorted(names)
    members = [m for ms in noise.CIFAR100_SUPERCLASSES.values() for m in ms]
    assert len(noise.CIFAR100_SUPERCLASSES) == 20 and sorted(members) == list(names)
    coarse = {names.index(m): k for k, ms in enumerate(noise.CIFAR100_SUPERCLASSES.values())
              for m in ms}  # fmt: skip
    mapping = noise.ASYMMETRIC_MAPS["cifar100"]
    assert sorted(mapping) == list(range(100)) == sorted(mapping.values())
    assert all(coarse[s] == coarse[t] and s != t for s, t in mapping.items())
    # small mammals, by fine index: hamster 36, mouse 50, rabbit 65, shrew 74, squirrel 80.
    assert [mapping[i] for i in (36, 50, 65, 74, 80)] == [50, 65, 74, 80, 36]
    for start in mapping:  # every orbit is the 5-cycle of its superclass
        orbit = [start]
        while (nxt := mapping[orbit[-1]]) != start:
            orbit.append(nxt)
        assert len(orbit) == 5


def test_pairflip_goes_to_next_class_with_wraparound():
    y, r, c = balanced(5, 2000), 0.3, 5
    out = noise.pairflip(y, r, c, seed=0)
    flipped = ~out.is_clean
    np.testing.assert_array_equal(out.labels[flipped], (y[flipped] + 1) % c)
    assert 0 in out.labels[flipped & (y == c - 1)]
    assert within_sigmas(out.rate, r, y.size)
    np.testing.assert_allclose(np.diag(np.roll(out.transition, -1, axis=1)), r, atol=0.05)


def random_features(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_instance_dependent_rate_and_dependence_on_features():
    y, r, c = balanced(5, 1000), 0.4, 5
    a = noise.instance_dependent(y, r, c, features=random_features(y.size, 16, 1), seed=0)
    b = noise.instance_dependent(y, r, c, features=random_features(y.size, 16, 2), seed=0)
    for out in (a, b):
        # Each sample flips with prob. q_i, E[q_i] = r (truncation at 4 sigma is negligible).
        assert within_sigmas(out.rate, r, y.size)
    assert np.mean(a.labels != b.labels) > 0.2
    assert np.mean(a.is_clean != b.is_clean) > 0.1


def test_instance_dependent_target_is_set_by_features():
    # All samples of a class share one large feature vector: the softmax over the
    # other classes is one-hot, so every flip of a class goes to one target,
    # unlike symmetric noise whose rows spread evenly.
    y, r, c = balanced(5, 1000), 0.4, 5
    features = 50.0 * random_features(c, 8, 3)[y]
    out = noise.instance_dependent(y, r, c, features=features, seed=0)
    off = out.transition * (1 - np.eye(c))
    np.testing.assert_allclose(off.max(axis=1), off.sum(axis=1))
    assert np.all(off.sum(axis=1) > 0.3)
    # Two feature groups inside a class can send its flips to different targets.
    twisted = features.copy()
    twisted[: y.size // 2] *= -1
    split = noise.instance_dependent(y, r, c, features=twisted, seed=0)
    offs = split.transition * (1 - np.eye(c))
    assert np.count_nonzero(offs > 0.02) > c


def test_instance_dependent_zero_rate_is_clean():
    y = balanced(3, 50)
    out = noise.instance_dependent(y, 0.0, 3, features=random_features(y.size, 4, 0), seed=0)
    assert out.rate == 0.0 and out.is_clean.all()


def test_transition_rows_sum_to_one_for_present_classes_only():
    y = balanced(3, 200)  # classes 3 and 4 of 5 are absent
    out = noise.symmetric(y, 0.5, 5, seed=0)
    np.testing.assert_allclose(out.transition.sum(axis=1), [1, 1, 1, 0, 0])
    direct = noise.realised(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_allclose(direct.transition, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])
    assert direct.rate == 0.25
    np.testing.assert_array_equal(direct.is_clean, [True, False, True, True])


GENERATORS = {
    "symmetric": lambda y, s: noise.symmetric(y, 0.3, 4, seed=s),
    "exact": lambda y, s: noise.symmetric(y, 0.3, 4, seed=s, exact=True),
    "inclusive": lambda y, s: noise.symmetric_inclusive(y, 0.3, 4, seed=s),
    "asymmetric": lambda y, s: noise.asymmetric(y, 0.3, 4, seed=s, mapping={0: 1, 2: 3}),
    "pairflip": lambda y, s: noise.pairflip(y, 0.3, 4, seed=s),
    "instance": lambda y, s: noise.instance_dependent(
        y, 0.3, 4, features=random_features(y.size, 6, 9), seed=s
    ),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_reproduces_different_seed_differs(name):
    y, gen = balanced(4, 100), GENERATORS[name]
    first, again, other = gen(y, 7), gen(y, 7), gen(y, 8)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.transition, again.transition)
    assert not np.array_equal(first.labels, other.labels)


def test_parse_noise_valid_specs():
    assert noise.parse_noise("none") == noise.NoiseSpec("none", 0.0, None)
    assert noise.parse_noise("symmetric:0.4") == noise.NoiseSpec("symmetric", 0.4)
    assert noise.parse_noise(" Pairflip:0.2 ") == noise.NoiseSpec("pairflip", 0.2)
    for kind in ("symmetric-exact", "symmetric-inclusive", "asymmetric", "instance"):
        assert noise.parse_noise(f"{kind}:0.25") == noise.NoiseSpec(kind, 0.25)
    assert noise.parse_noise("natural") == noise.NoiseSpec("natural", 0.0, None)
    assert noise.parse_noise("natural:worst") == noise.NoiseSpec("natural", 0.0, "worst")


@pytest.mark.parametrize(
    ("spec", "fix"),
    [
        ("symmetric:1.2", "--noise symmetric:0.4"),
        ("symmetric:-0.1", "must be in [0, 1)"),
        ("gaussian:0.2", "symmetric-inclusive:R"),
        ("symmetric", "e.g. --noise symmetric:0.4"),
        ("pairflip:abc", "numeric rate"),
        ("none:0.1", "takes no argument"),
    ],
)
def test_parse_noise_errors_name_the_fix(spec, fix):
    with pytest.raises(ConfigError) as err:
        noise.parse_noise(spec)
    assert fix in str(err.value)


def test_generators_reject_bad_input():
    with pytest.raises(ConfigError, match=r"\[0, 3\)"):
        noise.symmetric(np.array([0, 1, 3]), 0.2, 3, seed=0)
    with pytest.raises(ConfigError, match="--noise symmetric:0.4"):
        noise.pairflip(np.array([0, 1]), 1.0, 3, seed=0)
    with pytest.raises(ConfigError, match="valid class indices"):
        noise.asymmetric(np.array([0, 1]), 0.2, 3, seed=0, mapping={0: 5})
    with pytest.raises(ConfigError, match=r"shape \[N=2, D\]"):
        noise.instance_dependent(np.array([0, 1]), 0.2, 3, features=np.zeros((3, 2)), seed=0)
    with pytest.raises(ConfigError, match="differ in length"):
        noise.natural(np.array([0, 1]), np.array([0, 1, 1]))


def test_make_noisy_natural_fields():
    ds = toy_dataset()
    aggre, worst = (ds.y_train + 1) % 4, ds.y_train.copy()
    worst[:30] = (worst[:30] + 2) % 4
    ds = toy_dataset(noisy_labels={"aggre": aggre, "worst": worst})
    default = noise.make_noisy(ds, "natural", seed=0)
    np.testing.assert_array_equal(default.labels, aggre)
    assert default.rate == 1.0
    picked = noise.make_noisy(ds, noise.parse_noise("natural:worst"), seed=0)
    np.testing.assert_array_equal(picked.labels, worst)
    assert picked.rate == pytest.approx(30 / 120)
    with pytest.raises(ConfigError, match=r"natural:FIELD with FIELD in \['aggre', 'worst'\]"):
        noise.make_noisy(ds, "natural:random1", seed=0)
    with pytest.raises(ConfigError, match="cifar10_n, cifar100_n, or an npz file with y_train"):
        noise.make_noisy(toy_dataset(), "natural", seed=0)


def test_make_noisy_asymmetric_mapping():
    ds = toy_dataset()
    out = noise.make_noisy(ds, "asymmetric:0.5", seed=0, mapping={1: 2})
    flipped = ~out.is_clean
    assert flipped.any() and np.all(ds.y_train[flipped] == 1) and np.all(out.labels[flipped] == 2)
    with pytest.raises(ConfigError, match=r"pass an explicit mapping=\{source: target\}"):
        noise.make_noisy(ds, "asymmetric:0.5", seed=0)
    with pytest.raises(ConfigError, match="only applies to asymmetric"):
        noise.make_noisy(ds, "symmetric:0.5", seed=0, mapping={1: 2})
    mnist = toy_dataset("mnist", num_classes=10)
    builtin = noise.make_noisy(mnist, "asymmetric:0.5", seed=0)
    flipped = ~builtin.is_clean
    assert set(np.unique(mnist.y_train[flipped])) == {7, 2, 5, 6, 3}
    targets = [noise.MNIST_MAP[c] for c in mnist.y_train[flipped]]
    np.testing.assert_array_equal(builtin.labels[flipped], targets)
    expected = noise.asymmetric(mnist.y_train, 0.5, 10, seed=0, mapping=noise.MNIST_MAP)
    np.testing.assert_array_equal(builtin.labels, expected.labels)


def test_make_noisy_other_kinds_match_direct_calls():
    ds = toy_dataset()
    y = ds.y_train
    np.testing.assert_array_equal(noise.make_noisy(ds, "none", seed=0).labels, y)
    assert noise.make_noisy(ds, "none", seed=0).rate == 0.0
    cases = {
        "symmetric:0.3": noise.symmetric(y, 0.3, 4, seed=3),
        "symmetric-exact:0.3": noise.symmetric(y, 0.3, 4, seed=3, exact=True),
        "symmetric-inclusive:0.3": noise.symmetric_inclusive(y, 0.3, 4, seed=3),
        "pairflip:0.3": noise.pairflip(y, 0.3, 4, seed=3),
    }
    for spec, expected in cases.items():
        np.testing.assert_array_equal(noise.make_noisy(ds, spec, seed=3).labels, expected.labels)
    idn = noise.make_noisy(ds, "instance:0.3", seed=3)
    assert idn.labels.shape == y.shape and 0.0 < idn.rate < 0.6
