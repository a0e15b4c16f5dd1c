"""`jaxdd sweep`: a grid of one method's hyper-parameters and seeds as one vmapped program.

A sweep is the product of its axes (``datm.lr_img=30,100,300``, ``seed=0,1``,
``eval.lr=0.01,0.03``, …) over a base `DistillConfig`. Its points run as few
programs as the axes allow:

* **Distillation lanes.** Points that differ only in evaluation settings
  (``eval.*``) share one distilled set: a *lane*. The lanes whose settings
  enter the method's step only as numbers (learning rates, momenta, seeds,
  the expert protocol — whatever traces) run as ONE jitted program: the
  method's `step` vmapped over a leading lane axis, that axis sharded over the
  devices' ``runs`` mesh, the swept numbers traced (a different value never
  recompiles). Each lane's state comes from the method's own `setup` (its
  seed, its experts); the step's resources are shared where every lane has
  the same ones, stacked along the lane axis where they differ.
* **Static axes.** An axis that the step reads as a Python value (a loop
  length such as ``datm.syn_steps``, a switch), that changes the state's or
  resources' shapes (``datm.ipc``, ``experts.epochs``) or the data
  (``dataset``, ``noise``, ``trust.*``, ``width``, ``max_train``, …), or the
  number of iterations, splits the lanes into programs run one after the
  other: `plan` finds them (by tracing the step, not from a list) and the
  command says which.
* **Evaluation.** Every point's set trains ``eval.num_seeds`` fresh networks,
  all points of one evaluation protocol in ONE vmapped program (images,
  targets and lr per run; ``eval.lr`` is a run's value, a learned lr too),
  with the keys a single ``jaxdd distill`` of that point would use.

On XLA:CPU the lane axis is a loop of one compiled single-lane program
instead of a vmap (`lanes_step`), as every runs axis there. Vmapped lanes
draw their own DSA families, so with DSA on each lane's augmentation runs
every family's branch (``lax.switch`` under vmap; docs/architecture.md,
"Known platform traps"): the price of lanes that are each exactly a single
run.

The criterion is the accuracy on the NOISY validation split carved from the
training data (``val_fraction`` > 0, required): the clean test accuracy is
reported beside it and never chooses. The sweep directory holds
``points.jsonl`` (a row per evaluated point), ``sweep.md`` (the table),
``sweep.png`` (the criterion per point), ``chosen.json`` (the chosen
setting's config — a ``seed`` axis is pooled as replicates, never chosen —
which ``jaxdd distill --config chosen.json`` runs) and
``summary.json``. Distillation is checkpointed every ``checkpoint_every``
iterations per program and a finished program's sets saved, so an
interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdd import config as config_lib
from jaxdd import hosts, parallel, report, rng, training
from jaxdd.checkpoint import Checkpointer
from jaxdd.errors import ConfigError
from jaxdd.locking import DirectoryLock, atomic_write_text
from jaxdd.methods import base
from jaxdd.models.convnet import make_convnet
from jaxdd.ops import loops
from jaxdd.prepare import prepare_for

# Top-level fields whose values change the prepared data or the networks: a lane
# group of its own (prepared once per group).
_DATA_FIELDS = frozenset(
    {
        "dataset",
        "noise",
        "noise_seed",
        "max_train",
        "val_fraction",
        "zca",
        "trust",
        "width",
        "depth",
        "method",
    }
)
# Fields a sweep cannot vary (what it reports and how it logs are the sweep's own).
_FIXED = frozenset({"eval_nets", "eval_width_scale", "checkpoint_every", "log_every"})
# Errors that say a traced value reached Python control flow, a shape or a static
# parameter of a primitive (the last one surfaces as a TypeError: unhashable).
_TRACE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    TypeError,
)


@dataclasses.dataclass(frozen=True)
class Axis:
    """One swept setting: its dotted path and the values as typed."""

    path: str
    texts: tuple[str, ...]

    @property
    def flag(self) -> str:
        return f"--axis {self.path}={','.join(self.texts)}"


def parse_axis(text: str) -> Axis:
    """``PATH=V1,V2,...`` (the argument of ``--axis``) as an `Axis`."""
    path, eq, values = text.partition("=")
    texts = tuple(v.strip() for v in values.split(",") if v.strip())
    if not eq or not path.strip() or not texts:
        raise ConfigError(
            f"--axis {text!r}: give PATH=V1,V2,..., e.g. --axis datm.lr_img=30,100,300 "
            "(jaxdd distill --help lists every PATH)"
        )
    if len(set(texts)) != len(texts):
        raise ConfigError(f"--axis {text!r} repeats a value")
    return Axis(path.strip(), texts)


class Point(NamedTuple):
    """One point of the grid: its swept values (path → value) and its whole config."""

    index: int
    values: dict[str, Any]
    config: Any


def grid(base_config, axes: Sequence[Axis]) -> list[Point]:
    """Every combination of the axes' values applied to `base_config`, first axis slowest.

    Each point's config is checked as ``jaxdd distill`` checks one (a value of
    the wrong type, a setting the method ignores, a window that does not fit).

    Raises:
      ConfigError: no axis, an axis twice, an axis the sweep cannot vary, no
        validation split, or a point that ``jaxdd distill`` would refuse.
    """
    from jaxdd.distill import check_config

    if not axes:
        raise ConfigError("a sweep needs at least one --axis PATH=V1,V2,...")
    paths = [a.path for a in axes]
    if len(set(paths)) != len(paths):
        raise ConfigError(f"an axis is given twice: {', '.join(paths)}")
    for axis in axes:
        if axis.path.split(".")[0] in _FIXED:
            raise ConfigError(
                f"{axis.flag}: a sweep cannot vary {axis.path}; set it with --set for every point"
            )
    if base_config.val_fraction <= 0:
        raise ConfigError(
            "a sweep chooses on the noisy validation split, and this config holds none: "
            "add --set val_fraction=0.1"
        )
    if tuple(base_config.eval_nets) != ("convnet",):
        raise ConfigError(
            "a sweep evaluates on the method's ConvNet; evaluate the chosen run on other "
            "networks with jaxdd evaluate RUN_DIR --eval-nets ..."
        )
    points = []
    for i, texts in enumerate(itertools.product(*(a.texts for a in axes))):
        overrides = [
            config_lib.Override(a.path, t, f"--axis {a.path}={t}")
            for a, t in zip(axes, texts, strict=True)
        ]
        cfg = config_lib.apply(base_config, overrides)
        check_config(cfg)
        points.append(Point(i, {a.path: config_lib.get(cfg, a.path) for a in axes}, cfg))
    return points


def _distill_key(cfg) -> str:
    """What determines a point's distilled set: its config but for the evaluation protocol."""
    fields = dataclasses.asdict(cfg)
    del fields["eval"]
    return json.dumps(fields, sort_keys=True, default=str)


def _data_key(cfg, axes: Sequence[Axis]) -> tuple:
    """The values of the axes that change the data, the loop length or a non-number."""
    method = base.get_method(cfg.method)
    key = []
    for axis in axes:
        head = axis.path.split(".")[0]
        value = config_lib.get(cfg, axis.path)
        static = (
            head in _DATA_FIELDS
            or axis.path == f"{method.field}.iterations"
            or not _is_number(value)
        )
        if static and head != "eval":
            key.append((axis.path, value))
    return tuple(key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dtype(value: Any) -> np.dtype:
    """How a swept number is traced: int32 for an integer setting, else float32."""
    return np.dtype(np.int32 if isinstance(value, int) else np.float32)


def _shape_signature(tree: Any) -> tuple:
    """The structure, shapes and dtypes of `tree`'s leaves (what vmapping needs equal)."""
    leaves, treedef = jax.tree.flatten(tree)
    return (str(treedef), tuple((np.shape(x), str(jnp.result_type(x))) for x in leaves))


def _with_values(cfg, values: dict[str, Any]):
    """`cfg` with each path (and the paths `LINKED` to it) set to the given (traced) value."""
    links = {p: group for group in type(cfg).LINKED for p in group}
    for path, value in values.items():
        for linked in links.get(path, (path,)):
            cfg = config_lib.replaced(cfg, linked, value)
    return cfg


class Program(NamedTuple):
    """Lanes run as one vmapped program.

    Attributes:
      lanes: the lanes' configs (one distilled set each).
      traced: the swept paths traced in the program (their values differ).
      looped: path → why the lanes of other values run in another program.
    """

    lanes: tuple[Any, ...]
    traced: tuple[str, ...]
    looped: dict[str, str]


def _traces(method, model, cfg, state, resources, paths: Sequence[str]) -> bool:
    """Whether the step traces with the settings at `paths` given as traced scalars."""

    def step(values):
        return method.step(model, _with_values(cfg, values), state, resources)

    values = {p: jax.ShapeDtypeStruct((), _dtype(config_lib.get(cfg, p))) for p in paths}
    try:
        jax.eval_shape(step, values)
    except _TRACE_ERRORS:
        return False
    return True


class _Group(NamedTuple):
    """Lanes on the same prepared data, with their setups."""

    data: Any
    model: Any
    eval_spec: Any
    lanes: list
    setups: list


def _split_programs(group: _Group, axes: Sequence[Axis]) -> list[tuple[Program, list]]:
    """The group's lanes as programs: by state/resource shapes, then by what does not trace."""
    first = group.lanes[0]
    method = base.get_method(first.method)
    numeric = [
        a.path
        for a in axes
        if a.path.split(".")[0] not in (_DATA_FIELDS | {"eval"})
        and _is_number(config_lib.get(first, a.path))
    ]
    looped: dict[str, str] = {}
    s0 = group.setups[0]
    for path in numeric:
        if not _traces(method, group.model, first, s0.state, s0.resources, [path]):
            looped[path] = "the step reads it as a Python value (a loop length, shape or switch)"

    def key(i):
        cfg, setup = group.lanes[i], group.setups[i]
        static = tuple(config_lib.get(cfg, p) for p in looped)
        return static, _shape_signature(setup.state), _shape_signature(setup.resources)

    buckets: dict[tuple, list[int]] = {}
    for i in range(len(group.lanes)):
        buckets.setdefault(key(i), []).append(i)
    if len(buckets) > 1:
        for path in numeric:
            if path in looped:
                continue
            values = {config_lib.get(group.lanes[i], path) for i in range(len(group.lanes))}
            shapes = {key(i)[1:] for i in range(len(group.lanes))}
            if len(values) > 1 and len(shapes) > 1:
                looped.setdefault(path, "its values change the shapes of the state or resources")
    programs = []
    for members in buckets.values():
        lanes = tuple(group.lanes[i] for i in members)
        traced = tuple(
            p for p in numeric if p not in looped and len({config_lib.get(c, p) for c in lanes}) > 1
        )
        programs.append((Program(lanes, traced, dict(looped)), [group.setups[i] for i in members]))
    return programs


def _stack(trees: Sequence[Any]) -> Any:
    """The trees' leaves stacked along a new leading axis (typed PRNG keys included)."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def _comparable(x: Any) -> np.ndarray:
    """`x` as a numpy array (a typed PRNG key as its key data)."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def _resource_axes(resources: Sequence[Any]) -> tuple[Any, Any]:
    """``(in_axes, value)``: leaves every lane shares are kept once (axis None), others stacked."""
    leaves = [jax.tree.leaves(r) for r in resources]
    treedef = jax.tree.structure(resources[0])
    axes, values = [], []
    for parts in zip(*leaves, strict=True):
        first = _comparable(parts[0])
        same = all(np.array_equal(first, _comparable(p)) for p in parts[1:])
        axes.append(None if same else 0)
        values.append(parts[0] if same else jnp.stack([jnp.asarray(p) for p in parts]))
    return jax.tree.unflatten(treedef, axes), jax.tree.unflatten(treedef, values)


def lanes_step(method, model, cfg, resource_axes: Any = None, *, vectorize: bool = True):
    """``(values, state, resources) → (state, metrics)``: the method's step over a lane axis.

    `values` maps swept paths to ``[K]`` arrays (traced into `cfg` per lane), the
    state's leaves are ``[K, ...]``, and `resource_axes` (a prefix of the
    resources: 0 stacked per lane, None shared) says how the resources are
    mapped. `vectorize`: one jitted vmap over the lanes, the state donated
    (accelerators); or one jitted single-lane program called per lane and the
    results stacked (XLA:CPU, where vmapped per-lane conv weights become slow
    grouped convolutions: docs/architecture.md, "Known platform traps").
    Both compute the same numbers.
    """

    def lane_step(values, state, resources):
        return method.step(model, _with_values(cfg, values), state, resources)

    if vectorize:
        return jax.jit(jax.vmap(lane_step, in_axes=(0, 0, resource_axes)), donate_argnums=1)
    single = jax.jit(lane_step)

    def looped(values, state, resources):
        lanes = len(jax.tree.leaves(state)[0])
        outs = []
        for i in range(lanes):
            res = (
                jax.tree.map(
                    lambda axis, r, i=i: r if axis is None else jax.tree.map(lambda x: x[i], r),
                    resource_axes,
                    resources,
                    is_leaf=lambda x: x is None,
                )
                if resource_axes is not None
                else resources
            )
            outs.append(single(_lane(values, i), _lane(state, i), res))
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return looped


def run_program(
    program: Program,
    setups: Sequence[Any],
    model,
    directory: pathlib.Path,
    progress: bool,
    *,
    vectorize: bool | None = None,
):
    """Distils the program's lanes as one jitted step over the lane axis (`lanes_step`;
    `vectorize` default by backend, `jaxdd.ops.loops.vectorize_runs`); returns
    the stacked final state.

    The lane axis is sharded over the ``runs`` mesh (as many devices as divide
    the lane count); the state is checkpointed in `directory` every
    ``checkpoint_every`` iterations and at the end, and restored from there.
    """
    cfg = program.lanes[0]
    method = base.get_method(cfg.method)
    lanes = len(program.lanes)
    vectorize = loops.vectorize_runs() if vectorize is None else vectorize
    mesh = parallel.runs_mesh(lanes)
    values = {
        p: np.asarray([config_lib.get(c, p) for c in program.lanes], _dtype(config_lib.get(cfg, p)))
        for p in program.traced
    }
    res_axes, resources = _resource_axes([s.resources for s in setups])
    step = lanes_step(method, model, cfg, res_axes, vectorize=vectorize)
    state = parallel.shard_runs(_stack([s.state for s in setups]), mesh)
    values = parallel.shard_runs(values, mesh)
    resources = jax.tree.map(
        lambda axis, r: parallel.shard_runs(r, mesh) if axis == 0 else parallel.replicate(r, mesh),
        res_axes,
        resources,
        is_leaf=lambda x: x is None,
    )
    end = cfg.settings.iterations
    with Checkpointer(directory / "checkpoints", max_to_keep=2) as ckpt:
        _, state = ckpt.restore_latest(state)
        start = int(hosts.fetch(state.iteration)[0])
        bar = tqdm(range(start, end), disable=not progress, desc=f"sweep ({lanes} lanes)")
        for it in bar:
            state, _ = step(values, state, resources)
            if (it + 1) % cfg.checkpoint_every == 0:
                ckpt.save(it + 1, state, force=True)
        ckpt.save(end, state, force=True)
    return state


def _lane(state, i: int):
    return jax.tree.map(lambda x: x[i], state)


def _evaluate(points: Sequence[Point], sets: dict[str, Any], data, eval_spec, progress):
    """Trains every point's set in one vmapped program per protocol; returns one row per point.

    `sets` maps a point's distill key to its `base.Distilled`. Point p's seed s
    trains from key ``split(stream(seed, "eval"), S)[s]`` at the point's lr
    (its learned one, if the method learns one): what ``jaxdd distill`` of that
    point runs.
    """
    model = make_convnet(eval_spec)
    protocols: dict[str, list[Point]] = {}
    for p in points:
        protocol = dataclasses.replace(p.config.eval, lr=0.0)
        protocols.setdefault(json.dumps(dataclasses.asdict(protocol), default=str), []).append(p)
    x_test = data.space.encode(data.ds.x_test)
    val_x, val_y = data.validation
    rows = {}
    for members in protocols.values():
        protocol = members[0].config.eval
        seeds = protocol.num_seeds
        outs = [sets[_distill_key(p.config)] for p in members]
        lrs = [protocol.lr if o.lr is None else o.lr for o in outs]
        xs = np.repeat(np.stack([np.asarray(o.images) for o in outs]), seeds, axis=0)
        ts = np.repeat(np.stack([np.asarray(o.targets) for o in outs]), seeds, axis=0)
        keys = jnp.concatenate(
            [jax.random.split(rng.stream(p.config.seed, "eval"), seeds) for p in members]
        )
        runner = training.Runner(model, xs, ts, protocol)
        initial = runner.init(keys, jnp.repeat(jnp.asarray(lrs, jnp.float32), seeds))
        *_, (_, state, _) = runner.run(initial, progress=progress, label="evaluate sweep")
        test = parallel.replicate((x_test, data.ds.y_test), runner.mesh)
        val = parallel.replicate((val_x, val_y), runner.mesh)
        test_acc = hosts.fetch(runner.test_accuracy(state.params, state.stats, *test))
        val_acc = hosts.fetch(runner.test_accuracy(state.params, state.stats, *val))
        for j, (p, lr) in enumerate(zip(members, lrs, strict=True)):
            runs = slice(j * seeds, (j + 1) * seeds)
            rows[p.index] = _row(p, lr, val_acc[runs], test_acc[runs])
    return [rows[p.index] for p in points]


def _row(point: Point, lr: float, val: np.ndarray, test: np.ndarray) -> dict:
    return {
        "point": point.index,
        "values": {k: _plain(v) for k, v in point.values.items()},
        "eval_lr": float(lr),
        "val_accuracy_mean": float(val.mean()),
        "val_accuracy_std": float(val.std()),
        "val_accuracies": val.tolist(),
        "accuracy_mean": float(test.mean()),
        "accuracy_std": float(test.std()),
        "accuracies": test.tolist(),
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def plan(points: Sequence[Point], axes: Sequence[Axis], experts_dir: str, progress: bool):
    """Prepares the data and sets up every lane; returns ``[(_Group, [(Program, setups)])]``."""
    from jaxdd.distill import expert_source

    lanes: dict[str, Any] = {}
    for p in points:
        lanes.setdefault(_distill_key(p.config), p.config)
    groups: dict[tuple, list] = {}
    for cfg in lanes.values():
        groups.setdefault(_data_key(cfg, axes), []).append(cfg)
    planned = []
    for members in groups.values():
        first = members[0]
        method = base.get_method(first.method)
        data = prepare_for(first, split_cache=experts_dir)
        distil_spec, eval_spec = method.networks(first, data.spec(first.width, first.depth))
        model = make_convnet(distil_spec)
        experts = expert_source(model, data, experts_dir, progress)
        setups = [method.setup(c, model, data, base.Services(experts, c.seed)) for c in members]
        group = _Group(data, model, eval_spec, members, setups)
        planned.append((group, _split_programs(group, axes)))
    return planned


def describe_plan(planned, points: Sequence[Point]) -> list[str]:
    """Lines saying how the points run: programs, lanes, traced and looped axes."""
    programs = [prog for _, progs in planned for prog, _ in progs]
    lanes = sum(len(p.lanes) for p in programs)
    lines = [
        f"{len(points)} points, {lanes} distinct distilled sets, in {len(programs)} "
        f"vmapped program{'s' if len(programs) > 1 else ''}"
    ]
    for i, prog in enumerate(programs):
        traced = ", ".join(prog.traced) or "nothing (one lane)"
        lines.append(f"  program {i}: {len(prog.lanes)} lanes, traced: {traced}")
    looped = {k: v for prog in programs for k, v in prog.looped.items()}
    for path, why in looped.items():
        lines.append(f"  looped over {path}: {why}")
    return lines


def run_sweep(
    base_config,
    axes: Sequence[Axis],
    *,
    out_dir: str,
    experts_dir: str = "runs/experts",
    progress: bool = True,
    vectorize: bool | None = None,
) -> dict:
    """Runs (or resumes) the sweep in `out_dir`; returns its summary (see the module docstring).

    `vectorize`: vmap the lanes (default on accelerators) or loop one compiled
    single-lane program over them (default on CPU); the same numbers.
    """
    points = grid(base_config, axes)
    run = report.RunDir.at(out_dir)
    with DirectoryLock(run.path):
        hosts.decide(lambda: _adopt(run, base_config, axes))
        planned = plan(points, axes, experts_dir, progress)
        lines = describe_plan(planned, points)
        print("\n".join(lines), file=sys.stderr, flush=True)
        rows, k = [], 0
        for group, programs in planned:
            sets, skipped = {}, {}
            for program, setups in programs:
                directory = run.path / f"program-{k}"
                state = run_program(
                    program, setups, group.model, directory, progress, vectorize=vectorize
                )
                method = base.get_method(program.lanes[0].method)
                state = hosts.fetch(state)  # the lanes are sliced on the host
                for i, cfg in enumerate(program.lanes):
                    sets[_distill_key(cfg)] = method.distilled(cfg, _lane(state, i))
                    skipped[_distill_key(cfg)] = int(state.skipped[i])
                k += 1
            members = [p for p in points if _distill_key(p.config) in sets]
            for row, p in zip(
                _evaluate(members, sets, group.data, group.eval_spec, progress),
                members,
                strict=True,
            ):
                rows.append({**row, "skipped_updates": skipped[_distill_key(p.config)]})
        rows.sort(key=lambda r: r["point"])
        return _report(run, points, rows, axes, lines)


def _adopt(run: report.RunDir, base_config, axes: Sequence[Axis]) -> None:
    """Writes ``sweep.json`` (base config and axes), or refuses a directory of another sweep."""
    sweep = {"base": base_config, "axes": [dataclasses.asdict(a) for a in axes]}
    if (run.path / "sweep.json").exists():
        changes = run.json_changes("sweep.json", sweep)
        if changes:
            listed = ", ".join(sorted(changes))
            raise ConfigError(
                f"{run.path} holds another sweep (it differs in {listed}): use another --out"
            )
        return
    run.write_json("sweep.json", sweep)


def settings(rows: Sequence[dict]) -> list[dict]:
    """The rows pooled over the ``seed`` axis: one per setting (the other axes' values).

    A seed is a replicate, not a choice: a setting's networks of every seed
    are pooled (``points`` lists its points, ``val_accuracies`` / ``accuracies``
    all their networks). Without a seed axis a setting is a point.
    """
    pooled: dict[str, dict] = {}
    for r in rows:
        values = {k: v for k, v in r["values"].items() if k != "seed"}
        entry = pooled.setdefault(
            json.dumps(values, sort_keys=True),
            {"values": values, "points": [], "val_accuracies": [], "accuracies": []},
        )
        entry["points"].append(r["point"])
        entry["val_accuracies"] += r["val_accuracies"]
        entry["accuracies"] += r["accuracies"]
    for entry in pooled.values():
        for name in ("val_accuracies", "accuracies"):
            acc = np.asarray(entry[name])
            stem = name.removesuffix("ies") + "y"
            entry[f"{stem}_mean"], entry[f"{stem}_std"] = float(acc.mean()), float(acc.std())
    return list(pooled.values())


def choose(rows: Sequence[dict]) -> dict:
    """The setting (`settings`) of the highest mean validation accuracy (the first of equals)."""
    candidates = settings(rows)
    return max(candidates, key=lambda e: (e["val_accuracy_mean"], -candidates.index(e)))


def _report(run: report.RunDir, points, rows, axes, lines) -> dict:
    """Writes points.jsonl, sweep.md, sweep.png, chosen.json and summary.json."""
    best = choose(rows)
    table = _table(rows, axes, best)
    if run.writes:
        atomic_write_text(run.path / "points.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        atomic_write_text(run.path / "sweep.md", "\n".join([*lines, "", table, ""]))
        _plot(run.path / "sweep.png", rows, axes)
    # the chosen setting at its first point's seed
    run.write_json("chosen.json", points[best["points"][0]].config)
    summary = {
        "points": len(rows),
        "chosen": best,
        "criterion": "mean accuracy on the noisy validation split over every seed of a "
        "setting (never the test set)",
        "plan": lines,
    }
    run.write_json("summary.json", summary)
    return summary


def _table(rows, axes, best) -> str:
    """A Markdown table: a column per axis, validation (criterion) and test accuracy."""
    table_rows = []
    for r in rows:
        cells = {a.path: config_lib.format_value(r["values"][a.path]) for a in axes}
        mark = " ←" if r["point"] in best["points"] else ""
        val = report.mean_std(r["val_accuracies"]) + mark
        table_rows.append(
            {**cells, "val (noisy) %": val, "test %": report.mean_std(r["accuracies"])}
        )
    return report.format_table(table_rows, [a.path for a in axes] + ["val (noisy) %", "test %"])


def _plot(path: pathlib.Path, rows, axes) -> None:
    """The criterion (± std over seeds) per point, labelled by its values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        "\n".join(
            f"{a.path.split('.')[-1]}={config_lib.format_value(r['values'][a.path])}" for a in axes
        )
        for r in rows
    ]
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(rows)), 3.5))
    mean = [100 * r["val_accuracy_mean"] for r in rows]
    std = [100 * r["val_accuracy_std"] for r in rows]
    test = [100 * r["accuracy_mean"] for r in rows]
    x = np.arange(len(rows))
    ax.errorbar(x, mean, yerr=std, fmt="o", label="noisy validation (chooses)")
    ax.plot(x, test, "x", color="grey", label="clean test (reported only)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
