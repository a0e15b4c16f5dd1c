"""The first pipeline stages every driver shares: data → noise → [trust] → pixel space.

    dataset ──► noise ──► (stratified cap) ──► pixel space ──► [TAD / small-loss split]

`prepare` returns a `Prepared` value that baselines and distillation methods
train from; with a trust config, only the trusted space (with its
recalibrated labels) remains — the diversion of docs/algorithms.md §4.4 — and the
data before diversion stays at hand (`Prepared.source`) for an
expert-filtered image initialisation (`TADConfig.init_pool`, jaxdd's own
design) and for counting expert epochs in the given set's SGD steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import zipfile

import jax
import numpy as np

from jaxdd import hosts, report, rng
from jaxdd.data import noise as noise_lib
from jaxdd.data.dataset import Dataset
from jaxdd.data.preprocess import PixelSpace, pixel_space
from jaxdd.data.registry import load_dataset
from jaxdd.errors import ConfigError
from jaxdd.locking import DirectoryLock
from jaxdd.models.convnet import ConvNetSpec, Model, depth_for, make_convnet
from jaxdd.ops.losses import one_hot
from jaxdd.trust.dual import TADConfig, TrustSplit, diversion_weights, run_tad
from jaxdd.trust.plots import save_loss_histograms, save_round_curves


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Training data after noise and (optionally) trust diversion.

    Attributes:
      ds: the dataset (clean labels, test set, class names).
      noisy: the injected noise over the FULL training set.
      idx: ``[n]`` indices into ``ds.x_train`` of the samples kept.
      x: ``[n, H, W, C] float32`` those images in the pixel space.
      labels: ``[n]`` the labels to train with (noisy, or recalibrated).
      space: the pixel space (normalisation, optional ZCA).
      split: the trust split over the pre-diversion samples, or None.
      weights: ``[n]`` per-sample training weights after diversion
        (`jaxdd.trust.dual.diversion_weights`), or None for equal weights.
      trusted: ``[n] bool`` the trusted samples among those kept (all of
        them unless `TADConfig.diversion` is ``weight``), or None without
        diversion: unfiltered real-image initialisations draw from these
        (`init_candidates`).
      source: the data before diversion (every sample, given labels), or
        None without diversion.
      val_idx: ``[v]`` indices into ``ds.x_train`` of the validation split
        (`carve_validation`), held out of every training stage; empty
        without one.
      val_x: ``[v, H, W, C] float32`` its images in the pixel space (None
        without one).
    """

    ds: Dataset
    noisy: noise_lib.NoisyLabels
    idx: np.ndarray
    x: np.ndarray
    labels: np.ndarray
    space: PixelSpace
    split: TrustSplit | None = None
    weights: np.ndarray | None = None
    trusted: np.ndarray | None = None
    source: Prepared | None = None
    val_idx: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    val_x: np.ndarray | None = None

    @property
    def val_labels(self) -> np.ndarray:
        """``[v]`` the validation split's GIVEN (noisy) labels: what model selection
        may look at. Its clean labels are never used to choose anything."""
        return self.noisy.labels[self.val_idx]

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(val_x, val_labels)``: the noisy validation split, or None without one."""
        return None if self.val_x is None else (self.val_x, self.val_labels)

    @property
    def given_size(self) -> int:
        """How many training samples there were before trust diversion."""
        return len(self.labels) if self.source is None else len(self.source.labels)

    def init_candidates(self, *, every_sample: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x [m, H, W, C], labels [m], clean [m])`` a real-image init draws from.

        The trusted space (`init_pool`) with its labels, or with
        `every_sample` every sample before diversion with its given label
        (`TADConfig.init_pool`; without diversion the two are the same).
        """
        if every_sample and self.source is not None:
            return self.source.x, self.source.labels, self.source.clean
        pool = self.init_pool
        return self.x[pool], self.labels[pool], self.clean[pool]

    @property
    def init_pool(self) -> np.ndarray:
        """``[m]`` positions (into `x`) that real-image initialisations draw from."""
        return np.arange(len(self.labels)) if self.trusted is None else np.flatnonzero(self.trusted)

    def label_noise(self) -> float:
        """The label noise the training sees: weighted by `weights` when there are any."""
        wrong = (self.labels != self.clean).astype(np.float64)
        return float(np.average(wrong, weights=self.weights)) if len(wrong) else 0.0

    @property
    def clean(self) -> np.ndarray:
        """``[n]`` true labels of the kept samples."""
        return self.ds.y_train[self.idx]

    def targets(self, keep: np.ndarray | None = None, *, weighted: bool = True) -> np.ndarray:
        """``[n, C]`` (or ``[len(keep), C]``) one-hot training targets.

        With `weighted` and `weights`, each row is scaled by its sample's
        weight: a row scaled by w counts w times in `soft_cross_entropy`'s
        mean. (A class-balanced subset, e.g. the random baseline's, needs no
        weights.)
        """
        keep = np.arange(len(self.labels)) if keep is None else keep
        rows = np.asarray(one_hot(self.labels[keep], self.ds.num_classes))
        if not weighted or self.weights is None:
            return rows
        return rows * self.weights[keep, None]

    def spec(self, width: int, depth: int | None = None) -> ConvNetSpec:
        """The ConvNet shape for this data (depth by image size unless given)."""
        ds = self.ds
        depth = depth or depth_for(min(ds.image_shape[:2]))
        return ConvNetSpec(ds.num_classes, ds.image_shape, width, depth)

    def model(self, width: int, depth: int | None = None) -> Model:
        """The ConvNet for this data (depth by image size unless given)."""
        return make_convnet(self.spec(width, depth))


def stratified_cap(
    labels: np.ndarray, limit: int, *, seed: int | np.random.Generator
) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of about `limit` examples."""
    rng = np.random.default_rng(seed)
    frac = min(1.0, limit / len(labels))
    picks = [
        rng.permutation(np.flatnonzero(labels == c))[: max(1, round(frac * np.sum(labels == c)))]
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picks))


def carve_validation(
    labels: np.ndarray, fraction: float, *, seed: int | np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` sorted positions: `fraction` of every class (by `labels`) held out.

    Stratified on the given (noisy) labels, ``round(fraction · n_c)`` of
    class c, but always leaving at least one sample of the class to train
    on. How many of each class are held out does not depend on the seed.
    """
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(round(fraction * len(members)), len(members) - 1)
        val.append(rng.permutation(members)[:take])
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), val), val


def prepare(
    dataset: str,
    noise: str,
    *,
    noise_seed: int = 0,
    max_train: int | None = None,
    val_fraction: float = 0.0,
    zca: bool = False,
    trust: TADConfig | None = None,
    seed: int = 0,
    run: report.RunDir | None = None,
    saved_split: str | os.PathLike | None = None,
    split_cache: str | os.PathLike | None = None,
) -> Prepared:
    """Loads, corrupts, caps, holds out a validation split, and (optionally) diverts.

    With `val_fraction` > 0, that share of the kept samples (stratified on
    the given labels) becomes the noisy validation split: no training
    stage (trust split, experts, distillation, evaluation) sees it, and
    evaluations report their accuracy on it against the given labels — a
    model-selection criterion that needs no clean label. The pixel space
    (and ZCA) is fitted on the images of the training samples: images are
    not noisy, only labels are. With `saved_split`, a
    ``trust_split.npz`` that `save_split` wrote (e.g. an earlier session of
    the same run), the trust split is read from it instead of computed.
    With `split_cache`, a directory, a split is computed once per data and
    trust settings and read back by every later run that asks for the same
    (`split_cache_path`): runs of several methods divert to one split.
    """
    ds = load_dataset(dataset)
    noisy = noise_lib.make_noisy(ds, noise, seed=noise_seed)
    log = run.log if run is not None else (lambda **_: None)
    log(event="noise", rate=noisy.rate, transition=noisy.transition)
    idx = np.arange(len(ds.y_train))
    if max_train is not None:
        idx = stratified_cap(noisy.labels, max_train, seed=rng.numpy_rng(seed, "subset"))
    val_idx = idx[:0]
    if val_fraction > 0:
        keep, held = carve_validation(
            noisy.labels[idx], val_fraction, seed=rng.numpy_rng(seed, "validation")
        )
        idx, val_idx = idx[keep], idx[held]
    space = pixel_space(ds.x_train[idx], zca=zca)
    x = np.asarray(space.encode(ds.x_train[idx]))
    val_x = np.asarray(space.encode(ds.x_train[val_idx])) if len(val_idx) else None
    prepared = Prepared(ds, noisy, idx, x, noisy.labels[idx], space, val_idx=val_idx, val_x=val_x)
    if trust is None:
        return prepared
    if saved_split is None:
        split = _trust_split(prepared, trust, seed, run, log, split_cache)
    else:
        split = load_split(saved_split, prepared)
    weights = diversion_weights(split, prepared.labels, ds.num_classes, trust)
    keep = weights > 0
    return dataclasses.replace(
        prepared,
        idx=idx[keep],
        x=x[keep],
        labels=split.labels[keep],
        split=split,
        weights=weights[keep] if trust.rebalance or trust.diversion == "weight" else None,
        trusted=split.trusted[keep],
        source=prepared,
    )


def data_fingerprint(*arrays: jax.typing.ArrayLike) -> str:
    """A sha256 of the arrays' shapes, dtypes and contents."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def split_cache_path(cache, prepared: Prepared, trust: TADConfig, seed: int) -> pathlib.Path:
    """Where the split of `trust` on `prepared` is cached under the directory `cache`.

    Named by a hash of what determines the split: the trust settings but
    ``init_pool`` (which only picks initial images), the seed, and the data
    it partitions (images, given labels, the samples' indices; the clean
    labels too, which its diagnostics count with).
    """
    fields = dataclasses.asdict(trust)
    del fields["init_pool"]
    data = data_fingerprint(prepared.x, prepared.labels, prepared.idx, prepared.clean)
    what = json.dumps([fields, seed, data], default=str)
    key = hashlib.sha256(what.encode()).hexdigest()[:12]
    return pathlib.Path(cache) / f"split-{report.slug(prepared.ds.name)}-{key}" / "trust_split.npz"


def _trust_split(prepared: Prepared, trust: TADConfig, seed: int, run, log, cache) -> TrustSplit:
    """The trust split of `prepared`: computed, or read from `cache`; saved with its plots in `run`.

    One process at a time computes into a cache entry; another one waits,
    then reads it. A split read back logs its rounds as a computed one does.
    """
    if cache is None:
        split = _compute_split(prepared, trust, seed, log)
    else:
        path = split_cache_path(cache, prepared, trust, seed)

        def waiting(pid):
            print(f"waiting for process {pid}'s trust split in {path.parent}", file=sys.stderr)

        with DirectoryLock(path.parent, timeout=None, on_wait=waiting):
            if hosts.decide(path.exists):
                print(f"[trust] split read from {path}", flush=True)
                split = load_split(path, prepared)
                for stats in split.rounds:
                    _report_round(stats, log)
            else:
                split = _compute_split(prepared, trust, seed, log)
                if hosts.is_main():
                    partial = path.with_name("partial.npz")
                    save_split(partial, split, prepared)
                    os.replace(partial, path)
    if run is not None and run.writes:
        save_split(run.path / "trust_split.npz", split, prepared)
        save_loss_histograms(
            run.path / "trust_losses.png",
            split,
            prepared.clean,
            prepared.ds.class_names,
            signal=trust.signal,
            iterations=trust.gmm_iterations,
        )
        save_round_curves(run.path / "trust_rounds.png", split.rounds)
    return split


def _compute_split(prepared: Prepared, trust: TADConfig, seed: int, log) -> TrustSplit:
    """Runs TAD (or the small-loss selection) on `prepared`, reporting each round."""
    return run_tad(
        prepared.model(trust.width),
        jax.numpy.asarray(prepared.x),
        prepared.labels,
        prepared.ds.num_classes,
        trust,
        key=rng.stream(seed, "trust"),
        clean_labels=prepared.clean,
        on_round=lambda stats: _report_round(stats, log),
    )


def save_split(path, split: TrustSplit, prepared: Prepared) -> None:
    """Writes the trust split over the pre-diversion samples to `path` (``.npz``).

    Arrays, all ``[n]``: ``index`` (into the dataset's training set),
    ``given`` (the noisy labels), ``clean``, ``trusted``, ``labels``
    (recalibrated), ``scores``, ``signal`` (the last partition's input),
    ``loss_labels`` (the labels it saw) and ``recalled`` (trusted by recall);
    and ``rounds``, the per-round statistics as one JSON string.
    `load_split` reads it back (``recalled`` None from older files).
    """
    np.savez_compressed(
        path,
        index=prepared.idx,
        given=prepared.labels,
        clean=prepared.clean,
        trusted=split.trusted,
        labels=split.labels,
        scores=split.scores,
        signal=split.losses,
        loss_labels=split.loss_labels,
        recalled=np.zeros_like(split.trusted) if split.recalled is None else split.recalled,
        rounds=np.asarray(json.dumps(split.rounds)),
    )


def load_split(path, prepared: Prepared) -> TrustSplit:
    """The trust split `save_split` wrote to `path`, checked to belong to `prepared`.

    Args:
      path: the ``.npz`` file.
      prepared: the data before diversion the split must have been made of
        (same samples, same given labels).

    Raises:
      ConfigError: the file is unreadable or incomplete, or was made from other data.
    """
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
        split = TrustSplit(
            arrays["trusted"],
            arrays["labels"],
            arrays["scores"],
            arrays["signal"],
            arrays["loss_labels"],
            json.loads(str(arrays["rounds"])),
            arrays.get("recalled"),  # absent from files written before it was saved
        )
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ConfigError(
            f"cannot read the trust split {path} ({type(err).__name__}: {err}); delete it to "
            "compute the split again"
        ) from err
    if not (
        np.array_equal(arrays["index"], prepared.idx)
        and np.array_equal(arrays["given"], prepared.labels)
    ):
        raise ConfigError(
            f"the trust split {path} was made from other samples or labels than this run's; "
            "delete it to compute the split again"
        )
    return split


def _report_round(stats: dict, log) -> None:
    """Prints one trust round (precision/recall only when clean labels are known) and logs it."""
    parts = [
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in stats.items()
        if v is not None
    ]
    print("[trust] " + " ".join(parts), flush=True)
    log(event="trust", **stats)


def prepare_for(
    config,
    run: report.RunDir | None = None,
    saved_split: str | os.PathLike | None = None,
    split_cache: str | os.PathLike | None = None,
) -> Prepared:
    """`prepare` with the data fields of a run config (baseline or distillation)."""
    return prepare(
        config.dataset,
        config.noise,
        noise_seed=config.noise_seed,
        max_train=config.max_train,
        val_fraction=config.val_fraction,
        zca=config.zca,
        trust=config.trust,
        seed=config.seed,
        run=run,
        saved_split=saved_split,
        split_cache=split_cache,
    )
