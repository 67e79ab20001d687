"""The crossmatch tutorial (docs/crossmatch.md), run end to end against the local test archive.

    python docs/tutorial_crossmatch.py [--work runs/tutorial]

Builds a small synthetic sky served by :class:`stardata.testing.MirrorServer` (Gaia DR3
``gaia_source`` with proper motions, the 2MASS best-neighbour tables, XP_CONTINUOUS products
and a tiny Combined19 map), writes ``my_stars.csv`` (RA/Dec at J2000.0: some stars with ~1″/yr
proper motions, some with no counterpart), trains a small model of synthetic stars, then runs
the tutorial's steps: ``crossmatch``, ``stardiff predict`` (the real command, in a subprocess)
and the two figures ``docs/figures/crossmatch_kiel.png`` and ``crossmatch_star.png``.
Everything printed below a ``$`` or ``>>>`` line is what the docs show. About 2 minutes on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
N_SKY = 400  # stars in the archive
LABELS = ["teff", "logg", "m_h"]


def _sky(seed: int = 0):
    """Archive tables whose photometry follows synthetic_stars labels (so the model applies)."""
    from stardata.testing import synthetic_gaia_source, synthetic_xp
    from stardiff.datasets.synthetic import synthetic_stars

    rng = np.random.default_rng(seed)
    ids = 4_295_806_720 + np.arange(N_SKY, dtype=np.int64) * 2_097_152 * 7
    stars = synthetic_stars(N_SKY, seed=seed + 1, n_spectrum=0, missing=0.0)
    g = synthetic_gaia_source(ids, seed=seed)
    gmag = rng.uniform(9.0, 16.5, N_SKY)
    pmra, pmdec = rng.normal(0, 8, N_SKY), rng.normal(-3, 8, N_SKY)
    pmra[:6], pmdec[:6] = [1200, -900, 700, 400, -1500, 300], [-600, 1100, -900, 950, 200, -1300]
    gaia = g.with_columns(
        pl.Series("ra", 210.0 + rng.uniform(0, 3, N_SKY)),
        pl.Series("dec", -5.0 + rng.uniform(0, 3, N_SKY)),
        pl.Series("l", rng.uniform(320, 330, N_SKY)),
        pl.Series("b", rng.uniform(50, 55, N_SKY)),
        pl.Series("pmra", pmra),
        pl.Series("pmdec", pmdec),
        pl.Series("radial_velocity", np.full(N_SKY, np.nan)),
        pl.Series("ref_epoch", np.full(N_SKY, 2016.0)),
        pl.Series("parallax", rng.uniform(0.8, 6.0, N_SKY)),
        pl.Series("parallax_error", rng.uniform(0.01, 0.05, N_SKY)),
        pl.Series("ruwe", rng.uniform(0.9, 1.2, N_SKY).astype(np.float32)),
        pl.Series("phot_g_mean_mag", gmag.astype(np.float32)),
        pl.Series("phot_bp_mean_mag", (gmag + 0.4 * stars["bprp"]).cast(pl.Float32)),
        pl.Series("phot_rp_mean_mag", (gmag - 0.6 * stars["bprp"]).cast(pl.Float32)),
    )
    h = rng.uniform(7.0, 13.0, N_SKY)
    j = h + stars["jh"].to_numpy()
    names = [f"{14000000 + i}-{500000 + i}" for i in range(N_SKY)]
    tmass = {
        "gaiadr3.tmass_psc_xsc_best_neighbour": pl.DataFrame(
            {"source_id": ids, "original_ext_source_id": names}
        ),
        "gaiadr1.tmass_original_valid": pl.DataFrame(
            {
                "designation": names,
                "j_m": j.astype(np.float32),
                "j_msigcom": np.full(N_SKY, 0.02, np.float32),
                "h_m": h.astype(np.float32),
                "h_msigcom": np.full(N_SKY, 0.02, np.float32),
                "ks_m": (j - stars["jk"].to_numpy()).astype(np.float32),
                "ks_msigcom": np.full(N_SKY, 0.02, np.float32),
                "ph_qual": ["AAA"] * N_SKY,
            }
        ),
    }
    tables = {"gaiadr3.gaia_source": gaia, **tmass}
    return tables, synthetic_xp(ids[gmag < 15], seed=seed), stars


def _catalogue(gaia: pl.DataFrame, path: Path, seed: int = 2) -> None:
    """my_stars.csv: 40 stars at J2000.0 (the six fast movers among them) and 4 empty positions."""
    rng = np.random.default_rng(seed)
    pick = np.concatenate([np.arange(6), rng.choice(np.arange(6, N_SKY), 34, replace=False)])
    rng.shuffle(pick)
    dt = 2000.0 - 2016.0
    sub = gaia[pick]
    dec = sub["dec"].to_numpy() + sub["pmdec"].to_numpy() * dt / 3.6e6
    ra = sub["ra"].to_numpy() + sub["pmra"].to_numpy() * dt / 3.6e6 / np.cos(np.radians(dec))
    rows = pl.DataFrame(
        {
            "name": [f"S{i:03d}" for i in range(len(pick))],
            "ra": np.round(ra + rng.normal(0, 0.15, ra.size) / 3600, 7),
            "dec": np.round(dec + rng.normal(0, 0.15, dec.size) / 3600, 7),
        }
    )
    empty = pl.DataFrame(
        {
            "name": [f"X{i}" for i in range(4)],
            "ra": [211.2, 212.7, 210.4, 95.0],
            "dec": [-3.1, -4.6, -2.2, 10.0],
        }
    )
    pl.concat([rows, empty]).write_csv(path)


def _model(work: Path):
    """A small model of synthetic stars: colours and labels (about a minute on a CPU)."""
    from stardiff.datasets.synthetic import synthetic_stars
    from stardiff.recipe import recipe_from_dict
    from stardiff.train import fit

    table = synthetic_stars(6000, seed=0, n_spectrum=0).select("bprp", "jh", "jk", *LABELS)
    path = work / "synthetic_stars.parquet"
    table.write_parquet(path)
    recipe = recipe_from_dict(
        {
            "data": {"table": str(path), "requestable": LABELS},
            "model": {"dim": 32, "n_heads": 4, "ff_dim": 128, "head_width": 64, "steps": 100,
                      "dropout": 0.0},
            "train": {"epochs": 40, "batch_size": 256, "lr": 3e-3, "cycle_epochs": 40,
                      "context": 5, "noise_draws": 8, "out": str(work / "model"),
                      "checkpoint_every": 40},
        },
        name="tutorial",
    )  # fmt: skip
    return fit(recipe, progress=False, figures=False)


def _show(command: str) -> None:
    print(f"\n$ {command}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/tutorial")
    a = p.parse_args(argv)
    import stardata
    from stardata.crossmatch import crossmatch
    from stardata.testing import MirrorServer, write_tiny_combined19

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    write_tiny_combined19(work / "dust")
    tables, xp, _ = _sky()
    _catalogue(tables["gaiadr3.gaia_source"], work / "my_stars.csv")
    model = _model(work)
    with MirrorServer(tables=tables, xp=xp) as archive:
        sources = stardata.Sources(
            gaia_tap_url=archive.tap_url,
            gaia_datalink_url=archive.datalink_url,
            dust_dir=str(work / "dust"),
        )
        print(">>> out = crossmatch('my_stars.csv', ra='ra', dec='dec', epoch=2000.0, out='xm')")
        out = crossmatch(
            work / "my_stars.csv", ra="ra", dec="dec", epoch=2000.0, radius=1.0,
            out=work / "xm", cache_dir=work / "cache", sources=sources, progress=False,
        )  # fmt: skip
    xm = pl.read_parquet(out / "crossmatch.parquet")
    print(">>> xm.select(...).head(8)")
    with pl.Config(tbl_rows=8, tbl_cols=10, float_precision=3):
        print(
            xm.select(
                "name", "gaia_source_id", "xm_separation_arcsec", "xm_n_candidates", "bprp",
                "jh", "logebv", "has_xp", "xp_good",
            ).head(8)
        )  # fmt: skip
    import json

    counts = json.loads((out / "manifest.json").read_text())["row_counts"]
    print(">>> manifest['row_counts']\n" + json.dumps(counts))
    pred = work / "predictions.parquet"
    cmd = [
        "stardiff", "predict", str(model.folder), str(out / "crossmatch.parquet"),
        "--request", *LABELS, "-n", "200", "--keep", "name", "--out", str(pred), "--quiet",
    ]  # fmt: skip
    _show(" ".join(cmd))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "stardiff", *cmd[1:]], check=True, env=env)
    p_ = pl.read_parquet(pred)
    print(">>> pl.read_parquet('predictions.parquet').head(5)")
    with pl.Config(tbl_rows=5, tbl_cols=8, float_precision=3):
        print(p_.select("name", "no_input", "teff_median", "teff_std", "logg_median",
                        "logg_std", "m_h_median").head(5))  # fmt: skip
    _figures(model, xm, p_)


def _figures(model, xm: pl.DataFrame, pred: pl.DataFrame) -> None:
    from stardiff.figures import plain_text

    FIGURES.mkdir(parents=True, exist_ok=True)
    plain_text(_kiel)(xm, pred, FIGURES / "crossmatch_kiel.png")
    plain_text(_one_star)(model, xm, pred, FIGURES / "crossmatch_star.png")
    print("wrote docs/figures/crossmatch_kiel.png, docs/figures/crossmatch_star.png")


def _kiel(xm, pred, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = ~pred["no_input"].to_numpy()
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    t, g = pred["teff_median"].to_numpy(), pred["logg_median"].to_numpy()
    ax.errorbar(t[ok], g[ok], xerr=pred["teff_std"].to_numpy()[ok],
                yerr=pred["logg_std"].to_numpy()[ok], fmt="none", ecolor="0.7", lw=0.8,
                zorder=1)  # fmt: skip
    sc = ax.scatter(t[ok], g[ok], c=pred["m_h_median"].to_numpy()[ok], cmap="viridis", s=18,
                    zorder=2)  # fmt: skip
    ax.scatter(t[~ok], g[~ok], marker="x", color="C3", label="no counterpart (unconditional)")
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_xlabel("Teff median [K]")
    ax.set_ylabel("log g median")
    fig.colorbar(sc, label="[M/H] median")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("my_stars.csv: medians ± robust std (200 draws)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _one_star(model, xm, pred, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = int(np.flatnonzero(~pred["no_input"].to_numpy())[0])
    given = {c: xm[c][row] for c in ("bprp", "jh", "jk")}
    draws = model.sample(given, LABELS, 4000, seed=0)
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.8), dpi=120)
    for ax, name in zip(axes, LABELS, strict=True):
        ax.hist(draws[name], bins=60, density=True, color="C0", alpha=0.7)
        ax.axvline(pred[f"{name}_median"][row], color="k", lw=1)
        ax.set_xlabel(name)
    axes[0].set_ylabel("density")
    name = xm["name"][row]
    shown = ", ".join(f"{k}={v:.3f}" for k, v in given.items())
    fig.suptitle(f"{name}: densities given {shown}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
