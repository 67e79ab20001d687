"""Figures a user looks at after training: the paper's Fig. 2/7 and Fig. 3/8 analogues."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np

from stardiff.persist import save_figure

__all__ = [
    "conditional_figures",
    "density_panel",
    "plain_text",
    "pyplot",
    "training_figures",
    "unconditional_figure",
    "value_range",
]


def plain_text(func):
    """Draw with matplotlib's own text engine, even if an import (gaiaxpy does) set usetex."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.usetex": False}):
            return func(*args, **kwargs)

    return wrapper


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def value_range(*arrays, lo=0.5, hi=99.5):
    """The (lo, hi) percentiles of the finite values of all ``arrays`` together."""
    a = np.concatenate([np.ravel(x)[np.isfinite(np.ravel(x))] for x in arrays])
    return tuple(np.percentile(a, [lo, hi])) if a.size else (0.0, 1.0)


def density_panel(ax, data, samples, title, bins=50):
    """One panel: a histogram of the data and one of the model's samples, on one range."""
    rng = value_range(data, samples)
    ax.hist(data, bins=bins, range=rng, density=True, color="tab:orange", alpha=0.5, label="data")
    ax.hist(
        samples,
        bins=bins,
        range=rng,
        density=True,
        histtype="step",
        color="tab:blue",
        lw=1.8,
        label="model",
    )
    ax.set_title(title, fontsize=9)
    ax.set_yticks([])


@plain_text
def unconditional_figure(model, data: np.ndarray, path: str | Path, n: int = 4000, seed=0):
    """Unconditional 1-D density of every requestable column vs the data (Fig. 2/7).

    ``data`` is the (N, V) physical table (NaN = missing) the model is compared with.
    """
    plt = pyplot()
    cols = model.requestable
    samples = model.sample({}, cols, n, seed=seed)
    ncol = min(3, len(cols))
    nrow = int(np.ceil(len(cols) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.6 * nrow), squeeze=False)
    for ax, c in zip(axes.flat, cols, strict=False):
        x = data[:, model.columns.index(c)]
        density_panel(ax, x[np.isfinite(x)], samples[c], c)
    for ax in axes.flat[len(cols) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Unconditional densities: model vs data", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


@plain_text
def conditional_figures(
    model,
    data: np.ndarray,
    panels,
    out_dir: str | Path,
    *,
    n: int = 4000,
    rows_per_panel: int = 256,
    seed: int = 0,
) -> list[Path]:
    """Conditional densities for recipe ``[[evaluate.conditional]]`` panels (Fig. 3/8).

    For every bin (or combination of bins) of the given columns, the model is conditioned
    on the given values of up to ``rows_per_panel`` data rows in the bin, and its pooled
    samples are compared with the requested column of all data rows in the bin.
    """
    plt = pyplot()
    rng = np.random.default_rng(seed)
    paths = []
    for k, panel in enumerate(panels):
        given_cols = list(panel.given)
        gidx = [model.columns.index(c) for c in given_cols]
        ridx = model.columns.index(panel.request)
        combos = list(itertools.product(*(panel.given[c] for c in given_cols)))
        fig, axes = plt.subplots(1, len(combos), figsize=(3.4 * len(combos), 2.8), squeeze=False)
        for ax, combo in zip(axes.flat, combos, strict=True):
            sel = np.isfinite(data[:, ridx])
            for j, (lo, hi) in zip(gidx, combo, strict=True):
                sel &= (data[:, j] >= lo) & (data[:, j] < hi)
            rows = np.flatnonzero(sel)
            title = ", ".join(
                f"{c} in [{lo:g}, {hi:g})" for c, (lo, hi) in zip(given_cols, combo, strict=True)
            )
            if rows.size == 0:
                ax.set_title(f"{title}\n(no data)", fontsize=8)
                continue
            pick = rng.choice(rows, size=min(rows_per_panel, rows.size), replace=False)
            given = {c: data[pick, j] for c, j in zip(given_cols, gidx, strict=True)}
            per_row = max(1, n // pick.size)
            s = model.sample(given, panel.request, per_row, seed=seed)
            density_panel(
                ax, data[rows, ridx], s.ravel(), f"{panel.request} | {title}\n({rows.size} rows)"
            )
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / f"conditional_{k}_{panel.request}.png"
        save_figure(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


@plain_text
def training_figures(model, prep, out_dir: str | Path) -> list[Path]:
    """The figures ``stardiff fit`` writes next to the model, from its training rows."""
    from stardiff.tables import read_table

    r = prep.recipe
    table = read_table(r.table_path(), list(model.columns), r.data.split_column)
    data = table.values[prep.train_rows]
    ev = r.evaluate
    paths = [unconditional_figure(model, data, Path(out_dir) / "unconditional.png", ev.samples)]
    paths += conditional_figures(
        model, data, ev.conditional, out_dir, n=ev.samples, rows_per_panel=ev.rows_per_panel
    )
    return paths
