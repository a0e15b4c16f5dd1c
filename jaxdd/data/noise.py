"""Label-noise generators for training labels (docs/algorithms.md §0.4).

Noise is drawn once on the host, so everything here is numpy with a
``np.random.default_rng(seed)`` per call: the same seed gives the same noisy
labels. Every generator returns a `NoisyLabels` that carries the noisy labels,
the clean/noisy mask and the *realised* noise rate and transition matrix, so a
run reports the noise it actually trained on rather than the nominal one.

Spec strings (``--noise`` on the command line) are parsed by `parse_noise`;
`make_noisy` applies a spec to a `Dataset`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from scipy import stats

from jaxdd.data.dataset import Dataset
from jaxdd.errors import ConfigError

# CIFAR-100 fine label names; alphabetical order is the fine label index.
CIFAR100_FINE_NAMES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

# The 20 CIFAR-100 superclasses (coarse label index = position) and their 5 fine
# members each; "mouse" is kept in small_mammals (the seed paper's code drops it).
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def _superclass_cycle_map() -> dict[int, int]:
    """Each CIFAR-100 fine class -> the next class of its superclass (cyclic, by index)."""
    index = {name: i for i, name in enumerate(CIFAR100_FINE_NAMES)}
    mapping = {}
    for members in CIFAR100_SUPERCLASSES.values():
        ids = sorted(index[name] for name in members)
        mapping.update(zip(ids, ids[1:] + ids[:1], strict=True))
    return mapping


# truck->automobile, bird->airplane, deer->horse, cat->dog, dog->cat.
CIFAR10_MAP: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
# T-shirt<->Shirt, Pullover<->Coat, Sandal<->Sneaker ("visually similar" classes).
FASHION_MNIST_MAP: dict[int, int] = {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5}
MNIST_MAP: dict[int, int] = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
CIFAR100_MAP: dict[int, int] = _superclass_cycle_map()

# Built-in asymmetric class maps by dataset registry name (source -> target).
ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    "cifar10": CIFAR10_MAP,
    "cifar10_n": CIFAR10_MAP,
    "cifar100": CIFAR100_MAP,
    "cifar100_n": CIFAR100_MAP,
    "fashion_mnist": FASHION_MNIST_MAP,
    "mnist": MNIST_MAP,
}

# Spread of the per-sample flip rate in instance-dependent noise (Xia et al. 2020).
_IDN_RATE_STD = 0.1


class NoisyLabels(NamedTuple):
    """Noisy training labels and the noise they actually carry.

    Attributes:
      labels: ``[N] int32`` noisy labels.
      is_clean: ``[N] bool``, ``labels == clean labels``.
      rate: realised noise rate, the mean of ``~is_clean``.
      transition: ``[C, C] float64`` realised ``T[i, j] = P(noisy=j | clean=i)``;
        rows of classes absent from the clean labels are 0.
    """

    labels: np.ndarray
    is_clean: np.ndarray
    rate: float
    transition: np.ndarray


def _check_rate(rate: float) -> float:
    if not 0.0 <= rate < 1.0:  # also rejects NaN
        raise ConfigError(
            f"noise rate must be in [0, 1), got {rate}: pass e.g. --noise symmetric:0.4"
        )
    return float(rate)


def _check_labels(labels: np.ndarray, num_classes: int, what: str = "labels") -> np.ndarray:
    """Returns ``labels`` as ``[N] int32`` after checking shape, dtype and range."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ConfigError(
            f"{what} must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}"
        )
    if num_classes < 2:
        raise ConfigError(f"label noise needs at least 2 classes, got num_classes={num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"{what} must lie in [0, {num_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]: pass the dataset's num_classes"
        )
    return labels.astype(np.int32)


def realised(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> NoisyLabels:
    """Measures the noise in ``noisy`` relative to ``clean``.

    Args:
      clean: ``[N] int`` clean labels in ``[0, num_classes)``.
      noisy: ``[N] int`` noisy labels in ``[0, num_classes)``.
      num_classes: ``C``.

    Returns:
      `NoisyLabels` with the realised rate and ``[C, C]`` transition matrix.
    """
    clean = _check_labels(clean, num_classes, "clean labels")
    noisy = _check_labels(noisy, num_classes, "noisy labels")
    if clean.shape != noisy.shape:
        raise ConfigError(
            f"clean and noisy labels differ in length ({clean.size} vs {noisy.size}): "
            "noisy labels must have one entry per training example"
        )
    is_clean = clean == noisy
    pairs = clean.astype(np.int64) * num_classes + noisy
    counts = np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)
    totals = counts.sum(axis=1, keepdims=True)
    transition = np.divide(counts, totals, out=np.zeros(counts.shape, np.float64), where=totals > 0)
    rate = float(1.0 - is_clean.mean()) if clean.size else 0.0
    return NoisyLabels(noisy, is_clean, rate, transition)


def symmetric(
    labels: np.ndarray, rate: float, num_classes: int, *, seed: int, exact: bool = False
) -> NoisyLabels:
    """Symmetric noise: a label moves to one of the other ``C - 1`` classes uniformly.

    Args:
      labels: ``[N] int`` clean labels.
      rate: flip probability in ``[0, 1)``; the realised rate is ~``rate``.
      num_classes: ``C``.
      seed: numpy seed.
      exact: flip exactly ``round(rate * N)`` labels chosen at random instead of
        flipping each label independently.

    Returns:
      `NoisyLabels` with ``[N] int32`` labels.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    rng = np.random.default_rng(seed)
    n = labels.size
    if exact:
        flip = np.zeros(n, bool)
        flip[rng.choice(n, size=round(rate * n), replace=False)] = True
    else:
        flip = rng.random(n) < rate
    # A shift in [1, C) never maps a class onto itself, so every flip is a real one.
    shift = rng.integers(1, num_classes, size=n)
    noisy = np.where(flip, (labels + shift) % num_classes, labels)
    return realised(labels, noisy, num_classes)


def symmetric_inclusive(
    labels: np.ndarray, rate: float, num_classes: int, *, seed: int
) -> NoisyLabels:
    """DivideMix-style symmetric noise: with prob. ``rate`` redraw over ALL ``C`` classes.

    A redraw can land on the true class, so the realised rate is
    ~``rate * (C - 1) / C``; offered for comparison with that literature.

    Args:
      labels: ``[N] int`` clean labels.
      rate: redraw probability in ``[0, 1)``.
      num_classes: ``C``.
      seed: numpy seed.

    Returns:
      `NoisyLabels` with ``[N] int32`` labels.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    rng = np.random.default_rng(seed)
    redraw = rng.random(labels.size) < rate
    noisy = np.where(redraw, rng.integers(0, num_classes, size=labels.size), labels)
    return realised(labels, noisy, num_classes)


def asymmetric(
    labels: np.ndarray,
    rate: float,
    num_classes: int,
    *,
    seed: int,
    mapping: Mapping[int, int],
) -> NoisyLabels:
    """Class-conditional noise: each source class flips to its target with prob. ``rate``.

    Classes that are not a key of ``mapping`` never flip.

    Args:
      labels: ``[N] int`` clean labels.
      rate: flip probability of a source class in ``[0, 1)``.
      num_classes: ``C``.
      seed: numpy seed.
      mapping: source class -> target class, e.g. `ASYMMETRIC_MAPS` entries.

    Returns:
      `NoisyLabels` with ``[N] int32`` labels.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    pairs = np.array(list(mapping.items()), np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= num_classes):
        raise ConfigError(
            f"asymmetric noise mapping {dict(mapping)} names classes outside "
            f"[0, {num_classes}): give source -> target pairs of valid class indices"
        )
    target = np.arange(num_classes)
    target[pairs[:, 0]] = pairs[:, 1]
    rng = np.random.default_rng(seed)
    flip = rng.random(labels.size) < rate
    noisy = np.where(flip, target[labels], labels)
    return realised(labels, noisy, num_classes)


def pairflip(labels: np.ndarray, rate: float, num_classes: int, *, seed: int) -> NoisyLabels:
    """Pair-flip noise: class ``c`` -> ``(c + 1) % C`` with prob. ``rate``.

    Args:
      labels: ``[N] int`` clean labels.
      rate: flip probability in ``[0, 1)``.
      num_classes: ``C``.
      seed: numpy seed.

    Returns:
      `NoisyLabels` with ``[N] int32`` labels.
    """
    mapping = {c: (c + 1) % num_classes for c in range(num_classes)}
    return asymmetric(labels, rate, num_classes, seed=seed, mapping=mapping)


def _sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One inverse-CDF draw per row of ``probs: [N, C]``; returns ``[N]`` indices."""
    cdf = np.cumsum(probs, axis=1)
    # Normalising makes the last entry exactly 1 > u, so rounding can never push
    # a draw past the end; "<=" skips zero-probability classes (equal cdf steps).
    cdf /= cdf[:, -1:]
    u = rng.random((probs.shape[0], 1))
    return (cdf <= u).sum(axis=1)


def instance_dependent(
    labels: np.ndarray, rate: float, num_classes: int, *, features: np.ndarray, seed: int
) -> NoisyLabels:
    """Instance-dependent noise, Xia et al. 2020's generator (docs/algorithms.md §0.4).

    Per sample, a flip rate ``q_i ~ TruncNormal(rate, 0.1, [0, 1])``; a random
    projection ``W: [C, D, C]`` scores the other classes with
    ``softmax(features_i @ W[y_i])`` (true class masked), scaled to ``q_i``;
    the true class keeps ``1 - q_i``. Which class a sample flips to therefore
    depends on its features. ``rate == 0`` gives no noise at all (the truncated
    normal around 0 would otherwise still flip ~8%).

    Args:
      labels: ``[N] int`` clean labels.
      rate: mean flip rate in ``[0, 1)``; realised rate ~``rate`` away from the bounds.
      num_classes: ``C``.
      features: ``[N, D] float``, e.g. standardised flattened images.
      seed: numpy seed.

    Returns:
      `NoisyLabels` with ``[N] int32`` labels.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != labels.size:
        raise ConfigError(
            f"instance-dependent noise needs features of shape [N={labels.size}, D], "
            f"got {features.shape}: pass one flattened feature row per label"
        )
    n, rows = labels.size, np.arange(labels.size)
    rng = np.random.default_rng(seed)
    lo, hi = (0.0 - rate) / _IDN_RATE_STD, (1.0 - rate) / _IDN_RATE_STD
    q = stats.truncnorm.rvs(lo, hi, loc=rate, scale=_IDN_RATE_STD, size=n, random_state=rng)
    q = q if rate > 0 else np.zeros(n)
    w = rng.standard_normal((num_classes, features.shape[1], num_classes))
    logits = np.empty((n, num_classes))
    # Per class, not per sample: never materialise an [N, D, C] array.
    for c in range(num_classes):
        members = labels == c
        logits[members] = features[members].astype(np.float64) @ w[c]
    logits[rows, labels] = -np.inf
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs *= (q / probs.sum(axis=1))[:, None]
    probs[rows, labels] += 1.0 - q
    return realised(labels, _sample_categorical(probs, rng), num_classes)


def natural(clean: np.ndarray, noisy: np.ndarray, num_classes: int | None = None) -> NoisyLabels:
    """Wraps noisy labels that come with the data (CIFAR-N fields, ``y_train_noisy``).

    Args:
      clean: ``[N] int`` clean labels.
      noisy: ``[N] int`` given noisy labels.
      num_classes: ``C``; inferred as ``max label + 1`` when omitted.

    Returns:
      `NoisyLabels` with the given labels and their realised noise.
    """
    if num_classes is None:
        num_classes = int(max(np.max(clean, initial=0), np.max(noisy, initial=0))) + 1
    return realised(clean, noisy, num_classes)


_RATED_KINDS = (
    "symmetric",
    "symmetric-exact",
    "symmetric-inclusive",
    "asymmetric",
    "pairflip",
    "instance",
)
NOISE_KINDS: tuple[str, ...] = ("none", *_RATED_KINDS, "natural")
_SPEC_HELP = (
    "use one of: none, symmetric:R, symmetric-exact:R, symmetric-inclusive:R, "
    "asymmetric:R, asymmetric:R:S=T,S=T..., pairflip:R, instance:R, natural, natural:FIELD "
    "(R in [0, 1); S=T: class S flips to class T)"
)
_MAP_EXAMPLE = "--noise asymmetric:0.4:1=7,7=1"


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """A parsed ``--noise`` value.

    Attributes:
      kind: one of `NOISE_KINDS`.
      rate: noise rate in ``[0, 1)`` (0 for ``none`` and ``natural``).
      field: for ``natural``, the dataset's noisy-label field (None = default).
      mapping: for ``asymmetric``, the ``(source, target)`` class pairs
        (None: the dataset's built-in map, `ASYMMETRIC_MAPS`).
    """

    kind: str
    rate: float = 0.0
    field: str | None = None
    mapping: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ConfigError(f"unknown noise kind {self.kind!r}: {_SPEC_HELP}")
        _check_rate(self.rate)
        if self.kind not in _RATED_KINDS and self.rate != 0.0:
            raise ConfigError(f"noise kind {self.kind!r} takes no rate: {_SPEC_HELP}")
        if self.field is not None and self.kind != "natural":
            raise ConfigError(f"only natural noise takes a field, got {self.kind!r}: {_SPEC_HELP}")
        if self.mapping is not None and self.kind != "asymmetric":
            raise ConfigError(f"only asymmetric noise takes a class map, got {self.kind!r}")


def parse_noise(spec: str) -> NoiseSpec:
    """Parses a noise spec string such as ``"symmetric:0.4"`` or ``"natural:worst"``.

    Args:
      spec: ``none`` | ``KIND:RATE`` for KIND in symmetric, symmetric-exact,
        symmetric-inclusive, asymmetric, pairflip, instance |
        ``asymmetric:RATE:S=T,S=T,...`` (class S flips to class T; classes
        not named never flip) | ``natural`` | ``natural:FIELD``.

    Returns:
      The validated `NoiseSpec`.
    """
    kind, _, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind in ("none", "natural"):
        if kind == "none" and arg:
            raise ConfigError(f"noise spec {spec!r}: 'none' takes no argument; {_SPEC_HELP}")
        return NoiseSpec(kind, 0.0, arg.strip() or None)
    if kind not in _RATED_KINDS:
        raise ConfigError(f"unknown noise kind {kind!r} in {spec!r}: {_SPEC_HELP}")
    arg, has_map, pairs = arg.partition(":")
    try:
        rate = float(arg)
    except ValueError:
        raise ConfigError(
            f"noise spec {spec!r} needs a numeric rate, e.g. --noise {kind}:0.4"
        ) from None
    if has_map and kind != "asymmetric":
        raise ConfigError(f"noise spec {spec!r}: only asymmetric noise takes a class map")
    return NoiseSpec(kind, rate, mapping=_parse_map(pairs, spec) if has_map else None)


def _parse_map(text: str, spec: str) -> tuple[tuple[int, int], ...]:
    """``"S=T,S=T"`` -> ``((S, T), ...)``: distinct sources, no class mapped onto itself."""
    pairs = []
    for entry in text.split(","):
        source, eq, target = (part.strip() for part in entry.partition("="))
        if not (eq and source.isdigit() and target.isdigit()):
            raise ConfigError(
                f"noise spec {spec!r}: class map entry {entry.strip()!r} is not SOURCE=TARGET "
                f"with class indices, e.g. {_MAP_EXAMPLE}"
            )
        pairs.append((int(source), int(target)))
    sources = [s for s, _ in pairs]
    if len(set(sources)) < len(sources) or any(s == t for s, t in pairs):
        raise ConfigError(
            f"noise spec {spec!r}: each class may flip to one other class, e.g. {_MAP_EXAMPLE}"
        )
    return tuple(pairs)


def _standardised_features(images: np.ndarray) -> np.ndarray:
    """``[N, H, W, C] uint8`` -> ``[N, H*W*C] float32`` with zero mean, unit std per pixel."""
    x = images.reshape(images.shape[0], -1).astype(np.float32)
    x -= x.mean(axis=0)
    # Constant pixels (e.g. MNIST borders) have std 0; leave them at 0 instead of NaN.
    x /= np.maximum(x.std(axis=0), 1e-6)
    return x


def _natural_field(dataset: Dataset, field: str | None) -> np.ndarray:
    """The dataset's noisy labels named ``field`` (default: ``aggre``, or the only one)."""
    fields = dataset.noisy_labels
    if not fields:
        raise ConfigError(
            f"dataset {dataset.name!r} has no natural noisy labels: use cifar10_n, "
            "cifar100_n, or an npz file with y_train_noisy, or a synthetic noise kind"
        )
    if field is None:
        if "aggre" in fields or len(fields) == 1:
            field = "aggre" if "aggre" in fields else next(iter(fields))
        else:
            raise ConfigError(
                f"dataset {dataset.name!r} has several noisy label fields {sorted(fields)}: "
                "pick one with --noise natural:FIELD"
            )
    if field not in fields:
        raise ConfigError(
            f"dataset {dataset.name!r} has no noisy label field {field!r}: "
            f"use --noise natural:FIELD with FIELD in {sorted(fields)}"
        )
    return fields[field]


def _asymmetric_map(dataset: Dataset, mapping: Mapping[int, int] | None) -> Mapping[int, int]:
    if mapping is not None:
        return mapping
    if dataset.name not in ASYMMETRIC_MAPS:
        raise ConfigError(
            f"no built-in asymmetric noise map for dataset {dataset.name!r} (built-in: "
            f"{', '.join(ASYMMETRIC_MAPS)}): give one in the spec, e.g. {_MAP_EXAMPLE} "
            "(class 1 flips to 7 and 7 to 1), pass an explicit mapping={source: target} "
            "from Python, or use --noise pairflip:R"
        )
    return ASYMMETRIC_MAPS[dataset.name]


def make_noisy(
    dataset: Dataset,
    spec: str | NoiseSpec,
    *,
    seed: int,
    mapping: Mapping[int, int] | None = None,
) -> NoisyLabels:
    """Applies a noise spec to ``dataset.y_train``.

    Args:
      dataset: the data; only its training labels (and, for ``instance``, its
        training images; for ``natural``, its ``noisy_labels``) are used.
      spec: a spec string (see `parse_noise`) or a `NoiseSpec`.
      seed: numpy seed of the noise draw.
      mapping: explicit source -> target classes for ``asymmetric`` (default:
        the spec's map, else the `ASYMMETRIC_MAPS` entry of ``dataset.name``).

    Returns:
      `NoisyLabels` for the ``[N]`` training labels.
    """
    spec = parse_noise(spec) if isinstance(spec, str) else spec
    if mapping is not None and spec.kind != "asymmetric":
        raise ConfigError(f"a class mapping only applies to asymmetric noise, not {spec.kind!r}")
    if mapping is not None and spec.mapping is not None:
        raise ConfigError("give the asymmetric class map once: in the spec or as mapping=")
    if spec.mapping is not None:
        mapping = dict(spec.mapping)
    y, c = dataset.y_train, dataset.num_classes
    if spec.kind == "none":
        return realised(y, y, c)
    if spec.kind == "natural":
        return natural(y, _natural_field(dataset, spec.field), c)
    if spec.kind == "asymmetric":
        mapping = _asymmetric_map(dataset, mapping)
        return asymmetric(y, spec.rate, c, seed=seed, mapping=mapping)
    if spec.kind == "instance":
        features = _standardised_features(dataset.x_train)
        return instance_dependent(y, spec.rate, c, features=features, seed=seed)
    if spec.kind == "symmetric-inclusive":
        return symmetric_inclusive(y, spec.rate, c, seed=seed)
    if spec.kind == "pairflip":
        return pairflip(y, spec.rate, c, seed=seed)
    return symmetric(y, spec.rate, c, seed=seed, exact=spec.kind == "symmetric-exact")
