"""TAD's dual loop: outer partition and inner recalibration, alternated (docs/algorithms.md §4.4).

Paper: an outer loop divides the data into trusted and untrusted spaces and
diverts distillation to the trusted one; an inner loop recalibrates
untrusted samples; the loops alternate, growing the trusted space. jaxdd's
design of each round k:

1. train the referees (`referee.py`) — round 0: a warm start on ALL data;
   later rounds: the trusted samples with their current labels, plus the
   consistency term on every sample; cross-fitted (`TADConfig.folds`): each
   referee is labelled on one fold and judges only the others;
2. outer loop: per-sample losses → class-wise GMM → trust scores → trusted if
   score > τ_k, τ_k moving from `tau_start` (strict) to `tau_end`
   (`partition.py`, one jitted function);
3. inner loop: untrusted samples on which Mahalanobis distance, cosine
   similarity and the referees agree with enough confidence are relabelled
   and join the trusted space (`recalibrate.py`).

The result, a `TrustSplit`, is what every method distils from.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdd.errors import ConfigError
from jaxdd.models.convnet import Model
from jaxdd.ops.train import TrainConfig
from jaxdd.training import Runner
from jaxdd.trust.partition import partition, small_loss_selection, threshold_schedule
from jaxdd.trust.recalibrate import (
    admit_recalls,
    estimate_transition,
    label_posterior,
    recalibrate,
)
from jaxdd.trust.referee import (
    RefereeView,
    averaged_view,
    deal_folds,
    first_judges,
    fold_targets,
    judges,
    look,
    referee_targets,
    relative_losses,
)

# Folded into the referees' key for the deal of the samples into folds.
_FOLD_STREAM = 0xF01D


@dataclasses.dataclass(frozen=True)
class TADConfig:
    """The dual loop's settings (all jaxdd's design; the paper gives none).

    Attributes:
      rounds: K rounds of partition + recalibration.
      referees: R referee networks trained at once.
      width: referee ConvNet width (small: referees only rank samples).
      folds: F, cross-fitting of the referees (`referee.judges`): referee r
        is labelled on fold r mod F only and judges the samples of the other
        folds, so every signal, recall and revocation rests on referees that
        never saw the sample's label; 1 turns it off (every referee trained on
        and judging every sample). Needs referees ≥ folds.
      warmup_steps: SGD steps of the warm start on all data (early-learning
        regime), rounded up to whole epochs; steps rather than epochs so
        that one setting suits 1k and 60k-sample sets.
      steps_per_round: referee training on the trusted space per round.
      lr, batch_size: referee SGD (momentum 0.9, weight decay 5e-4).
      consistency: weight of the two-view consistency term on all samples.
      tau_start, tau_end: the dynamic trust threshold's ends.
      kappa_warm, kappa: recalibration confidence thresholds on
        min(Mahalanobis posterior, referee probability) (`recalibrate.py`):
        `kappa_warm` in round 0, whose referees come from the warm start on
        ALL noisy labels and give soft probabilities, `kappa` in later rounds,
        whose referees are trained on the trusted space and are sharp. One
        value cannot serve both (Fashion-MNIST, 10k images, 40 % symmetric
        noise: in round 0, κ = 0.5 recalled 1101 samples at 98.5 % accuracy
        and κ = 0.9 none; in round 1, κ = 0.5 recalled 2618 at 73 %, a fifth
        of them clean samples moved to a wrong class, and κ = 0.9 recalled
        928 at 90 %). A threshold relative to the trusted members' own
        confidence was tried and rejected: it is lowest for the confusable
        classes, where recall errs most.
      shrinkage: covariance shrinkage of the Mahalanobis distance.
      expel_below: a trusted sample that entered by partition leaves the
        trusted space when a later partition scores it strictly below this
        (0: never, the trusted space only grows). Meaningful with
        cross-fitted referees, whose judgement of a trusted member is held
        out; one-fold referees have learnt its label and keep its loss low.
      anchor_quantile: where a class's anchor points start in the referees'
        probability of it (`recalibrate.estimate_transition`), for the noise
        transition matrix that corrects the estimates recall admission
        compares.
      gmm_iterations: EM steps of the class-wise mixtures.
      mode: ``tad`` (dual loop) or ``small-loss`` (the two-stage baseline:
        keep the `keep_ratio` smallest-loss samples per class after the warm
        start; no GMM, no recalibration).
      keep_ratio: the small-loss baseline's fixed keep ratio.
      signal: what the class-wise mixtures are fitted to (docs/algorithms.md
        §4.2): ``loss``, the referees' cross-entropy with the current labels;
        ``relative``, that loss minus the loss of the referees' best class
        (`referee.relative_losses`), 0 wherever the referees agree with the
        label; ``averaged``, the cross-entropy averaged over the referees and
        the last `signal_epochs` epochs of the round's training; ``margin``,
        the best other class's log-probability minus the label's
        (`referee.margins`), averaged the same way.
      signal_epochs: how many end-of-epoch checkpoints of each round's
        referee training the averaged signals average over (at most the
        round's epochs).
      recall_margin: recalibration confidence uses the referees' margin
        p(ĉ) − max_{c≠ĉ} p(c) instead of p(ĉ) (`recalibrate.recalibrate`).
      diversion: ``select`` trains only on the trusted space (docs/algorithms.md
        §4.4); ``weight`` keeps every sample, the untrusted ones weighted by
        their trust score (`diversion_weights`). Where the real-image
        initialisation draws from is `init_pool`'s choice either way.
      rebalance: train on the diverted space with per-class weights that
        restore the class prior of the given labels before diversion
        (`class_prior_weights`). Diversion keeps easy classes almost whole
        and hard ones at half (Fashion-MNIST, 40 % symmetric noise: 94 % of
        the trousers, 50 % of the T-shirts), so unweighted experts learn a
        skewed prior that the class-balanced synthetic set then inherits.
      init_pool: where a distillation method's expert-filtered real-image
        initialisation (DATM's ``correct`` rule) draws from: ``all``
        (default), every sample with its given label, kept only where the
        experts, trained on the trusted space, predict that label; or
        ``trusted``, the trusted space with its recalibrated labels
        (docs/algorithms.md §4.4). The trusted space holds the easy samples of each
        class, and the wrongly recalled labels that the experts were trained
        on pass their filter: on Fashion-MNIST (10k images, 40 % symmetric
        noise, IPC 10) ``trusted`` started DATM from 5 % wrong labels,
        ``all`` from 1 %, and TAD + DATM gained 0.85 points
        (docs/deviations.md). Initialisations without an expert filter
        (``real``, the random baseline) always draw from the trusted space.
    """

    rounds: int = 3
    referees: int = 2
    width: int = 32
    folds: int = 2
    warmup_steps: int = 200
    steps_per_round: int = 100
    lr: float = 0.01
    batch_size: int = 256
    consistency: float = 1.0
    tau_start: float = 0.99
    tau_end: float = 0.5
    kappa_warm: float = 0.5
    kappa: float = 0.9
    shrinkage: float = 0.1
    anchor_quantile: float = 0.97
    expel_below: float = 0.0
    gmm_iterations: int = 50
    mode: Literal["tad", "small-loss"] = "tad"
    keep_ratio: float = 0.5
    rebalance: bool = True
    signal: Literal["loss", "relative", "averaged", "margin"] = "averaged"
    signal_epochs: int = 3
    recall_margin: bool = True
    diversion: Literal["select", "weight"] = "select"
    init_pool: Literal["trusted", "all"] = "all"

    def epochs(self, steps: int, num_examples: int) -> int:
        """Whole epochs covering at least `steps` SGD steps on `num_examples`."""
        per_epoch = max(1, num_examples // self.batch_size)
        return max(1, -(-steps // per_epoch))

    def referee_train(self, epochs: int) -> TrainConfig:
        return TrainConfig(
            lr=self.lr,
            epochs=epochs,
            batch_size=self.batch_size,
            lr_milestones=(),
            consistency=self.consistency,
            num_seeds=self.referees,
        )


class TrustSplit(NamedTuple):
    """The trusted space and its labels.

    Attributes:
      trusted: ``[N] bool``.
      labels: ``[N] int32`` labels to distil with (recalibrated where recalled).
      scores: ``[N] float`` last trust scores.
      losses: ``[N] float`` the last partition's per-sample signal
        (`TADConfig.signal`) w.r.t. `loss_labels`.
      loss_labels: ``[N] int`` the labels the last partition saw.
      rounds: per-round statistics (`diagnostics`).
      recalled: ``[N] bool`` trusted samples that are there by recall (None
        where unknown, e.g. a split read back from disk).
    """

    trusted: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    losses: np.ndarray
    loss_labels: np.ndarray
    rounds: list[dict]
    recalled: np.ndarray | None = None


def _train(model, x, labels, trusted, num_classes, config, epochs, state, key, judged, round_k=0):
    """Referee training: a fresh warm start (`state` None) or round `round_k` from `state`.

    Every round restarts the step count at 0, so the referees' keys are
    folded with the round: otherwise each round would replay the warm
    start's batch order and augmentations. Referee r is labelled on the
    trusted samples it does not judge (`judged`, ``[R, N] bool``); with one
    fold, on every trusted sample.

    Returns:
      the states after each of the last `config.signal_epochs` epochs, oldest
      first (the last one continues the loop).
    """
    if config.folds > 1:
        targets = fold_targets(labels, trusted, num_classes, judged)
    else:
        targets = referee_targets(labels, trusted, num_classes)
    runner = Runner(model, x, targets, config.referee_train(epochs))
    if state is None:
        keys = jax.random.split(key, config.referees)
        state = runner.init(keys, jnp.full((config.referees,), config.lr, jnp.float32))
    else:
        state = state._replace(key=jax.vmap(lambda k: jax.random.fold_in(k, round_k))(state.key))
    first = max(0, epochs - config.signal_epochs)
    return [s for epoch, s, _ in runner.run(state, period=1, progress=False) if epoch > first]


@functools.lru_cache(maxsize=4)
def _partition_fn(num_classes: int, iterations: int, size: int):
    return jax.jit(
        functools.partial(
            partition,
            num_classes=num_classes,
            iterations=iterations,
            max_class_size=size,
        )
    )


@functools.lru_cache(maxsize=4)
def _recalibrate_fn(num_classes: int, kappa: float, shrinkage: float, margin: bool):
    return jax.jit(
        functools.partial(
            recalibrate, num_classes=num_classes, kappa=kappa, shrinkage=shrinkage, margin=margin
        )
    )


def class_prior_weights(
    labels: np.ndarray, base: np.ndarray, prior_labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """``[N]`` `base` weights rescaled per class to restore the prior of `prior_labels`.

    A sample of class c weighs base · p(c) / q(c), with p the class
    frequencies of `prior_labels` (the labels before diversion) and q the
    `base`-weighted frequencies of `labels`; the weights average 1 over the
    samples with base > 0.

    Args:
      labels: ``[N] int`` labels after recalibration.
      base: ``[N] float`` weights before rebalancing (0: not used).
      prior_labels: ``[N] int`` the given labels.
      num_classes: C.
    """
    q = np.bincount(labels, weights=base, minlength=num_classes)
    p = np.bincount(prior_labels, minlength=num_classes).astype(np.float64)
    q, p = q / max(q.sum(), 1e-12), p / max(p.sum(), 1)
    weights = base * np.divide(p, q, out=np.zeros(num_classes), where=q > 0)[labels]
    used = base > 0
    return (weights / weights[used].mean() if used.any() else weights).astype(np.float32)


def diversion_weights(
    split: TrustSplit, prior_labels: np.ndarray, num_classes: int, config: TADConfig
) -> np.ndarray:
    """``[N]`` training weights of every sample after diversion; 0 = left out.

    ``select`` (docs/algorithms.md §4.4): 1 on the trusted space, 0 elsewhere.
    ``weight``: 1 on the trusted space, the last trust score (the low-loss
    posterior, below τ) on the untrusted samples, which stay in with their
    given labels at that weight (the small-loss baseline has no trust scores:
    there it is ``select``). Either is then rebalanced
    (`class_prior_weights`) when `config.rebalance`.
    """
    base = split.trusted.astype(np.float64)
    if config.diversion == "weight":
        base = np.where(split.trusted, 1.0, np.clip(split.scores, 0.0, 1.0))
    if not config.rebalance:
        return base.astype(np.float32)
    return class_prior_weights(split.labels, base, prior_labels, num_classes)


def diagnostics(masks: dict, labels, given, clean, proposed_labels=None) -> dict:
    """Per-round sizes and, when `clean` is given, label-quality diagnostics.

    Args:
      masks: ``[N] bool`` sets of the round: ``trusted`` (the trusted space
        after the round), ``before_recall`` (after partition and revocation,
        before the new recalls), ``added``, ``revoked``, ``proposed`` and
        ``admitted`` (recalls).
      labels: ``[N] int`` labels after the round.
      given: ``[N] int`` given labels.
      clean: ``[N] int`` true labels, used for nothing but these statistics, or None.
      proposed_labels: ``[N] int`` the labels the recalls proposed (for the
        accuracy of the rejected ones), or None.
    """
    trusted = masks["trusted"]
    stats = {name: int(mask.sum()) for name, mask in masks.items()}
    stats["recalled"] = stats["admitted"]
    stats["trusted_fraction"] = float(trusted.mean())
    if clean is None:
        return stats
    right = labels == clean
    before = masks["before_recall"]
    given_right = np.where(masks["revoked"], given, labels) == clean

    def rate(ok: np.ndarray, mask: np.ndarray) -> float | None:
        return float(ok[mask].mean()) if mask.any() else None

    rejected = masks["proposed"] & ~masks["admitted"]
    return stats | {
        "precision": rate(right, trusted) or 0.0,
        "clean_recall": float(trusted[given == clean].mean()),
        "recalibration_accuracy": rate(right, masks["admitted"]),
        "rejected_recall_accuracy": rate(proposed_labels == clean, rejected)
        if rejected.any() and proposed_labels is not None
        else None,
        "remaining_noise": None if not trusted.any() else 1 - rate(right, trusted),
        "noise_before_recall": None if not before.any() else 1 - rate(given_right, before),
    }


def _tau_reach(scores: np.ndarray, config: TADConfig) -> dict:
    """How much of the data the τ schedule decides: fractions above τ_start and τ_end."""
    above_start, above_end = scores > config.tau_start, scores > config.tau_end
    return {
        "above_tau_start": float(above_start.mean()),
        "above_tau_end": float(above_end.mean()),
        "tau_moves": float((above_end & ~above_start).mean()),
    }


def run_tad(
    model: Model,
    x: jax.Array,
    noisy_labels: np.ndarray,
    num_classes: int,
    config: TADConfig,
    *,
    key: jax.Array,
    clean_labels: np.ndarray | None = None,
    on_round=None,
) -> TrustSplit:
    """Runs the dual loop (or the small-loss baseline) on a noisy training set.

    Round k: train the referees, partition on the current labels, revoke the
    recalls the new referees no longer support (their labels return to the
    given ones), propose recalls, admit those that pass `admit_recalls`. The
    trusted space only grows, except by revocation and, when
    `config.expel_below` > 0, expulsion of partition members whose new trust
    score fell below it: trusted_k ⊇ trusted_{k−1} ∖ (revoked_k ∪ expelled_k).

    Args:
      model: the referee network (`config.width` wide).
      x: ``[N, H, W, C]`` training images in the pipeline's pixel space.
      noisy_labels: ``[N] int`` given labels.
      num_classes: C.
      config: the loop's settings.
      key: seeds the referees.
      clean_labels: ``[N]`` true labels, only for the diagnostics.
      on_round: called with each round's statistics as they are made.

    Returns:
      the `TrustSplit`.
    """
    if config.folds > 1 and config.referees < config.folds:
        raise ConfigError(
            f"trust.folds={config.folds} needs at least as many referees, got "
            f"trust.referees={config.referees}: raise trust.referees or lower trust.folds"
        )
    n = len(noisy_labels)
    given = noisy_labels.astype(np.int32)
    labels, trusted = given.copy(), np.ones(n, bool)
    folds = deal_folds(n, config.folds, jax.random.fold_in(key, _FOLD_STREAM))
    judged = judges(folds, config.referees, config.folds)
    warmup = config.epochs(config.warmup_steps, n)
    states = _train(model, x, labels, trusted, num_classes, config, warmup, None, key, judged)
    if config.mode == "small-loss":
        view = look(model, states[-1].params, x, labels, judged=judged)
        return _small_loss(view, labels, num_classes, config, clean_labels, on_round)
    trusted, recalled, rounds = np.zeros(n, bool), np.zeros(n, bool), []
    groups = first_judges(judged)
    for k in range(config.rounds):
        if k > 0:
            epochs = config.epochs(config.steps_per_round, n)
            states = _train(
                model, x, labels, trusted, num_classes, config, epochs, states[-1], key, judged, k
            )
        views = [look(model, s.params, x, labels, judged=judged) for s in states]
        tau = threshold_schedule(k, config.rounds, config.tau_start, config.tau_end)
        signal = partition_signal(views, labels, config.signal)
        split, scores = _partition_fn(num_classes, config.gmm_iterations, n)(
            signal, jnp.asarray(labels), tau=jnp.float32(tau)
        )
        seen, scores = labels, np.asarray(scores)
        expelled = trusted & ~recalled & (scores < config.expel_below)
        candidates = (trusted & ~expelled) | np.asarray(split)
        masks, labels, estimates, proposed_labels = _round_step(
            views[-1], labels, given, candidates, recalled, k, config, groups
        )
        masks["added"] = masks["trusted"] & ~trusted
        masks["expelled"] = expelled & ~masks["trusted"]
        trusted = masks["trusted"]
        recalled = (recalled & ~masks["revoked"]) | masks["admitted"]
        stats = {"round": k, "tau": tau, "partition": int(np.asarray(split).sum())}
        stats |= estimates | diagnostics(masks, labels, given, clean_labels, proposed_labels)
        stats |= _tau_reach(scores, config)
        rounds.append(stats)
        if on_round is not None:
            on_round(stats)
    signal = np.asarray(signal)
    return TrustSplit(trusted, labels, scores, signal, seen, rounds, recalled)


def _round_step(view, labels, given, candidates, recalled, round_k, config, groups=None):
    """Revocation and admitted recall on the trusted space `candidates` of one round.

    `groups` (``[N] int``, `referee.first_judges`) names the referee whose
    features each sample has: anchors, covariance and recalls are computed
    within each group, in its referee's feature space, from the samples it
    judges (default: one group).

    Recalls are admitted on the label posterior (`recalibrate.label_posterior`,
    with the transition matrix estimated from this round's referees).

    Returns:
      ``(masks, labels, estimates, proposed)``: the round's ``[N] bool`` sets
      (`diagnostics`, less ``added``), the labels after it, its label-free
      noise estimates (`_estimates`) and the ``[N]`` labels recall proposed.
    """
    supported, candidate = _recalibrate_groups(view, labels, candidates, round_k, config, groups)
    revoked = recalled & ~(supported & (candidate == labels))
    before = candidates & ~revoked
    labels = np.where(revoked, given, labels).astype(np.int32)
    proposed, probs = ~candidates & supported, np.asarray(view.probs, np.float64)
    transition = estimate_transition(probs, given, probs.shape[-1], config.anchor_quantile)
    # Round 0's referees come from the warm start on every given label.
    posterior = label_posterior(probs, given, transition, noisy=round_k == 0)
    admitted = admit_recalls(proposed, candidate, before, labels, posterior, probs.shape[-1])
    masks = {
        "trusted": before | admitted,
        "before_recall": before,
        "revoked": revoked,
        "proposed": proposed,
        "admitted": admitted,
    }
    labels = np.where(admitted, candidate, labels).astype(np.int32)
    estimates = _estimates(posterior, transition, labels, before, masks["trusted"])
    return masks, labels, estimates, candidate


def _estimates(posterior, transition, labels, before, trusted) -> dict:
    """The round's label-free estimates: noise rate of the given labels, trusted-space noise."""
    rows = np.arange(len(labels))

    def noise(mask):
        return float(1.0 - posterior[rows[mask], labels[mask]].mean()) if mask.any() else None

    return {
        "estimated_label_noise": float(1.0 - np.mean(np.diag(transition))),
        "estimated_noise_before_recall": noise(before),
        "estimated_remaining_noise": noise(trusted),
    }


def _recalibrate_groups(view, labels, trusted, round_k, config, groups):
    """``(supported, candidate)``, both ``[N]``, from `recalibrate` run once per feature group."""
    kappa = config.kappa_warm if round_k == 0 else config.kappa
    num_classes = view.probs.shape[-1]
    fn = _recalibrate_fn(num_classes, kappa, config.shrinkage, config.recall_margin)
    groups = np.zeros(len(labels), np.int32) if groups is None else groups
    supported, candidate = np.zeros(len(labels), bool), np.zeros(len(labels), np.int32)
    for g in np.unique(groups):
        member = groups == g
        recal = fn(view.features, jnp.asarray(labels), trusted & member, view.probs)
        supported[member] = np.asarray(recal.supported)[member]
        candidate[member] = np.asarray(recal.candidate)[member]
    return supported, candidate


def partition_signal(views: list[RefereeView], labels: np.ndarray, kind: str) -> jax.Array:
    """``[N]`` what the partition's mixtures are fitted to (`TADConfig.signal`).

    Args:
      views: the referees' views at the last checkpoints of the round, oldest first.
      labels: ``[N] int`` the labels the views were taken with.
      kind: ``loss`` and ``relative`` read the last view; ``averaged`` (the
        loss) and ``margin`` average over every view.
    """
    if kind == "relative":
        return relative_losses(views[-1].probs, jnp.asarray(labels))
    if kind == "loss":
        return views[-1].losses
    losses, gaps = averaged_view(views)
    return losses if kind == "averaged" else gaps


def _small_loss(view, labels, num_classes, config, clean_labels, on_round):
    keep = np.asarray(
        small_loss_selection(view.losses, jnp.asarray(labels), num_classes, config.keep_ratio)
    )
    none = np.zeros_like(keep)
    masks = {"trusted": keep, "before_recall": keep, "added": keep}
    masks |= {"revoked": none, "proposed": none, "admitted": none, "expelled": none}
    stats = {"round": 0, "tau": 0.0} | diagnostics(masks, labels, labels, clean_labels)
    if on_round is not None:
        on_round(stats)
    losses = np.asarray(view.losses)
    return TrustSplit(keep, labels, -losses, losses, labels, [stats], none)
