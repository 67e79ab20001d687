"""Figures of ``stardiff evaluate``: the paper's Figs. 2-8 drawn from evaluation results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stardiff.figures import conditional_figures, density_panel, plain_text, pyplot, value_range
from stardiff.persist import save_figure

__all__ = [
    "write_figures",
    "unconditional_panels",
    "subset_figure",
    "pit_figure",
    "joint_figure",
]

DPI = 90
MAX_PIT_PANELS = 36


@plain_text
def write_figures(
    model, data, out: Path, ev, *, uncond, pits, task_pits, subsets, joint, seed
) -> list[str]:
    """Write every figure of an evaluation into ``out``; return the file names."""
    paths = [unconditional_panels(data, uncond, out / "unconditional.png")]
    paths += conditional_figures(
        model,
        data.values,
        ev.conditional,
        out,
        n=ev.samples,
        rows_per_panel=ev.rows_per_panel,
        seed=seed,
    )
    if subsets:
        paths.append(subset_figure(subsets, out / "subsets.png"))
    if pits or task_pits:
        paths.append(pit_figure(pits, task_pits, out / "pit.png"))
    if joint:
        paths.append(joint_figure(data, joint, out / "joint.png"))
    return [Path(p).name for p in paths]


def _grid(n: int, ncol: int, w: float, h: float):
    plt = pyplot()
    ncol = max(1, min(ncol, n))
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, h * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return plt, fig, axes


def _save(plt, fig, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)
    plt.close(fig)
    return path


def unconditional_panels(data, samples: dict, path: Path) -> Path:
    """Fig. 2/7: each column's unconditional model density vs the evaluation rows."""
    plt, fig, axes = _grid(len(samples), 3, 3.4, 2.5)
    for ax, (c, s) in zip(axes.flat, samples.items(), strict=False):
        x = data.values[:, data.columns.index(c)]
        density_panel(ax, x[np.isfinite(x)], s, c)
    axes.flat[0].legend(fontsize=8)
    return _save(plt, fig, path, f"Unconditional densities: model vs {data.split} rows")


def subset_figure(subsets: dict, path: Path) -> Path:
    """Fig. 4: median prediction vs truth, coloured by the robust std, one panel per subset."""
    plt, fig, axes = _grid(len(subsets), 3, 3.9, 3.5)
    by_request: dict[str, list] = {}
    for s in subsets.values():
        if "std" in s:
            by_request.setdefault(s["metrics"]["request"], []).append(s["std"])
    vmax = {r: float(np.percentile(np.concatenate(v), 95)) for r, v in by_request.items()}
    for ax, (name, s) in zip(axes.flat, subsets.items(), strict=False):
        m = s["metrics"]
        ax.set_title(f"{name} ({m.get('n_given', 0)} inputs)", fontsize=9)
        if "std" not in s:
            ax.text(0.5, 0.5, "no rows", ha="center", transform=ax.transAxes)
            continue
        lo, hi = value_range(s["truth"], s["median"], lo=0.5, hi=99.5)
        sc = ax.scatter(
            s["truth"], s["median"], c=s["std"], s=5, cmap="viridis", vmin=0,
            vmax=vmax[m["request"]] or None, rasterized=True,
        )  # fmt: skip
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xlim=(lo, hi), ylim=(lo, hi))
        ax.set_xlabel(f"true {m['request']}", fontsize=8)
        ax.set_ylabel(f"model median {m['request']}", fontsize=8)
        ax.text(
            0.03, 0.97, f"bias {m['bias']:.3g}\nscatter {m['scatter']:.3g}",
            transform=ax.transAxes, va="top", fontsize=7,
        )  # fmt: skip
        fig.colorbar(sc, ax=ax, label="robust std", shrink=0.85)
    return _save(plt, fig, path, "Median prediction vs truth for input subsets")


def _pit_panel(ax, u: np.ndarray, title: str, bins: int = 20) -> None:
    from stardiff.metrics import ks_uniform

    ax.hist(u, bins=bins, range=(0, 1), density=True, color="tab:blue", alpha=0.7)
    ax.axhline(1.0, color="tab:red", ls=":", lw=1.5)
    ax.set_xlim(0, 1)
    ax.set_title(f"{title}\nKS {ks_uniform(u):.3f}, n={u.size}", fontsize=8)
    ax.set_yticks([])


def pit_figure(pits: dict, task_pits: dict, path: Path) -> Path:
    """Fig. 5: per-object PIT histograms vs uniform, pooled and per column.

    Pooled panels first (all columns given the others; the random tasks; on synthetic
    tables the exact CDF at the model's draws), then one panel per column (the
    ``MAX_PIT_PANELS`` farthest from uniform when there are more).
    """
    from stardiff.metrics import ks_uniform

    pooled = {}
    if pits:
        pooled["all columns (given the others)"] = np.concatenate(list(pits.values()))
    pooled.update(task_pits)
    cols = sorted(pits, key=lambda c: -ks_uniform(pits[c]))[:MAX_PIT_PANELS]
    cols = [c for c in pits if c in cols]  # keep the table order
    plt, fig, axes = _grid(len(pooled) + len(cols), 4, 2.8, 2.2)
    panels = list(pooled.items()) + [(c, pits[c]) for c in cols]
    for ax, (title, u) in zip(axes.flat, panels, strict=False):
        _pit_panel(ax, np.asarray(u), title)
    extra = "" if len(cols) == len(pits) else f" ({len(cols)} least uniform columns shown)"
    return _save(plt, fig, path, f"PIT of the truth under its own predicted density{extra}")


def joint_figure(data, joint: dict, path: Path, bins: int = 60) -> Path:
    """Fig. 6: 2-D density of the last two chained columns, model vs data."""
    from matplotlib.colors import LogNorm

    xc, yc = list(joint)[-2:]
    xi, yi = data.columns.index(xc), data.columns.index(yc)
    d = data.values[:, [xi, yi]]
    d = d[np.isfinite(d).all(axis=1)]
    xr = value_range(d[:, 0], joint[xc])
    yr = value_range(d[:, 1], joint[yc])
    plt, fig, axes = _grid(2, 2, 4.0, 3.6)
    chain = " → ".join(joint)
    for ax, (x, y), title in zip(
        axes.flat,
        [(joint[xc], joint[yc]), (d[:, 0], d[:, 1])],
        [f"model (chained: {chain})", f"data ({len(d)} rows)"],
        strict=True,
    ):
        ax.hist2d(x, y, bins=bins, range=[xr, yr], cmap="Blues", norm=LogNorm(), density=True)
        ax.set(xlabel=xc, ylabel=yc, title=title)
        ax.title.set_fontsize(9)
    return _save(plt, fig, path, "Joint density from chained sampling vs data")
