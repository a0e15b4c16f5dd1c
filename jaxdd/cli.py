"""The `jaxdd` command: subcommands over the pipeline stages.

jaxdd datasets                               what data exists and is here
jaxdd baseline --dataset fashion_mnist --noise symmetric:0.4 --kind random --ipc 10
jaxdd distill --config experiments/datm.py:fashion_mnist-ipc10 --set datm.iterations=500
jaxdd evaluate runs/datm-... --eval-nets resnet18bn,vgg11   a saved set on other networks
jaxdd demo                                   the quick end-to-end job on digits

A run's settings are one config tree (`jaxdd.config`): ``--set PATH=VALUE``
sets any of its fields, a few friendly flags (`Alias`) set one path each,
and ``--help`` lists every path with its default. Parsing the command line
imports no JAX; the config classes, and with them JAX, are imported when a
command runs or lists its settings. Every bad input stops the command with
one line on stderr and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from jaxdd import config as config_lib
from jaxdd.errors import ConfigError, JaxddError

ERM_EPOCHS = 50
# A relative --config path is looked up in the working directory, then here:
# the directory that holds the jaxdd package (a checkout's root, with experiments/).
PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Alias:
    """A friendly flag that sets one path of the config tree.

    Attributes:
      flag: the flag, e.g. ``--ipc``.
      path: the dotted path it sets, e.g. ``datm.ipc``.
      switch: a boolean pair: the flag sets true, its ``--no-`` form false.
    """

    flag: str
    path: str
    switch: bool = False

    @property
    def name(self) -> str:
        """How messages name it."""
        return f"{self.flag}/--no-{self.flag[2:]}" if self.switch else self.flag


# An alias path under METHOD sets that setting of the run's method (``datm.ipc``
# for DATM and MTT, ``dm.ipc`` for DM: `jaxdd.methods.base.Method.field`).
METHOD = "<method>"
_DATA_ALIASES = (
    Alias("--dataset", "dataset"),
    Alias("--noise", "noise"),
    Alias("--seed", "seed"),
    Alias("--width", "width"),
    Alias("--max-train", "max_train"),
    Alias("--val-fraction", "val_fraction"),
)
DISTILL_ALIASES = (
    *_DATA_ALIASES,
    Alias("--ipc", f"{METHOD}.ipc"),
    Alias("--iterations", f"{METHOD}.iterations"),
    Alias("--syn-steps", "datm.syn_steps"),
    Alias("--max-start-epoch", "datm.max_start_epoch"),
    Alias("--current-max-start-epoch", "datm.current_max_start_epoch"),
    Alias("--lr-img", f"{METHOD}.lr_img"),
    Alias("--threshold", "datm.threshold"),
    Alias("--dsa", f"{METHOD}.dsa", switch=True),
    Alias("--num-experts", "experts.num_experts"),
    Alias("--expert-train-epochs", "experts.epochs"),
    Alias("--eval-epochs", "eval.epochs"),
    Alias("--seeds", "eval.num_seeds"),
    Alias("--eval-nets", "eval_nets"),
    Alias("--eval-width-scale", "eval_width_scale"),
    Alias("--checkpoint-every", "checkpoint_every"),
)
BASELINE_ALIASES = (
    *_DATA_ALIASES,
    Alias("--ipc", "ipc"),
    Alias("--epochs", "train.epochs"),
    Alias("--seeds", "train.num_seeds"),
    Alias("--dsa", "train.dsa", switch=True),
    Alias("--eval-every", "eval_every"),
    Alias("--eval-nets", "eval_nets"),
    Alias("--eval-width-scale", "eval_width_scale"),
)
# Paths set by a dedicated flag rather than --set: path -> that flag.
_TRUST_HOW = "--trust tad|small-loss|none"
_DISTILL_HOW = {"method": "--method (without --config)", "trust": _TRUST_HOW}
_BASELINE_HOW = {"kind": "--kind", "trust": _TRUST_HOW}


class _UsageError(ConfigError):
    """A command line argparse cannot parse."""


class _Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one-line `ConfigError`s."""

    def error(self, message: str):
        raise _UsageError(f"{message} ({self.prog} --help lists the flags)")


class _Override(argparse.Action):
    """Appends a `config_lib.Override` to ``namespace.overrides``, in command-line order.

    With an `alias` it sets the alias's path; without, it reads ``PATH=VALUE``
    (``--set``).
    """

    def __init__(self, option_strings, dest, alias: Alias | None = None, **kwargs):
        nargs = 0 if alias is not None and alias.switch else None
        super().__init__(option_strings, "overrides", nargs=nargs, default=None, **kwargs)
        self.alias = alias

    def __call__(self, parser, namespace, values, option_string=None):
        if self.alias is None:
            override = config_lib.parse_assignment(values)
        elif self.alias.switch:
            text = "false" if option_string.startswith("--no-") else "true"
            override = config_lib.Override(self.alias.path, text, option_string)
        else:
            override = config_lib.Override(self.alias.path, values, f"{option_string} {values}")
        namespace.overrides = [*(namespace.overrides or []), override]


class _SettingsHelp(argparse.Action):
    """``-h/--help`` of a command with a config tree: the flags, then every setting.

    The help texts of the aliases and the list of settings come from the
    config classes, imported only here (they import JAX).
    """

    def __init__(self, option_strings, dest, defaults: Callable[[], Any], **kwargs):
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show the flags and every setting with its default, and exit",
        )
        self.defaults = defaults
        self.aliases: list[argparse.Action] = []

    def __call__(self, parser, namespace, values, option_string=None):
        self.explain(parser)
        parser.print_help()
        parser.exit()

    def explain(self, parser: argparse.ArgumentParser) -> None:
        """Fills in the aliases' help (their field's help and default) and the epilog."""
        tree = self.defaults()
        leaves = {leaf.path: leaf for leaf in config_lib.leaves(tree, expand=True)}
        field = _method_field(tree.method) if hasattr(tree, "method") else None
        for action in self.aliases:
            leaf = leaves[_resolve(action.alias.path, field)]
            default = config_lib.format_value(leaf.value)
            where = leaf.path
            if action.alias.path.startswith(f"{METHOD}."):
                name = leaf.path.rsplit(".", 1)[-1]
                where += f", or dm.{name} / dance.{name} with --method dm / dance"
            action.help = _escape(f"{leaf.help} (sets {where}; default: {default})")
        settings = textwrap.indent(config_lib.describe(tree, expand=True), "  ")
        parser.epilog = (
            "settings (--set PATH=VALUE sets any of them; defaults shown; trust.* need "
            f"--trust; --show-config prints them as a command line resolves them):\n{settings}"
        )


def _escape(text: str) -> str:
    """`text` safe from argparse's %-formatting of help strings."""
    return text.replace("%", "%%")


# --- the parsers ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxdd", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("datasets", help="list dataset names and whether they are available here")
    _add_baseline_parser(sub)
    _add_distill_parser(sub)
    _add_evaluate_parser(sub)
    _add_sweep_parser(sub)
    demo = sub.add_parser("demo", help="noisy digits: baselines, DATM, two-stage and TAD + DATM")
    demo.add_argument("--out", default="runs", help="root of the demo directory (default: runs)")
    _add_progress(demo)
    return parser


def _tree_parser(sub, name: str, help_text: str, defaults: Callable[[], Any], aliases, example):
    """A subcommand over a config tree: its help lists the settings; aliases and --set."""
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    helper = p.add_argument("-h", "--help", action=_SettingsHelp, defaults=defaults)
    p.add_argument(
        "--set",
        action=_Override,
        metavar="PATH=VALUE",
        help=f"set any setting listed below, e.g. {example} (repeatable; default: none)",
    )
    p.add_argument(
        "--show-config",
        action="store_true",
        help="print the settings as resolved from the flags, as PATH=VALUE lines, and exit "
        "(default: run)",
    )
    group = p.add_argument_group("settings with a flag of their own (--set works as well)")
    for alias in aliases:
        flags = [alias.flag, f"--no-{alias.flag[2:]}"] if alias.switch else [alias.flag]
        metavar = None if alias.switch else alias.path.rsplit(".", 1)[-1].upper()
        helper.aliases.append(
            group.add_argument(
                *flags, action=_Override, alias=alias, metavar=metavar, help=_sets(alias.path)
            )
        )
    return p


def _sets(path: str) -> str:
    """The help of an alias of `path`."""
    if not path.startswith(f"{METHOD}."):
        return f"sets {path}"
    name = path.removeprefix(f"{METHOD}.")
    return f"sets the method's {name} (datm.{name} for datm and mtt, dm.{name} for dm)"


def _add_trust(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--trust",
        choices=("none", "tad", "small-loss"),
        default=None,
        help="tad: train on TAD's trusted space (docs/algorithms.md §4); small-loss: the "
        "two-stage small-loss selection; none: all data. Sets trust.mode, and the trust.* "
        f"settings apply (default: {default})",
    )


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")


def _add_hosts(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "multi-host (the same command on every host; README: Multi-host runs)"
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join the hosts of a cluster JAX detects (Cloud TPU pod slice, SLURM, Open MPI) "
        "(default: one process)",
    )
    group.add_argument(
        "--coordinator-address",
        metavar="HOST:PORT",
        help="process 0's address, the same on every host (default: one process)",
    )
    group.add_argument(
        "--num-processes", type=int, metavar="N", help="how many processes (default: 1)"
    )
    group.add_argument(
        "--process-id", type=int, metavar="I", help="this process's id, 0 … N-1 (default: 0)"
    )


def _join_hosts(args) -> None:
    """Joins the multi-process run the flags describe; on processes other than 0,
    progress bars go off and stdout goes quiet (process 0 reports for all)."""
    from jaxdd import hosts

    joined = hosts.initialize(
        args.coordinator_address, args.num_processes, args.process_id, auto=args.distributed
    )
    if joined and not hosts.is_main():
        args.no_progress = True
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


def _add_baseline_parser(sub) -> None:
    p = _tree_parser(
        sub,
        "baseline",
        "full-noisy ERM or random-subset baseline",
        _baseline_defaults,
        BASELINE_ALIASES,
        "train.lr=0.05",
    )
    p.add_argument(
        "--kind",
        choices=("erm", "random"),
        default=None,
        help=f"erm: train on all the (noisy) data, by default for {ERM_EPOCHS} epochs, testing "
        "every epoch; random: ipc random images per class (default: random)",
    )
    _add_trust(p, "none")
    p.add_argument("--out", default="runs", help="root of run directories (default: runs)")
    _add_progress(p)


def _distill_tree_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand over a `DistillConfig`: its settings, --config and --method."""
    p = _tree_parser(
        sub, name, help_text, _distill_defaults, DISTILL_ALIASES, "datm.iterations=500"
    )
    p.add_argument(
        "--config",
        metavar="FILE.py[:NAME]|FILE.json",
        help="start from get_config(NAME) of FILE (e.g. experiments/datm.py:fashion_mnist-ipc10), "
        "or from the config a .json file holds (a run's config.json, a sweep's chosen.json); "
        "flags and --set override it. A relative FILE is looked up in the working directory, "
        "then in the directory holding the jaxdd package (default: the built-in defaults)",
    )
    p.add_argument(
        "--method",
        choices=("datm", "mtt", "dm", "dance", "rcig"),
        default=None,
        help="start from this method's defaults (mtt: hard fixed labels, random real init, a "
        "fixed window, no loss gate; dm: distribution matching with random networks; dance: "
        "distribution matching with an expert pool; rcig: implicit gradients through a "
        "linearised network with a KRR head, Adam/MSE evaluation); not with --config, whose "
        "file sets the method (default: datm)",
    )
    _add_trust(p, "none, or the --config file's")
    return p


def _add_distill_parser(sub) -> None:
    p = _distill_tree_parser(
        sub, "distill", "DATM / MTT trajectory matching or DM distribution matching on (noisy) data"
    )
    p.add_argument(
        "--out",
        default=None,
        help="root of run directories and the cache of experts and trust splits (default: runs)",
    )
    p.add_argument(
        "--run-dir",
        help="run (or resume) in exactly this directory (default: a new one under --out)",
    )
    p.add_argument(
        "--experts-dir",
        help="the cache of expert trajectories and trust splits, which runs of every method "
        "share (default: experts/ under --out)",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a --run-dir that holds a run of another config (default: refuse)",
    )
    _add_progress(p)
    _add_hosts(p)


def _add_sweep_parser(sub) -> None:
    p = _distill_tree_parser(
        sub,
        "sweep",
        "a grid of a method's settings and seeds as one vmapped program, chosen on the noisy "
        "validation split",
    )
    p.add_argument(
        "--axis",
        action="append",
        required=True,
        metavar="PATH=V1,V2,...",
        help="a swept setting and its values, e.g. --axis datm.lr_img=30,100,300 --axis seed=0,1 "
        "(repeatable; the grid is their product)",
    )
    p.add_argument(
        "--out", required=True, help="the sweep directory (an interrupted sweep resumes)"
    )
    p.add_argument(
        "--experts-dir",
        default="runs/experts",
        help="the cache of expert trajectories and trust splits (default: runs/experts)",
    )
    _add_progress(p)
    _add_hosts(p)


def _add_evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="re-evaluate a finished distillation run's saved set on other networks",
        description="Trains fresh networks of each --eval-nets architecture on RUN_DIR's "
        "distilled.npz (its labels and learned lr) under the run's evaluation protocol, "
        "without re-distilling; the results join `networks` of its summary.json and networks.md.",
    )
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="a directory a finished `jaxdd distill` wrote"
    )
    p.add_argument(
        "--eval-nets",
        metavar="NETS",
        help="comma-separated networks among convnet, alexnet, vgg11, vgg11bn, resnet18, "
        "resnet18bn, resnet18_ap, resnet18bn_ap (default: the run's eval_nets)",
    )
    p.add_argument(
        "--eval-width-scale",
        type=float,
        metavar="SCALE",
        help="factor on the non-ConvNet networks' channels (default: the run's)",
    )
    _add_progress(p)


# --- configs from the command line ----------------------------------------------------


def _distill_defaults():
    from jaxdd.distill import DistillConfig

    return DistillConfig()


def _baseline_defaults():
    from jaxdd.baselines import BaselineConfig

    return BaselineConfig()


def _with_trust(base, trust: str | None, overrides: Sequence[config_lib.Override]):
    """``(config, overrides)`` with the trust stage ``--trust`` asks for.

    ``--trust tad|small-loss`` creates the stage (or keeps the config's) and
    becomes an override of ``trust.mode``, so that a contradicting ``--set``
    is refused.
    """
    if trust is None:
        return base, list(overrides)
    if trust == "none":
        return dataclasses.replace(base, trust=None), list(overrides)
    from jaxdd.trust.dual import TADConfig

    mode = config_lib.Override("trust.mode", trust, f"--trust {trust}")
    return dataclasses.replace(base, trust=base.trust or TADConfig()), [mode, *overrides]


def _distill_config(args):
    """The `DistillConfig` of a command line: defaults or --config, then the flags."""
    from jaxdd.distill import DistillConfig, method_defaults

    if args.config:
        if args.method:
            raise ConfigError(
                "--method picks a method's defaults when there is no --config; with --config "
                "the file sets the method (e.g. --config experiments/datm.py:mtt-cifar10-ipc10)"
            )
        base = _load_config_file(args.config)
        if not isinstance(base, DistillConfig):
            raise ConfigError(
                f"--config {args.config}: get_config returned a {type(base).__name__}, "
                "not a DistillConfig"
            )
    else:
        base = method_defaults(args.method or "datm")
    base, overrides = _with_trust(base, args.trust, args.overrides or [])
    field = _method_field(base.method)
    for o in overrides:
        _check_method_alias(base, o, field)
    overrides = [dataclasses.replace(o, path=_resolve(o.path, field)) for o in overrides]
    return config_lib.apply(base, overrides, how=_DISTILL_HOW)


def _check_method_alias(config, override: config_lib.Override, field: str) -> None:
    """Refuses a flag of the method's settings (`METHOD`) that the run's method lacks."""
    if not override.path.startswith(f"{METHOD}."):
        return
    name = override.path.removeprefix(f"{METHOD}.")
    known = set(config_lib.paths(config))
    if f"{field}.{name}" in known:
        return
    from jaxdd.methods import base

    having = [f for f in base.fields() if f"{f}.{name}" in known]
    raise ConfigError(
        f"{override.source}: --method {config.method} has no {name} setting "
        f"(the flag sets {', '.join(f'{f}.{name}' for f in having)} for the methods that have it)"
    )


def _resolve(path: str, field: str | None) -> str:
    """`path` with a leading `METHOD` replaced by the method's settings field."""
    if field is None or not path.startswith(f"{METHOD}."):
        return path
    return f"{field}.{path.removeprefix(f'{METHOD}.')}"


def _method_field(method: str) -> str:
    """The `DistillConfig` field holding `method`'s settings (``datm``, ``dm``)."""
    from jaxdd.methods import base

    return base.get_method(method).field


def _baseline_config(args):
    """The `BaselineConfig` of a command line: the kind's defaults, then the flags."""
    from jaxdd.baselines import BaselineConfig
    from jaxdd.ops.train import TrainConfig

    base = BaselineConfig(kind=args.kind or "random")
    if base.kind == "erm":
        base = dataclasses.replace(base, train=TrainConfig(epochs=ERM_EPOCHS), eval_every=1)
    base, overrides = _with_trust(base, args.trust, args.overrides or [])
    return config_lib.apply(base, overrides, how=_BASELINE_HOW)


def _load_config_file(spec: str):
    """What ``FILE.py[:NAME]`` names: ``get_config(NAME)``, or ``get_config()``, of FILE;
    or the `DistillConfig` a ``FILE.json`` holds (a run's ``config.json``, a sweep's
    ``chosen.json``)."""
    text, _, name = spec.partition(":")
    path = _find_config_file(text)
    if path.suffix == ".json":
        return _json_config(spec, path, name)
    module_spec = importlib.util.spec_from_file_location("jaxdd_user_config", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--config {spec}: {path} is not a .py file with get_config()")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ConfigError(f"--config {spec}: {path}, line {err.lineno}: {err.msg}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config {spec}: {path} defines no get_config() function")
    return module.get_config(name) if name else module.get_config()


def _json_config(spec: str, path: pathlib.Path, name: str):
    """The `DistillConfig` written as JSON at `path`."""
    from jaxdd import report
    from jaxdd.distill import DistillConfig

    if name:
        raise ConfigError(f"--config {spec}: a .json config holds one config; drop :{name}")
    try:
        data = report.read_json(path)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--config {spec}: {path}, line {err.lineno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {spec}: {path} holds no config (a JSON object)")
    return config_lib.from_jsonable(DistillConfig, data)


def _find_config_file(text: str) -> pathlib.Path:
    """`text` as a file, from the working directory or else from `PACKAGE_ROOT`."""
    given = pathlib.Path(text).expanduser()
    roots = [pathlib.Path.cwd(), PACKAGE_ROOT]
    for root in roots:
        if (root / given).is_file():
            return root / given
    looked = str(given) if given.is_absolute() else " or ".join(str(r / given) for r in roots)
    raise ConfigError(f"config file {text!r} does not exist (looked for {looked})")


def _labeller(aliases: Sequence[Alias]) -> Callable[[str], str]:
    """Names a path in messages by its flag, where it has one: ``--ipc (datm.ipc)``."""
    from jaxdd.methods import base

    names = {_resolve(a.path, field): a.name for a in aliases for field in base.fields()}
    return lambda path: f"{names[path]} ({path})" if path in names else path


# --- the commands -----------------------------------------------------------------------


def cmd_datasets(args) -> None:
    from jaxdd.data.registry import list_datasets

    for info in list_datasets():
        mark = "yes" if info.available else "no "
        print(f"{info.name:15s} available: {mark}  {info.description}")
        if not info.available:
            print(f"{'':15s} to get it: {info.how_to_get}")


def cmd_baseline(args) -> None:
    config = _baseline_config(args)
    if args.show_config:
        print(config_lib.describe(config))
        return
    from jaxdd.baselines import run_baseline, validate_run
    from jaxdd.report import mean_std

    validate_run(config, out_root=args.out, label=_labeller(BASELINE_ALIASES))
    summary, run = run_baseline(config, out_root=args.out, progress=not args.no_progress)
    print(
        f"{config.kind} on {summary['dataset']} ({config.noise}): "
        f"{mean_std(summary['accuracies'])} % over {len(summary['accuracies'])} seeds"
    )
    print(f"run directory: {run.path}")


def cmd_distill(args) -> None:
    if args.run_dir is not None and args.out is not None:
        raise ConfigError("--out has no effect with --run-dir, which names the run directory")
    config = _distill_config(args)
    if args.show_config:
        print(config_lib.describe(config))
        return
    _join_hosts(args)
    from jaxdd.distill import run_distill, validate_run
    from jaxdd.report import mean_std

    out = args.out or "runs"
    experts_dir = args.experts_dir or str(pathlib.Path(out) / "experts")
    validate_run(
        config,
        out_root=out,
        run_dir=args.run_dir,
        experts_dir=experts_dir,
        label=_labeller(DISTILL_ALIASES),
    )
    summary, run = run_distill(
        config,
        out_root=out,
        run_dir=args.run_dir,
        experts_dir=experts_dir,
        progress=not args.no_progress,
        allow_config_change=args.allow_config_change,
    )
    learned = f" (learned lr {summary['syn_lr']:.4g})" if "syn_lr" in summary else ""
    print(
        f"{config.method} on {summary['dataset']} ({config.noise}), IPC {summary['ipc']}: "
        f"{mean_std(summary['accuracies'])} % over {len(summary['accuracies'])} seeds{learned}"
    )
    print(f"run directory: {run.path}")


def cmd_evaluate(args) -> None:
    nets = None
    if args.eval_nets is not None:
        from jaxdd.models.zoo import EvalNet

        try:
            nets = config_lib.parse_value(args.eval_nets, tuple[EvalNet, ...])
        except ValueError as err:
            raise ConfigError(f"--eval-nets: {err}") from None
    from jaxdd.cross_arch import evaluate_run

    evaluate_run(
        args.run_dir, nets, width_scale=args.eval_width_scale, progress=not args.no_progress
    )


def cmd_sweep(args) -> None:
    config = _distill_config(args)
    if args.show_config:
        print(config_lib.describe(config))
        return
    _join_hosts(args)
    from jaxdd import sweep, validate
    from jaxdd.report import mean_std

    axes = [sweep.parse_axis(text) for text in args.axis]
    sweep.grid(config, axes)  # every point checked before any work
    validate.check_dir(args.out, f"the sweep directory {args.out}")
    validate.check_dir(args.experts_dir, f"the expert cache {args.experts_dir}")
    summary = sweep.run_sweep(
        config, axes, out_dir=args.out, experts_dir=args.experts_dir, progress=not args.no_progress
    )
    best = summary["chosen"]
    values = ", ".join(f"{k}={config_lib.format_value(v)}" for k, v in best["values"].items())
    print(f"chosen on the noisy validation split: {values}")
    val, test = (mean_std(best[k]) for k in ("val_accuracies", "accuracies"))
    print(f"  validation {val} %, test (reported, never chosen on) {test} %")
    print(f"sweep directory: {args.out} (chosen.json runs with jaxdd distill --config)")


def cmd_demo(args) -> None:
    from jaxdd import validate
    from jaxdd.demo import run_demo

    validate.check_dir(args.out, f"--out {args.out}")
    run_demo(out_root=args.out, progress=not args.no_progress)


_COMMANDS = {
    "datasets": cmd_datasets,
    "baseline": cmd_baseline,
    "distill": cmd_distill,
    "evaluate": cmd_evaluate,
    "sweep": cmd_sweep,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    """Runs the command line `argv`; returns the exit status (2: bad input)."""
    try:
        args = _parser().parse_args(argv)
        _COMMANDS[args.command](args)
    except JaxddError as err:
        print(f"jaxdd: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
