"""Run directories, metrics files, result tables and image grids.

Every command writes one run directory::

    runs/<time>-<name>/config.json     what was asked (the full config)
                       metrics.jsonl   one JSON object per logged event
                       summary.json    the final numbers
                       *.png           pictures (image grids, curves)

Every JSON file is strict JSON: NaN and the infinities, which it cannot hold,
are written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
(`NON_FINITE`), and `RunDir.read_events` / `RunDir.read_json` turn those
strings back into floats.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import pathlib
import re
import shutil
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxdd import hosts
from jaxdd.locking import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# How the JSON files spell the floats strict JSON has no literal for.
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON types, with non-finite floats spelled as in `NON_FINITE`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, pathlib.Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _restored(value: Any) -> Any:
    """Parsed JSON with the `NON_FINITE` strings turned back into floats."""
    if isinstance(value, dict):
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    return value


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(_jsonable(value), allow_nan=False, **kwargs)


def read_json(path: str | pathlib.Path) -> Any:
    """What `RunDir.write_json` wrote to `path`, non-finite floats included."""
    return _restored(json.loads(pathlib.Path(path).read_text()))


def _changes(old: Any, new: Any, path: str) -> dict[str, tuple[Any, Any]]:
    """``{dotted.path: (old, new)}`` for every leaf where two parsed JSON values differ."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return {} if old == new else {path: (old, new)}
    changes = {}
    for key in [*old, *(k for k in new if k not in old)]:
        changes |= _changes(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return changes


def slug(name: str) -> str:
    """`name` (a dataset, e.g. ``npz:dir/file.npz``) as one file-name component."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_")


class RunDir:
    """A fresh directory holding one run's config, metrics, summary and pictures.

    In a multi-process run (`jaxdd.hosts`) process 0 names a new directory
    for all processes, and only it writes: `writes` is False elsewhere, and
    the writing methods do nothing there.
    """

    def __init__(self, root: str | pathlib.Path, name: str):
        self.path = pathlib.Path(hosts.decide(lambda: str(_fresh_dir(root, name))))
        self.writes = hosts.is_main()

    @classmethod
    def at(cls, path: str | pathlib.Path) -> RunDir:
        """An existing (or new) run directory at exactly `path`, e.g. to resume a run."""
        run = cls.__new__(cls)
        run.path = pathlib.Path(path)
        run.writes = hosts.is_main()
        if run.writes:
            run.path.mkdir(parents=True, exist_ok=True)
        hosts.sync(f"run directory {run.path}")
        return run

    def write_json(self, name: str, value: Any) -> pathlib.Path:
        """Writes `value` (dataclasses, arrays and paths allowed) as strict JSON to `name`.

        The file is replaced in one step: a reader never sees half of it.
        """
        out = self.path / name
        if not self.writes:
            return out
        atomic_write_text(out, _dumps(value, indent=2) + "\n")
        return out

    def json_changes(self, name: str, value: Any) -> dict[str, tuple[Any, Any]]:
        """Where `value` differs from the JSON file `name`: ``{dotted.path: (old, new)}``.

        Both sides are compared as `write_json` would write them; a key one
        side lacks counts as None there.
        """
        old = json.loads((self.path / name).read_text())
        return _changes(old, json.loads(_dumps(value)), "")

    def read_json(self, name: str) -> Any:
        """What `write_json` wrote to `name`, non-finite floats included."""
        return read_json(self.path / name)

    def read_events(self) -> list[dict]:
        """Every event logged so far (also those of earlier, resumed sessions)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [_restored(json.loads(line)) for line in path.read_text().splitlines() if line]

    def log(self, **event: Any) -> None:
        """Appends one event to ``metrics.jsonl`` as one line of strict JSON."""
        if not self.writes:
            return
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(_dumps(event) + "\n")

    def keep_events(self, keep: Callable[[dict], bool]) -> None:
        """Drops from ``metrics.jsonl`` every event `keep` rejects (e.g. to resume a run).

        The kept lines stay as they were, in their order; the file is
        replaced in one step, and only if an event is dropped.
        """
        path = self.path / "metrics.jsonl"
        if not (self.writes and path.exists()):
            return
        lines = [line for line in path.read_text().splitlines() if line]
        kept = [line for line in lines if keep(_restored(json.loads(line)))]
        if len(kept) < len(lines):
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def discard_if_only(self, names: Collection[str]) -> bool:
        """Deletes the directory if it holds nothing but files in `names` and empty folders.

        Returns:
          Whether it was deleted (never by a process that does not write).
        """
        if not self.writes:
            return False
        entries = list(self.path.iterdir())
        if any(p.name not in names if p.is_file() else any(p.iterdir()) for p in entries):
            return False
        shutil.rmtree(self.path)
        return True


def _fresh_dir(root: str | pathlib.Path, name: str) -> pathlib.Path:
    """Creates ``ROOT/STAMP-NAME`` (``-2``, ``-3``, … if taken) and returns it."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = pathlib.Path(root) / f"{stamp}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A Markdown table of `rows` (dicts) restricted to `columns`."""
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def mean_std(accuracies: Sequence[float]) -> str:
    """``"73.80 ± 0.70"`` in percent."""
    acc = 100 * np.asarray(accuracies, dtype=np.float64)
    return f"{acc.mean():.2f} ± {acc.std():.2f}"


# Image grids: each image in one cell, each class on its own line(s) of cells.
_MAX_COLUMNS = 25  # a class with more images continues on further lines
_CELL_IN = 0.9  # side of one cell in inches ...
_MIN_CELL_IN = 0.35  # ... shrunk down to this so that the grid's longer side
_MAX_GRID_IN = 20.0  # stays within this, where it can
_MIN_WIDTH_IN = 5.0  # the narrowest figure (room for a title and the class names)
_NAMES_IN = 1.3  # left margin for the class names
_TITLE_IN = 0.45  # top margin for the title
_MARGIN_IN = 0.15
_TITLE_PT = 11
_NAME_PT = 9
_GLYPH_EM = 0.6  # a generous average glyph width, as a fraction of the font size
_NAME_CHARS = 14
_CAPTION_CHARS = 12
_RED = (0.85, 0.1, 0.1)


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Where a class-per-row image grid puts each image.

    Attributes:
      shown: ``[M]`` indices of the images drawn (every image unless capped per class).
      cells: ``[M, 2]`` int ``(line, column)`` of each drawn image.
      line_classes: ``[L]`` the class of each line of cells; a class with
        more than `columns` images continues on the following lines, and a
        class without images keeps one empty line.
      columns: cells per line.
      cell_in: side of one cell in inches.
    """

    shown: np.ndarray
    cells: np.ndarray
    line_classes: np.ndarray
    columns: int
    cell_in: float


def grid_layout(
    classes: np.ndarray,
    num_classes: int,
    *,
    per_class: int | None = None,
    max_columns: int = _MAX_COLUMNS,
) -> GridLayout:
    """Lays out images class by class, in their order, on lines of at most `max_columns`.

    The largest class's images are spread evenly over as few lines as hold
    them (50 images, 25 columns at most: 2 lines of 25; 30: 2 lines of 15).

    Args:
      classes: ``[N]`` int class (row) of each image, in ``[0, num_classes)``.
      num_classes: how many classes (each gets at least one line).
      per_class: draw only the first `per_class` images of each class; None: all.
      max_columns: the most cells on one line.
    """
    classes = np.asarray(classes)
    if classes.size and not 0 <= classes.min() <= classes.max() < num_classes:
        raise ValueError(
            f"image classes must lie in [0, {num_classes}), got {classes.min()}..{classes.max()}"
        )
    members = [np.flatnonzero(classes == c)[:per_class] for c in range(num_classes)]
    most = max(1, *map(len, members))
    columns = -(-most // -(-most // max_columns))
    cells, line_classes = [], []
    for c, idx in enumerate(members):
        j = np.arange(len(idx))
        cells.append(np.stack([len(line_classes) + j // columns, j % columns], axis=1))
        line_classes += [c] * max(1, -(-len(idx) // columns))
    longest = max(columns, len(line_classes))
    return GridLayout(
        shown=np.concatenate(members),
        cells=np.concatenate(cells),
        line_classes=np.asarray(line_classes),
        columns=columns,
        cell_in=float(np.clip(_MAX_GRID_IN / longest, _MIN_CELL_IN, _CELL_IN)),
    )


def _border(height: int) -> int:
    """Pixels of frame, and of gap around it, for images `height` pixels high."""
    return max(1, round(height / 14))


def compose_grid(
    images: np.ndarray, layout: GridLayout, framed: np.ndarray, *, caption_px: int = 0
) -> np.ndarray:
    """The grid as one RGB picture.

    Each cell is ``H + 4b`` by ``W + 4b`` pixels (``b = _border(H)``): the
    image inside a ``b``-pixel frame (red if `framed`, white otherwise)
    inside a ``b``-pixel white gap; each line of cells has `caption_px`
    white pixels below for captions.

    Args:
      images: ``[N, H, W, C]`` float in [0, 1] (clipped) or uint8, C 1 or 3;
        only the drawn ones are converted.
      layout: where each drawn image goes.
      framed: ``[N]`` bool, the images framed in red.
      caption_px: caption pixels under each line.

    Returns:
      ``[L * (H + 4b + caption_px), columns * (W + 4b), 3]`` float.
    """
    _, h, w, _ = images.shape
    b = _border(h)
    line_h, cell_w = h + 4 * b + caption_px, w + 4 * b
    mosaic = np.ones((len(layout.line_classes) * line_h, layout.columns * cell_w, 3))
    for i, (line, col) in zip(layout.shown, layout.cells, strict=True):
        y, x = line * line_h + b, col * cell_w + b
        if framed[i]:
            mosaic[y : y + h + 2 * b, x : x + w + 2 * b] = _RED
        mosaic[y + b : y + b + h, x + b : x + b + w] = _unit_rgb(images[i])
    return mosaic


def _unit_rgb(images: np.ndarray) -> np.ndarray:
    """``[..., C]`` uint8, or float clipped to [0, 1] → ``[..., 3]`` float in [0, 1]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    images = np.clip(images, 0.0, 1.0)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _differs(other: np.ndarray | None, classes: np.ndarray) -> np.ndarray:
    """``[N]`` bool: where `other` labels exist and are not the image's class."""
    if other is None:
        return np.zeros(len(classes), dtype=bool)
    return np.asarray(other) != classes


def _text_in(text: str, points: float) -> float:
    """A generous estimate of the width of `text` at `points` in inches."""
    return len(text) * points * _GLYPH_EM / 72


def draw_image_grid(
    images: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str],
    *,
    clean_labels: np.ndarray | None = None,
    learned_labels: np.ndarray | None = None,
    per_class: int | None = 10,
    title: str = "",
) -> Figure:
    """A class-per-row grid of images as a matplotlib figure (see `save_image_grid`).

    Returns:
      a `matplotlib.figure.Figure` with an Agg canvas; its one axes shows the grid.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = np.asarray(images)
    classes = np.asarray(classes)
    layout = grid_layout(classes, len(class_names), per_class=per_class)
    relabelled = _differs(learned_labels, classes)
    h, w = images.shape[1:3]
    cell_px = w + 4 * _border(h)
    caption_px = round(0.3 * cell_px) if relabelled[layout.shown].any() else 0
    framed = _differs(clean_labels, classes) | relabelled
    mosaic = compose_grid(images, layout, framed, caption_px=caption_px)
    px_in = layout.cell_in / cell_px
    grid_h, grid_w = mosaic.shape[0] * px_in, mosaic.shape[1] * px_in
    needed = _NAMES_IN + grid_w + _MARGIN_IN
    fig_w = max(_MIN_WIDTH_IN, _text_in(title, _TITLE_PT) + 2 * _MARGIN_IN, needed)
    fig_h = _TITLE_IN + grid_h + _MARGIN_IN
    fig = Figure(figsize=(fig_w, fig_h), dpi=max(80, int(np.ceil(1 / px_in))))
    FigureCanvasAgg(fig)
    left = (fig_w - needed) / 2 + _NAMES_IN
    ax = fig.add_axes((left / fig_w, _MARGIN_IN / fig_h, grid_w / fig_w, grid_h / fig_h))
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    line_px = mosaic.shape[0] / len(layout.line_classes)
    _name_lines(ax, layout, class_names, line_px, line_px - caption_px)
    if caption_px:
        names = [str(class_names[c])[:_CAPTION_CHARS] for c in learned_labels]
        points = float(np.clip(0.5 * caption_px * px_in * 72, 4, 7))
        _captions(ax, layout, names, relabelled, (line_px, cell_px, caption_px), points)
    fig.suptitle(title, y=1 - _MARGIN_IN / fig_h, va="top", fontsize=_TITLE_PT)
    return fig


def _name_lines(
    ax: Axes, layout: GridLayout, class_names: Sequence[str], line_px: float, cell_px: float
) -> None:
    """Class names left of their lines; thin rules between classes when they wrap.

    Args:
      ax: the axes showing the `compose_grid` picture.
      layout: its lines.
      class_names: names of the classes.
      line_px: height of one line (cells and captions) in picture pixels.
      cell_px: height of one cell in picture pixels.
    """
    lines = layout.line_classes
    first = np.flatnonzero(np.diff(lines, prepend=-1))
    last = np.append(first[1:], len(lines))
    ax.set_xticks([])
    ax.set_yticks(
        (first + last - 1) * line_px / 2 + cell_px / 2 - 0.5,
        [str(class_names[c])[:_NAME_CHARS] for c in lines[first]],
        fontsize=_NAME_PT,
    )
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if len(lines) > len(first):
        for y in first[1:] * line_px - 0.5:
            ax.axhline(y, color="0.6", linewidth=0.6)


def _captions(
    ax: Axes,
    layout: GridLayout,
    names: Sequence[str],
    captioned: np.ndarray,
    pixels: tuple[float, int, int],
    points: float,
) -> None:
    """Writes ``names[i]`` in red under each drawn image i that is `captioned`.

    Args:
      ax: the axes showing the `compose_grid` picture.
      layout: where each drawn image is.
      names: ``[N]`` one caption per image.
      captioned: ``[N]`` bool, the images to caption.
      pixels: ``(line height, cell width, caption height)`` in picture pixels.
      points: font size.
    """
    line_px, cell_px, caption_px = pixels
    for i, (line, col) in zip(layout.shown, layout.cells, strict=True):
        if captioned[i]:
            x, y = (col + 0.5) * cell_px - 0.5, (line + 1) * line_px - caption_px / 2 - 0.5
            ax.text(x, y, names[i], ha="center", va="center", fontsize=points, color=_RED)


def save_image_grid(
    path: str | pathlib.Path,
    images: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str],
    *,
    clean_labels: np.ndarray | None = None,
    learned_labels: np.ndarray | None = None,
    per_class: int | None = 10,
    title: str = "",
) -> pathlib.Path:
    """Saves a class-per-row grid of images as PNG.

    Each class has its own line of cells, continued on further lines when
    it has more than `_MAX_COLUMNS` images; cells shrink for large grids,
    and the figure is wide enough for the title and class names at any size.

    Args:
      path: output file.
      images: ``[N, H, W, C]`` float in [0, 1] (clipped) or uint8, C 1 or 3.
      classes: ``[N]`` int, the class (row) of each image, e.g. the label
        it was trained with, or ``i // ipc`` for a class-major distilled set.
      class_names: names of the classes.
      clean_labels: ``[N]`` true labels; mislabelled images get a red frame.
      learned_labels: ``[N]`` e.g. the argmax of learned soft labels; images
        whose learned label is not their class get a red frame and, below,
        the name of the learned label.
      per_class: draw only the first `per_class` images of each class (a
        sample of a large training set); None draws every image.
      title: figure title.
    """
    fig = draw_image_grid(
        images,
        classes,
        class_names,
        clean_labels=clean_labels,
        learned_labels=learned_labels,
        per_class=per_class,
        title=title,
    )
    fig.savefig(path)
    return pathlib.Path(path)


def save_curves(
    path: str | pathlib.Path,
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    xlabel: str = "",
) -> pathlib.Path:
    """One small panel per named series (e.g. matching loss, student lr) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items(), strict=True):
        ax.plot(x, values)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return pathlib.Path(path)
