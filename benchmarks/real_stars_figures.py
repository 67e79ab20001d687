"""Figures of ``benchmarks.real_stars``: medians against the truth, and the Kiel diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_figures"]

METHODS = ("model", "flow", "knn")
UNITS = {"teff": "K", "logg": "dex", "fe_h": "dex", "alpha_m": "dex"}


def write_figures(folder: Path, test, cols, fams, results, labels) -> list[str]:
    """Write ``real_stars_medians.png`` and ``real_stars_kiel.png`` into ``folder``."""
    from stardiff.figures import plain_text

    folder.mkdir(parents=True, exist_ok=True)
    return plain_text(_draw)(folder, test, cols, fams, results, labels)


def _draw(folder, test, cols, fams, results, labels) -> list[str]:
    from stardiff.figures import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(len(METHODS), len(labels), figsize=(3.2 * len(labels), 9.0))
    for i, method in enumerate(METHODS):
        for k, c in enumerate(labels):
            ax = axes[i, k]
            fam = f"{c} | non-labels"
            r = results[fam].get(method)
            rows, req, _ = fams[fam]
            truth = test[rows, req]
            if r is None:
                ax.set_axis_off()
                continue
            med = np.asarray(r["medians"])
            lo, hi = np.nanpercentile(truth, [0.5, 99.5])
            ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
            ax.scatter(truth, med, s=3, alpha=0.5)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_title(
                f"{method}: {c}  σ {r['scatter']:.3g} {UNITS[c]}, bias {r['bias']:+.2g}", fontsize=8
            )
            if i == len(METHODS) - 1:
                ax.set_xlabel(f"APOGEE {c}")
            if k == 0:
                ax.set_ylabel("median of the draws")
    fig.tight_layout()
    medians = folder / "real_stars_medians.png"
    fig.savefig(medians, dpi=90)
    plt.close(fig)

    rows = fams["teff | non-labels"][0]
    same = np.array_equal(rows, fams["logg | non-labels"][0])
    fig, axes = plt.subplots(1, len(METHODS) + 1, figsize=(4.0 * (len(METHODS) + 1), 4.0))
    feh = test[rows, cols.index("fe_h")]
    panels = [("APOGEE", test[rows, cols.index("teff")], test[rows, cols.index("logg")])]
    for method in METHODS:
        t = results["teff | non-labels"].get(method)
        g = results["logg | non-labels"].get(method)
        if t and g and same:
            panels.append((method, np.asarray(t["medians"]), np.asarray(g["medians"])))
    for ax, (name, teff, logg) in zip(axes, panels, strict=False):
        sc = ax.scatter(teff, logg, c=feh, s=3, cmap="viridis", vmin=-1.5, vmax=0.4)
        ax.set_xlim(7000, 3500)
        ax.set_ylim(5.2, 0.0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("teff [K]")
    axes[0].set_ylabel("logg [dex]")
    fig.colorbar(sc, ax=axes[-1], label="APOGEE [Fe/H]")
    kiel = folder / "real_stars_kiel.png"
    fig.savefig(kiel, dpi=90)
    plt.close(fig)
    return [str(medians), str(kiel)]
