"""The `jaxdd` command: subcommands over the pipeline stages.

jaxdd datasets                               what data exists and is here
jaxdd baseline --dataset fashion_mnist --noise symmetric:0.4 --kind random --ipc 10
jaxdd demo                                   the quick end-to-end job on digits
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from jaxdd.errors import ConfigError, JaxddError
from jaxdd.ops.train import TrainConfig

ERM_EPOCHS = 50


def _add_trust_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trust (docs/algorithms.md §4): train on a trusted space")
    g.add_argument(
        "--trust",
        choices=("none", "tad", "small-loss"),
        default=None,
        help="tad: dual-loop trust-aware diversion; small-loss: two-stage baseline",
    )
    g.add_argument("--tad-rounds", type=int, default=None)
    g.add_argument("--tad-referees", type=int, default=None)
    g.add_argument("--tad-width", type=int, default=None)
    g.add_argument("--tad-warmup-steps", type=int, default=None)
    g.add_argument("--tad-steps-per-round", type=int, default=None)
    g.add_argument(
        "--kappa", type=float, default=None, help="recalibration confidence (rounds >= 1)"
    )
    g.add_argument(
        "--kappa-warm", type=float, default=None, help="recalibration confidence in round 0"
    )
    g.add_argument("--keep-ratio", type=float, default=None, help="small-loss keep ratio")
    g.add_argument(
        "--trust-signal",
        choices=("loss", "relative"),
        default=None,
        help="what the partition's mixtures fit: the loss, or the loss above the best class's",
    )
    g.add_argument(
        "--recall-margin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recalibration confidence from the referees' top-two margin (default: on)",
    )
    g.add_argument(
        "--diversion",
        choices=("select", "weight"),
        default=None,
        help="train on the trusted space only, or on all data weighted by trust",
    )
    g.add_argument(
        "--init-pool",
        choices=("trusted", "all"),
        default=None,
        help="DATM's image init draws from all samples with their given labels, filtered by "
        "the experts trained on the trusted space (default), or from the trusted space",
    )
    g.add_argument(
        "--no-rebalance",
        dest="rebalance",
        action="store_false",
        default=None,
        help="train on the trusted space without restoring its class prior",
    )


def _trust_config(args, base=None):
    from jaxdd.trust.dual import TADConfig

    if args.trust in (None, "none"):
        return base if args.trust is None else None
    given = {
        "rounds": args.tad_rounds,
        "referees": args.tad_referees,
        "width": args.tad_width,
        "warmup_steps": args.tad_warmup_steps,
        "steps_per_round": args.tad_steps_per_round,
        "kappa": args.kappa,
        "kappa_warm": args.kappa_warm,
        "keep_ratio": args.keep_ratio,
        "signal": args.trust_signal,
        "rebalance": args.rebalance,
        "recall_margin": args.recall_margin,
        "diversion": args.diversion,
        "init_pool": args.init_pool,
    }
    config = dataclasses.replace(
        base or TADConfig(), mode=args.trust, **{k: v for k, v in given.items() if v is not None}
    )
    if not 0 < config.keep_ratio <= 1 or config.rounds < 1 or config.referees < 1:
        raise ConfigError("need 0 < --keep-ratio <= 1, --tad-rounds >= 1, --tad-referees >= 1")
    return config


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=int, default=128, help="ConvNet width (default 128)")
    p.add_argument("--depth", type=int, default=None, help="ConvNet depth (default: by size)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of evaluated nets")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seeds", type=int, default=5, help="networks trained per result (mean±std)")
    p.add_argument("--no-dsa", action="store_true", help="train without DSA augmentation")
    p.add_argument("--eval-every", type=int, default=None, help="test every K epochs")
    p.add_argument("--max-train", type=int, default=None, help="stratified training subset size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--out", default="runs", help="root of run directories (default runs/)")
    p.add_argument("--no-progress", action="store_true")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxdd", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list dataset names and whether they are available here")
    base = sub.add_parser("baseline", help="full-noisy ERM or random-subset baseline")
    base.add_argument("--dataset", default="digits")
    base.add_argument("--noise", default="symmetric:0.4", help="e.g. none, symmetric:0.4")
    base.add_argument("--kind", choices=("erm", "random"), default="random")
    base.add_argument("--ipc", type=int, default=10, help="images per class (random)")
    _add_train_args(base)
    _add_trust_args(base)
    _add_distill_parser(sub)
    demo = sub.add_parser("demo", help="noisy digits: baselines, DATM, two-stage and TAD + DATM")
    demo.add_argument("--out", default="runs")
    demo.add_argument("--no-progress", action="store_true")
    return parser


def _add_distill_parser(sub) -> None:
    from jaxdd.methods.datm import DATMConfig

    p = sub.add_parser("distill", help="DATM / MTT trajectory matching on (noisy) data")
    p.add_argument("--method", choices=("datm", "mtt"), default="datm")
    p.add_argument(
        "--config",
        help="FILE.py or FILE.py:NAME whose get_config([NAME]) returns a DistillConfig "
        "(e.g. experiments/datm.py:fashion_mnist-ipc10); other flags override it",
    )
    p.add_argument("--zca", action=argparse.BooleanOptionalAction, default=None)
    for name, kind in [
        ("dataset", str),
        ("noise", str),
        ("width", int),
        ("depth", int),
        ("max_train", int),
        ("seed", int),
        ("noise_seed", int),
        ("checkpoint_every", int),
        ("log_every", int),
    ]:
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    group = p.add_argument_group("trajectory matching (docs/algorithms.md §1.6 names)")
    for field in dataclasses.fields(DATMConfig):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool) or field.type.startswith("bool"):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = int if field.name == "batch_syn" else type(field.default)
            group.add_argument(flag, type=kind, default=None)
    group = p.add_argument_group("experts and evaluation")
    group.add_argument("--num-experts", type=int, default=None)
    group.add_argument("--expert-train-epochs", type=int, default=None)
    group.add_argument(
        "--expert-epoch-size",
        type=_epoch_size,
        default=None,
        metavar="N|given|data",
        help="samples per expert trajectory epoch: N, 'given' (default: the training set's "
        "size before trust diversion) or 'data' (one pass over the set the experts train on)",
    )
    group.add_argument("--eval-epochs", type=int, default=None)
    group.add_argument("--seeds", type=int, default=None)
    _add_trust_args(p)
    p.add_argument("--out", default="runs")
    p.add_argument("--run-dir", help="resume (or create) the run in exactly this directory")
    p.add_argument("--experts-dir", default="runs/experts", help="expert trajectory cache")
    p.add_argument("--no-progress", action="store_true")


def _epoch_size(text: str) -> int | str:
    """``--expert-epoch-size``: a positive sample count, ``given`` or ``data``."""
    if text in ("given", "data"):
        return text
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive count, 'given' or 'data'")
    return size


def _distill_config(args):
    from jaxdd.distill import DistillConfig
    from jaxdd.methods.datm import DATMConfig, mtt_config

    if args.config:
        base = _load_config_file(args.config)
    else:
        base = DistillConfig(
            method=args.method, datm=mtt_config() if args.method == "mtt" else DATMConfig()
        )
    given = lambda names: {n: getattr(args, n) for n in names if getattr(args, n) is not None}  # noqa: E731
    top = given(
        [
            "zca",
            "dataset",
            "noise",
            "width",
            "depth",
            "max_train",
            "seed",
            "noise_seed",
            "checkpoint_every",
            "log_every",
        ]
    )
    datm = dataclasses.replace(base.datm, **given(f.name for f in dataclasses.fields(DATMConfig)))
    experts = dataclasses.replace(
        base.experts,
        **{
            k: v
            for k, v in [("num_experts", args.num_experts), ("epochs", args.expert_train_epochs)]
            if v is not None
        },
    )
    if args.expert_epoch_size is not None:
        size = None if args.expert_epoch_size == "data" else args.expert_epoch_size
        experts = dataclasses.replace(experts, epoch_size=size)
    evaluation = dataclasses.replace(
        base.eval,
        **{
            k: v
            for k, v in [("epochs", args.eval_epochs), ("num_seeds", args.seeds)]
            if v is not None
        },
    )
    return dataclasses.replace(
        base,
        **top,
        datm=datm,
        experts=experts,
        eval=evaluation,
        trust=_trust_config(args, base.trust),
    )


def _load_config_file(path: str):
    import importlib.util

    path, _, name = path.partition(":")
    spec = importlib.util.spec_from_file_location("jaxdd_user_config", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot read config file {path!r}: pass a .py file with get_config()")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config() function")
    return module.get_config(name) if name else module.get_config()


def cmd_distill(args) -> None:
    from jaxdd.distill import run_distill
    from jaxdd.report import mean_std

    config = _distill_config(args)
    summary, run = run_distill(
        config,
        out_root=args.out,
        run_dir=args.run_dir,
        experts_dir=args.experts_dir,
        progress=not args.no_progress,
    )
    print(
        f"{config.method} on {summary['dataset']} ({config.noise}), IPC {config.datm.ipc}: "
        f"{mean_std(summary['accuracies'])} % over {len(summary['accuracies'])} seeds "
        f"(learned lr {summary['syn_lr']:.4g})"
    )
    print(f"run directory: {run.path}")


def _train_config(args, kind: str) -> TrainConfig:
    epochs = args.epochs
    if epochs is None:
        epochs = ERM_EPOCHS if kind == "erm" else TrainConfig.epochs
    if epochs < 1 or args.seeds < 1 or args.lr <= 0 or args.batch_size < 1:
        raise ConfigError("--epochs, --seeds and --batch-size must be >= 1 and --lr > 0")
    return TrainConfig(
        lr=args.lr,
        epochs=epochs,
        batch_size=args.batch_size,
        num_seeds=args.seeds,
        dsa=not args.no_dsa,
    )


def cmd_datasets(args) -> None:
    from jaxdd.data.registry import list_datasets

    for info in list_datasets():
        mark = "yes" if info.available else "no "
        print(f"{info.name:15s} available: {mark}  {info.description}")
        if not info.available:
            print(f"{'':15s} to get it: {info.how_to_get}")


def cmd_baseline(args) -> None:
    from jaxdd.baselines import BaselineConfig, run_baseline
    from jaxdd.report import mean_std

    config = BaselineConfig(
        dataset=args.dataset,
        noise=args.noise,
        kind=args.kind,
        ipc=args.ipc,
        width=args.width,
        depth=args.depth,
        train=_train_config(args, args.kind),
        eval_every=args.eval_every or (1 if args.kind == "erm" else None),
        max_train=args.max_train,
        trust=_trust_config(args),
        seed=args.seed,
        noise_seed=args.noise_seed,
    )
    summary, run = run_baseline(config, out_root=args.out, progress=not args.no_progress)
    print(
        f"{args.kind} on {summary['dataset']} ({args.noise}): "
        f"{mean_std(summary['accuracies'])} % over {len(summary['accuracies'])} seeds"
    )
    print(f"run directory: {run.path}")


def cmd_demo(args) -> None:
    from jaxdd.demo import run_demo

    run_demo(out_root=args.out, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "datasets": cmd_datasets,
        "baseline": cmd_baseline,
        "distill": cmd_distill,
        "demo": cmd_demo,
    }
    try:
        commands[args.command](args)
    except JaxddError as err:
        print(f"jaxdd: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
