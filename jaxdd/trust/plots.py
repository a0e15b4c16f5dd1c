"""Pictures of a trust split: loss histograms with their mixtures, and rounds.

None of the reference implementations report these; jaxdd can, because the
noise is injected and the clean labels are known.
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np

from jaxdd.trust.dual import TrustSplit
from jaxdd.trust.gmm import fit_gmm
from jaxdd.trust.partition import normalise_per_class


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_loss_histograms(
    path: str | pathlib.Path,
    split: TrustSplit,
    clean: np.ndarray,
    class_names,
    *,
    signal: str = "partition signal",
    iterations: int = 50,
) -> pathlib.Path:
    """Per-class histograms of the last partition's signal with its fitted mixture densities.

    The signal (`TrustSplit.losses`, whichever `TADConfig.signal` made it) is
    normalised per class of the labels the partition saw, as the partition
    does, and the 2-component mixture is refitted with the same EM
    (`iterations` steps), so the curves are those the trust scores came from.
    Bars split the class's members into clean and mislabelled (`clean`, for
    the picture only).

    Args:
      path: the PNG to write.
      split: the `TrustSplit`.
      clean: ``[N]`` true labels.
      class_names: C names.
      signal: the signal's name, for the title.
      iterations: EM steps (`TADConfig.gmm_iterations`).
    """
    plt = _pyplot()
    c = len(class_names)
    labels = split.loss_labels
    norm = np.asarray(normalise_per_class(jnp.asarray(split.losses), jnp.asarray(labels), c))
    cols = min(5, c)
    rows = -(-c // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), squeeze=False)
    grid = np.linspace(0, 1, 200)
    for k, ax in enumerate(axes.ravel()):
        if k >= c:
            ax.axis("off")
            continue
        mine = labels == k
        right = mine & (labels == clean)
        ax.hist(
            [norm[right], norm[mine & ~right]],
            bins=30,
            range=(0, 1),
            stacked=True,
            density=True,
            color=["tab:blue", "tab:red"],
            label=["clean", "mislabelled"],
        )
        values = jnp.asarray(norm[mine])[None]
        g = fit_gmm(values, jnp.ones((1, int(mine.sum())), bool), iterations=iterations)
        for j in range(2):
            w, m, v = (float(a[0, j]) for a in (g.weights, g.means, g.variances))
            ax.plot(grid, w * np.exp(-((grid - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v), "k")
        ax.set_title(str(class_names[k])[:14], fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"per-class normalised {signal}, fitted 2-component mixture densities")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return pathlib.Path(path)


def save_round_curves(path: str | pathlib.Path, rounds: list[dict]) -> pathlib.Path:
    """Trusted fraction, label precision and clean recall over the rounds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ks = [r["round"] for r in rounds]
    for key in ("trusted_fraction", "precision", "clean_recall"):
        if rounds and rounds[0].get(key) is not None:
            ax.plot(ks, [r[key] for r in rounds], marker="o", label=key.replace("_", " "))
    ax.set_xlabel("round")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return pathlib.Path(path)
