"""The `jaxdd distill` driver: noisy data → experts → DATM/MTT → evaluation → report.

All I/O of a distillation run lives here; the kernels it calls are pure.
Expert trajectories are cached by what determines them (data, noise, model,
expert protocol, seed) and reused; the distillation state is checkpointed
every `checkpoint_every` iterations and a run resumes from its directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdd import evaluate, parallel, report, rng
from jaxdd.checkpoint import Checkpointer
from jaxdd.errors import ConfigError
from jaxdd.experts import ExpertConfig, train_experts
from jaxdd.methods import datm
from jaxdd.methods.datm_init import initialise
from jaxdd.ops.train import TrainConfig
from jaxdd.prepare import prepare_for
from jaxdd.trust.dual import TADConfig


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """One distillation run (see `experiments/` for the published settings).

    Attributes:
      dataset, noise, noise_seed: the data and its label noise.
      method: ``datm`` or ``mtt`` (recorded; `datm` holds the settings).
      datm: the trajectory-matching hyper-parameters.
      experts: the expert protocol.
      eval: how distilled sets are evaluated (its lr is replaced by the
        learned student lr).
      width, depth: the ConvNet (depth None: by image size).
      zca: ZCA-whiten images (fitted on the training images used).
      max_train: stratified training subset (reduced CPU configurations).
      trust: divert to TAD's trusted space (or the small-loss selection).
      checkpoint_every: iterations between distillation checkpoints.
      log_every: iterations between metric lines.
      seed: seeds experts, init and distillation.
    """

    dataset: str = "digits"
    noise: str = "symmetric:0.4"
    noise_seed: int = 0
    method: Literal["datm", "mtt"] = "datm"
    datm: datm.DATMConfig = datm.DATMConfig()
    experts: ExpertConfig = ExpertConfig()
    eval: TrainConfig = TrainConfig()
    width: int = 128
    depth: int | None = None
    zca: bool = False
    max_train: int | None = None
    trust: TADConfig | None = None
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0


def _check(config: DistillConfig) -> None:
    d = config.datm
    needed = d.max_start_epoch - 1 + d.expert_epochs
    if needed > config.experts.epochs:
        raise ConfigError(
            f"the window needs expert snapshots up to epoch {needed} but experts train "
            f"{config.experts.epochs} epochs: raise --expert-train-epochs or lower "
            "--max-start-epoch"
        )
    if not 0 <= d.min_start_epoch < min(d.current_max_start_epoch, d.max_start_epoch):
        raise ConfigError("need 0 <= min_start_epoch < current_max_start_epoch <= max_start_epoch")


def _expert_key(config: DistillConfig) -> str:
    """A short hash of everything that determines the expert trajectories."""
    what = [
        config.dataset,
        config.noise,
        config.noise_seed,
        config.max_train,
        config.zca,
        _trust_fields(config.trust),
        config.width,
        config.depth,
        dataclasses.asdict(config.experts),
        config.seed,
    ]
    return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:12]


def resolve_epoch_size(config: DistillConfig, given_size: int | None) -> DistillConfig:
    """`config` with ``experts.epoch_size == "given"`` made a count.

    `given_size` is the training set's size before diversion (None without
    diversion: one pass over the data, the references' epoch).
    """
    if config.experts.epoch_size != "given":
        return config
    return dataclasses.replace(
        config, experts=dataclasses.replace(config.experts, epoch_size=given_size)
    )


def _init_from_all(config: DistillConfig) -> bool:
    """Whether the image init draws from every given label (`TADConfig.init_pool`).

    Only an init that keeps the images the experts predict as their label
    (``correct``) may; an unfiltered one draws from the trusted space.
    """
    trust = config.trust
    return trust is not None and trust.init_pool == "all" and config.datm.init == "correct"


def _trust_fields(trust: TADConfig | None) -> dict | None:
    """The trust settings that shape the diverted training set (not `init_pool`)."""
    if trust is None:
        return None
    fields = dataclasses.asdict(trust)
    del fields["init_pool"]
    return fields


def load_or_train_experts(config, model, x, targets, experts_dir, progress):
    """Expert trajectories from the cache directory, training (or resuming) them if needed."""
    path = pathlib.Path(experts_dir) / f"{config.dataset.replace(':', '_')}-{_expert_key(config)}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(dataclasses.asdict(config), default=str, indent=2))
    with Checkpointer(path / "checkpoints", max_to_keep=None) as ckpt:
        return train_experts(
            model,
            x,
            targets,
            config.experts,
            key=rng.stream(config.seed, "experts"),
            checkpointer=ckpt,
            progress=progress,
        )


def distill_loop(model, config, state, trajectories, ckpt, run, progress):
    """Runs iterations from ``state.iteration`` to the end, checkpointing and logging."""
    step = jax.jit(lambda s, t: datm.distill_step(model, config.datm, s, t), donate_argnums=0)
    start = int(state.iteration)
    bar = tqdm(range(start, config.datm.iterations), disable=not progress, desc="distill")
    for it in bar:
        state, metrics = step(state, trajectories)
        if (it + 1) % config.log_every == 0 or it + 1 == config.datm.iterations:
            entry = {
                "iteration": it + 1,
                **{k: float(v) for k, v in metrics.items()},
                "skipped": int(state.skipped),
            }
            run.log(event="distill", **entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{entry['syn_lr']:.4f}")
        if (it + 1) % config.checkpoint_every == 0:
            ckpt.save(it + 1, state, force=True)
    ckpt.save(config.datm.iterations, state, force=True)
    return state


def run_distill(
    config: DistillConfig,
    *,
    out_root: str = "runs",
    run_dir: str | None = None,
    experts_dir: str = "runs/experts",
    progress: bool = True,
) -> tuple[dict, report.RunDir]:
    """The whole pipeline of one distillation run; returns the summary and run dir."""
    _check(config)
    name = f"distill-{config.method}-{config.dataset.replace(':', '_')}"
    run = report.RunDir.at(run_dir) if run_dir else report.RunDir(out_root, name)
    run.write_json("config.json", config)
    data = prepare_for(config, run)
    ds, x, labels, space = data.ds, data.x, data.labels, data.space
    report.save_image_grid(
        run.path / "train_set.png",
        ds.x_train[data.idx],
        labels,
        ds.class_names,
        clean_labels=data.clean,
        title=f"{config.method} training set ({config.noise}; red = mislabelled)",
    )
    model = data.model(config.width, config.depth)
    traj = load_or_train_experts(
        resolve_epoch_size(config, None if data.source is None else data.given_size),
        model,
        x,
        data.targets(),
        experts_dir,
        progress,
    )
    pool_x, pool_labels, pool_clean = data.init_candidates(every_sample=_init_from_all(config))
    init = initialise(
        model,
        traj,
        pool_x,
        pool_labels,
        ds.num_classes,
        config.datm.ipc,
        how=config.datm.init,
        soft_labels=config.datm.soft_labels,
        seed=rng.numpy_rng(config.seed, "init"),
    )
    run.log(
        event="init",
        filled=init.filled,
        label_noise=float(np.mean(pool_labels[init.indices] != pool_clean[init.indices])),
    )
    state = datm.init_state(
        jnp.asarray(pool_x[init.indices]),
        jnp.asarray(init.labels),
        config.datm,
        key=rng.stream(config.seed, "distill"),
    )
    mesh = parallel.runs_mesh(state.images.shape[0])
    state, traj = datm.shard_state(state, mesh), parallel.replicate(traj, mesh)
    with Checkpointer(run.path / "checkpoints", max_to_keep=2) as ckpt:
        if ckpt.latest_step() is not None:
            state = ckpt.restore(state)
        state = distill_loop(model, config, state, traj, ckpt, run, progress)
    history = [e for e in run.read_events() if e["event"] == "distill"]
    train = {"train_size": len(labels), "train_label_noise": data.label_noise()}
    return _evaluate_and_report(
        config, ds, space, model, state, history, init, train, run, progress
    )


def _evaluate_and_report(config, ds, space, model, state, history, init, train, run, progress):
    """Evaluates the distilled set, saves its pictures and arrays, writes ``summary.json``.

    ``train`` holds the size and label noise of the data distilled from.
    """
    targets = jax.nn.softmax(state.labels) if config.datm.soft_labels else state.labels
    eval_cfg = dataclasses.replace(config.eval, lr=float(state.syn_lr))
    result, _ = evaluate.train_and_evaluate(
        model,
        state.images,
        targets,
        space.encode(ds.x_test),
        ds.y_test,
        eval_cfg,
        key=rng.stream(config.seed, "eval"),
        progress=progress,
        on_eval=lambda e: run.log(event="eval", **e),
    )
    images = np.asarray(space.decode(state.images))
    hard = np.asarray(jnp.argmax(state.labels, -1))
    report.save_image_grid(
        run.path / "distilled.png",
        images,
        np.arange(len(images)) // config.datm.ipc,
        ds.class_names,
        learned_labels=hard,
        per_class=None,
        title=f"{config.method} distilled set ({config.noise}; red = learned label differs)",
    )
    np.savez_compressed(
        run.path / "distilled.npz",
        images=np.asarray(state.images),
        labels=np.asarray(state.labels),
        syn_lr=float(state.syn_lr),
    )
    if history:
        its = [h["iteration"] for h in history]
        report.save_curves(
            run.path / "curves.png",
            its,
            {
                "matching loss": [h["loss"] for h in history],
                "student lr": [h["syn_lr"] for h in history],
            },
            xlabel="iteration",
        )
    summary = {
        "dataset": ds.name,
        "method": config.method,
        "noise": config.noise,
        "ipc": config.datm.ipc,
        "images": int(state.images.shape[0]),
        "accuracy_mean": result.mean,
        "accuracy_std": result.std,
        "accuracies": result.accuracies[0].tolist(),
        "syn_lr": float(state.syn_lr),
        "iterations": int(state.iteration),
        "skipped_updates": int(state.skipped),
        "init_filled": init.filled,
        **train,
    }
    run.write_json("summary.json", summary)
    return summary, run
