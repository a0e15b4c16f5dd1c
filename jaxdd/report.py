"""Run directories, metrics files, result tables and image grids.

Every command writes one run directory::

    runs/<time>-<name>/config.json     what was asked (the full config)
                       metrics.jsonl   one JSON object per logged event
                       summary.json    the final numbers
                       *.png           pictures (image grids, curves)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    return value


class RunDir:
    """A fresh directory holding one run's config, metrics, summary and pictures."""

    def __init__(self, root: str | pathlib.Path, name: str):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = pathlib.Path(root) / f"{stamp}-{name}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        path.mkdir(parents=True)
        self.path = path

    @classmethod
    def at(cls, path: str | pathlib.Path) -> RunDir:
        """An existing (or new) run directory at exactly `path`, e.g. to resume a run."""
        run = cls.__new__(cls)
        run.path = pathlib.Path(path)
        run.path.mkdir(parents=True, exist_ok=True)
        return run

    def write_json(self, name: str, value: Any) -> pathlib.Path:
        out = self.path / name
        out.write_text(json.dumps(_jsonable(value), indent=2) + "\n")
        return out

    def read_events(self) -> list[dict]:
        """Every event logged so far (also those of earlier, resumed sessions)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def log(self, **event: Any) -> None:
        """Appends one event to ``metrics.jsonl``."""
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(_jsonable(event)) + "\n")


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


def save_image_grid(
    path: str | pathlib.Path,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    clean_labels: np.ndarray | None = None,
    per_class: int = 10,
    title: str = "",
) -> pathlib.Path:
    """Saves a class-per-row grid of images as PNG.

    Args:
      path: output file.
      images: ``[N, H, W, C]`` float in [0, 1] (clipped) or uint8.
      labels: ``[N]`` int, the labels the images were trained with (rows).
      class_names: names of the C classes.
      clean_labels: ``[N]`` true labels; mislabelled images get a red frame.
      per_class: columns (images shown per class).
      title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    images = np.clip(images, 0.0, 1.0)
    num_classes = len(class_names)
    fig, axes = plt.subplots(
        num_classes, per_class, figsize=(per_class * 0.9, num_classes * 0.9 + 0.4), squeeze=False
    )
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)[:per_class]
        for j, ax in enumerate(axes[c]):
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j >= len(members):
                continue
            i = members[j]
            img = images[i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            if clean_labels is not None and clean_labels[i] != labels[i]:
                for side in ax.spines.values():
                    side.set_visible(True)
                    side.set_color("red")
                    side.set_linewidth(2)
        axes[c, 0].set_ylabel(str(class_names[c])[:12], rotation=0, ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
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
