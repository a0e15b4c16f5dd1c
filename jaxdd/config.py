"""The configuration tree of a run: dotted paths, typed values, overrides, a printable form.

A run is configured by ONE frozen dataclass tree (`jaxdd.distill.DistillConfig`,
`jaxdd.baselines.BaselineConfig`, with nested `DATMConfig`, `ExpertConfig`,
`TrainConfig`, `TADConfig`). Every leaf has a dotted path (``datm.iterations``,
``trust.kappa``), a type annotation and a help text, the entry of its class's
docstring ``Attributes:`` section. This module parses command-line text by a
leaf's annotation, applies overrides (``--set PATH=VALUE``) and prints the
tree; it knows no particular config, so a field added to any class of a tree
is settable and listed without new code.

Value syntax, by annotation: ``int``; ``float`` (``inf`` included, NaN
refused); ``bool`` as ``true`` / ``false``; ``str`` as given; a ``Literal``'s
choices; tuples as comma-separated items (``()`` for the empty one); ``none``
for an Optional field.

A root class may declare

* ``LINKED``: groups of paths that are one setting: an override of one sets
  every path of its group;
* ``unused(self) -> {path: reason}``: the fields the config ignores as it
  stands; an override of one is refused with the reason.

Nothing here imports JAX: the command line parses without it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from jaxdd.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One setting of a config tree.

    Attributes:
      path: dotted path from the root, e.g. ``datm.iterations``.
      value: its value (for an absent optional group: the group's default).
      annotation: the resolved type annotation of the field.
      help: the field's entry in its class's ``Attributes:`` docstring.
      absent: the leaf belongs to an optional group that is None in this
        tree (listed with the group's defaults).
    """

    path: str
    value: Any
    annotation: Any
    help: str
    absent: bool = False


@dataclasses.dataclass(frozen=True)
class Override:
    """One setting given on the command line.

    Attributes:
      path: the dotted path it sets.
      text: the value as typed, parsed by the field's annotation.
      source: how it was given, for messages (``--ipc 0``, ``--set datm.ipc=0``).
    """

    path: str
    text: str
    source: str


def parse_assignment(text: str) -> Override:
    """``PATH=VALUE`` (the argument of ``--set``) as an `Override`."""
    path, eq, value = text.partition("=")
    if not eq or not path.strip():
        raise ConfigError(
            f"--set {text!r}: give PATH=VALUE, e.g. --set datm.iterations=500 "
            "(--help lists every PATH)"
        )
    return Override(path.strip(), value.strip(), f"--set {text}")


# --- types and help of the fields ------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of the dataclass `cls`'s fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _members(annotation: Any) -> tuple[Any, ...] | None:
    """The members of a union annotation, or None when it is not one."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def group_class(annotation: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), or None for a leaf."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    classes = [m for m in _members(annotation) or () if dataclasses.is_dataclass(m)]
    return classes[0] if len(classes) == 1 else None


_ENTRY = re.compile(r"(\w+(?:, \w+)*): (.*)")
# The end of a docstring entry's first sentence (not the dots of "e.g." / "i.e.").
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(?:\s|$)")


@functools.cache
def _attribute_help(cls: type) -> dict[str, str]:
    """Field name -> first sentence of its entry in `cls`'s ``Attributes:`` section."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    if "Attributes:" not in lines:
        return {}
    entries: dict[tuple[str, ...], list[str]] = {}
    base = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        indent = len(line) - len(line.lstrip())
        if line.strip() and indent == 0:
            break
        match = _ENTRY.fullmatch(line.strip())
        if match and indent == (base := base or indent):
            names = tuple(match[1].split(", "))
            entries[names] = [match[2]]
        elif line.strip() and entries:
            entries[next(reversed(entries))].append(line.strip())
    helps = {}
    for names, words in entries.items():
        text = " ".join(words).replace("`", "")
        end = _SENTENCE_END.search(text)
        for name in names:
            helps[name] = text[: end.start()] if end else text
    return helps


# --- walking a tree --------------------------------------------------------------


def leaves(config: Any, *, expand: bool = False) -> Iterator[Leaf]:
    """Every leaf of `config`, depth first in field order.

    An optional group that is None is one leaf (value None); with `expand`
    its fields follow, with the group's defaults and ``absent=True``.
    """
    yield from _leaves(config, "", expand, absent=False)


def _leaves(config: Any, prefix: str, expand: bool, absent: bool) -> Iterator[Leaf]:
    cls = type(config)
    helps = _attribute_help(cls)
    for name, annotation in _hints(cls).items():
        path, value = prefix + name, getattr(config, name)
        group = group_class(annotation)
        if group is not None and value is not None:
            yield from _leaves(value, path + ".", expand, absent)
            continue
        yield Leaf(path, value, annotation, helps.get(name, ""), absent)
        if group is not None and expand:
            yield from _leaves(group(), path + ".", expand, absent=True)


def paths(config: Any) -> list[str]:
    """Every settable path of `config`'s tree (absent optional groups included)."""
    return [leaf.path for leaf in leaves(config, expand=True)]


def get(config: Any, path: str) -> Any:
    """The value at dotted `path` (which must exist)."""
    for name in path.split("."):
        config = getattr(config, name)
    return config


def replaced(config: Any, path: str, value: Any) -> Any:
    """`config` with the leaf at dotted `path` set to `value` (any value: a tracer too)."""
    return _replaced(config, path.split("."), value)


def _replaced(config: Any, names: Sequence[str], value: Any) -> Any:
    head, *rest = names
    inner = _replaced(getattr(config, head), rest, value) if rest else value
    return dataclasses.replace(config, **{head: inner})


# --- parsing and printing values --------------------------------------------------


def describe_type(annotation: Any) -> str:
    """What a value of `annotation` looks like on the command line."""
    members = _members(annotation)
    if members is not None:
        return " or ".join(describe_type(m) for m in members)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        return "comma-separated " + describe_type(args[0]).removeprefix("an ").removeprefix("a ")
    names = {
        int: "an integer",
        float: "a number (inf allowed)",
        bool: "true or false",
        str: "text",
        type(None): "none",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def parse_value(text: str, annotation: Any) -> Any:
    """`text` as a value of `annotation`; ValueError (saying what was expected) if it is not."""
    members = _members(annotation)
    if members is not None:
        for member in sorted(members, key=lambda m: m is not type(None)):
            try:
                return parse_value(text, member)
            except ValueError:
                continue
        raise ValueError(f"{text!r} is not {describe_type(annotation)}")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        for choice in args:
            if text == str(choice):
                return choice
    elif origin is tuple:
        return _parse_tuple(text, args)
    elif annotation is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    elif annotation is int and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    elif annotation is float:
        number = _float(text)
        if number is not None:
            return number
    elif annotation is str:
        return text
    elif annotation is type(None) and text.lower() == "none":
        return None
    raise ValueError(f"{text!r} is not {describe_type(annotation)}")


def _float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _parse_tuple(text: str, args: tuple[Any, ...]) -> tuple:
    items = [] if text.strip() in ("", "()") else [t.strip() for t in text.split(",")]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(parse_value(item, args[0]) for item in items)
    if len(items) != len(args):
        raise ValueError(f"{text!r} is not {len(args)} comma-separated values")
    return tuple(parse_value(item, kind) for item, kind in zip(items, args, strict=True))


def format_value(value: Any) -> str:
    """`value` as `parse_value` reads it back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value) or "()"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def fits(value: Any, annotation: Any) -> bool:
    """Whether `value` is a value of `annotation` (Literal choices included)."""
    members = _members(annotation)
    if members is not None:
        return any(fits(value, m) for m in members)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return value in args and not isinstance(value, bool)
    if origin is tuple:
        kinds = [args[0]] * len(value) if args[1:] == (Ellipsis,) else list(args)
        return (
            isinstance(value, tuple)
            and len(kinds) == len(value)
            and all(fits(v, k) for v, k in zip(value, kinds, strict=True))
        )
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is type(None):
        return value is None
    return isinstance(value, annotation) if isinstance(annotation, type) else True


# --- overrides ---------------------------------------------------------------------


def apply(config: Any, overrides: Sequence[Override], *, how: Mapping[str, str] = {}) -> Any:
    """`config` with `overrides` applied, after checking every one of them.

    An override is refused (`ConfigError`, one line naming its source) when
    its path does not exist (the message lists close matches), names a group
    rather than a setting, lies in an optional group that is None, is
    reserved for a dedicated flag, contradicts another override of the same
    setting (`LINKED` paths are one setting), does not parse by the field's
    annotation, or has no effect in the resulting config (``unused``).

    Args:
      config: the root of the tree (a frozen dataclass).
      overrides: in command-line order.
      how: path -> how to set it instead (a flag), for reserved settings and
        for optional groups that are None.
    """
    links = {p: group for group in getattr(type(config), "LINKED", ()) for p in group}
    given: dict[str, tuple[Any, Override]] = {}
    for override in overrides:
        annotation = _annotation(config, override, how)
        try:
            value = parse_value(override.text, annotation)
        except ValueError as err:
            raise ConfigError(f"{override.source}: {err} (the type of {override.path})") from None
        for path in links.get(override.path, (override.path,)):
            if path in given and given[path][0] != value:
                what = (
                    f"{', '.join(links[path])} are one setting"
                    if path in links
                    else f"{path} takes one value"
                )
                raise ConfigError(f"{override.source} contradicts {given[path][1].source}: {what}")
            given[path] = value, override
            config = _replaced(config, path.split("."), value)
    unused = config.unused() if hasattr(config, "unused") else {}
    for override in overrides:
        if override.path in unused:
            raise ConfigError(f"{override.source} has no effect: {unused[override.path]}")
    return config


def _annotation(config: Any, override: Override, how: Mapping[str, str]) -> Any:
    """The annotation of the leaf `override` sets, or `ConfigError` saying why it cannot."""
    path, source = override.path, override.source
    if path in how and path in paths(config):
        raise ConfigError(f"{source}: {path} is set with {how[path]}")
    node, names = config, path.split(".")
    for depth, name in enumerate(names):
        hints = _hints(type(node))
        if name not in hints:
            raise ConfigError(f"{source}: {_unknown(config, path)}")
        prefix = ".".join(names[: depth + 1])
        group, node = group_class(hints[name]), getattr(node, name)
        if depth == len(names) - 1:
            if group is not None:
                fix = f"set one of its fields, e.g. {prefix}.{_first(group)}=…"
                fix += f", or use {how[prefix]}" if prefix in how else ""
                raise ConfigError(f"{source}: {prefix} is a group of settings: {fix}")
            return hints[name]
        if group is None:
            raise ConfigError(f"{source}: {_unknown(config, path)}")
        if node is None:
            fix = f"set it with {how[prefix]}" if prefix in how else f"set {prefix} first"
            raise ConfigError(f"{source}: {path} needs {prefix}, which is none here: {fix}")
    raise AssertionError("unreachable")


def _first(cls: type) -> str:
    return dataclasses.fields(cls)[0].name


def _unknown(config: Any, path: str) -> str:
    known = paths(config)
    tail = path.rsplit(".", 1)[-1]
    close = [p for p in known if p.rsplit(".", 1)[-1] == tail]
    close += [p for p in difflib.get_close_matches(path, known, n=3, cutoff=0.6) if p not in close]
    hint = f"; did you mean {', '.join(close[:4])}?" if close else ""
    return f"no setting {path!r}{hint} (--help lists every setting)"


# --- printing a tree ---------------------------------------------------------------


def describe(config: Any, *, expand: bool = False) -> str:
    """The tree as ``path=value  help`` lines, which ``--set`` reads back.

    Linked settings (among those in use) and those the config ignores as it
    stands are marked;
    with `expand`, the fields of absent optional groups are listed with
    their defaults.
    """
    links = {p: group for group in getattr(type(config), "LINKED", ()) for p in group}
    unused = config.unused() if hasattr(config, "unused") else {}
    rows = []
    for leaf in leaves(config, expand=expand):
        notes = [leaf.help]
        others = [p for p in links.get(leaf.path, ()) if p != leaf.path and p not in unused]
        if leaf.path not in unused and others:
            notes.append(f"[one setting with {', '.join(others)}]")
        if leaf.path in unused and not leaf.absent:
            notes.append(f"[unused: {unused[leaf.path]}]")
        rows.append((f"{leaf.path}={format_value(leaf.value)}", " ".join(n for n in notes if n)))
    width = min(42, max(len(key) for key, _ in rows))
    return "\n".join(f"{key:<{width}}  {text}".rstrip() for key, text in rows)


# --- reading a tree back -----------------------------------------------------------


def from_jsonable(cls: type, data: Mapping[str, Any]) -> Any:
    """The config of class `cls` that was written as JSON `data` (``config.json``).

    Lists become tuples; a field the JSON lacks (one added since) keeps its
    default.

    Raises:
      ConfigError: `data` holds a key that is no field of `cls`.
    """
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(
            f"the saved config holds settings this jaxdd does not know ({', '.join(unknown)}): "
            "it was written by another version"
        )
    values = {}
    for name, value in data.items():
        group = group_class(hints[name])
        values[name] = (
            from_jsonable(group, value)
            if group is not None and value is not None
            else _tuples(value)
        )
    return cls(**values)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
