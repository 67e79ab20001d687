"""One-input conditionals of a saved fidelity model, before and after training on that task alone.

    python -m benchmarks.fidelity_one_input MODEL_DIR [--steps 600] [--figure out.png]

``MODEL_DIR`` is a model kept by ``python -m benchmarks.fidelity --save DIR``. The script
draws ``logg | teff`` at six teff values, prints the W1 distance (dex) of the draws to the
exact conditional of ``synthetic_stars``, then trains a copy of the network for ``--steps``
steps on that one task alone (batches of 256 training rows, one input, the same loss) and
scores it again. If a few hundred dedicated steps make the densities sharp, the network
can represent them and what the full training lacks is examples of the task (at 65
columns, 8 requests and ``subset_power = 2`` a row asks logg given teff alone about once in
10,000 rows); if they stay smeared, the limit is the architecture. Prints a table;
``--figure`` draws both rows of densities.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np

TEFFS = (4400.0, 4700.0, 5000.0, 5300.0, 5600.0, 6200.0)


def _train_on_one_task(net, z_in, z_out, i_in: int, i_out: int, steps: int, lr: float, seed: int):
    """``steps`` AdamW steps of the diffusion loss on ``out | in`` only (standardized values)."""
    import torch

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    x_in, x_out = torch.as_tensor(z_in, dtype=torch.float32), torch.as_tensor(z_out).float()
    net.train()
    for _ in range(steps):
        i = torch.randint(0, x_in.numel(), (256,), generator=gen)
        t = torch.randint(0, net.config.steps, (256, 1, 2), generator=gen)
        noise = torch.randn(256, 1, 2, generator=gen)
        tokens, request = torch.full((256, 1), i_in + 1), torch.full((256, 1), i_out + 1)
        loss = net.loss(tokens, x_in[i, None], request, x_out[i, None], t, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()


def _exact(synth) -> list[tuple[np.ndarray, ...]]:
    """The exact conditional of logg at each teff of ``TEFFS``: (weights, means, sigmas),
    each of shape (1, components)."""
    cols = list(synth.columns)
    out = []
    for teff in TEFFS:
        given = np.full((1, len(cols)), np.nan)
        given[0, cols.index("teff")] = teff
        out.append(synth.exact_conditional_batch(given, np.array([cols.index("logg")])))
    return out


def _scores(model, exact, draws: int, seed: int) -> list[tuple[np.ndarray, float]]:
    """Draws of logg at each teff of ``TEFFS`` and their W1 (dex) to the exact conditional."""
    from stardiff import metrics as M

    out = []
    for teff, (w, m, s) in zip(TEFFS, exact, strict=True):
        d = model.sample({"teff": np.array([teff])}, "logg", draws, seed=seed, sampler="ancestral")
        out.append((d[0], float(M.wasserstein_to_gaussian_mixture(d, w, m, s)[0])))
    return out


def _figure(path: Path, exact, rows: dict[str, list]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(1.0, 5.2, 400)
    fig, axes = plt.subplots(len(rows), len(TEFFS), figsize=(2.6 * len(TEFFS), 2.3 * len(rows)))
    for r, (name, scored) in enumerate(rows.items()):
        for c, (teff, (d, w1), mix) in enumerate(zip(TEFFS, scored, exact, strict=True)):
            w, m, s = (a[0] for a in mix)
            z = (grid - m[:, None]) / s[:, None]
            dens = (w[:, None] * np.exp(-0.5 * z**2) / (s[:, None] * np.sqrt(2 * np.pi))).sum(0)
            ax = axes[r, c]
            ax.hist(d, bins=100, range=(1.0, 5.2), density=True, alpha=0.5, label="model")
            ax.plot(grid, dens, "k", lw=1, label="exact")
            ax.set_title(f"teff {teff:.0f} K, W1 {w1:.3f}", fontsize=9)
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == len(rows) - 1:
                ax.set_xlabel("logg")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("logg | teff: the fidelity model (top) and after dedicated steps (bottom)")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a folder kept by benchmarks.fidelity --save")
    p.add_argument("--steps", type=int, default=600, help="dedicated training steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--draws", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", type=Path, help="PNG of the densities before and after")
    a = p.parse_args(argv)
    if not (a.model / "config.json").is_file():
        raise SystemExit(f"fidelity_one_input: {a.model} is not a saved model folder")
    if a.steps < 0:
        raise SystemExit(f"fidelity_one_input: --steps must be >= 0, got {a.steps}")
    import torch

    from benchmarks.fidelity import N_SPECTRUM, ROWS, _rows
    from stardiff import load
    from stardiff.datasets.synthetic import synthetic_stars_model

    torch.set_num_threads(a.threads)
    model = load(a.model)
    synth = synthetic_stars_model(N_SPECTRUM)
    cols = list(synth.columns)
    if list(model.columns) != cols:
        raise SystemExit(f"fidelity_one_input: {a.model} was not trained on the benchmark table")
    x = synth.table(ROWS, seed=a.seed, missing=0.1).to_numpy()
    z = model.pre.encode(x[_rows(ROWS, a.seed)[0]], where="training rows")
    ti, gi = cols.index("teff"), cols.index("logg")
    both = np.isfinite(z[:, ti]) & np.isfinite(z[:, gi])
    exact = _exact(synth)
    rows = {"as trained": _scores(model, exact, a.draws, a.seed)}
    tuned = copy.deepcopy(model)
    t0 = time.perf_counter()
    _train_on_one_task(tuned.network, z[both, ti], z[both, gi], ti, gi, a.steps, a.lr, a.seed)
    secs = time.perf_counter() - t0
    rows[f"+ {a.steps} steps"] = _scores(tuned, exact, a.draws, a.seed)
    print(f"{'teff':>8} " + " ".join(f"{name:>14}" for name in rows))
    for k, teff in enumerate(TEFFS):
        print(f"{teff:8.0f} " + " ".join(f"{r[k][1]:14.3f}" for r in rows.values()))
    means = " ".join(f"{np.mean([s[1] for s in r]):14.3f}" for r in rows.values())
    print(f"{'mean':>8} {means}")
    print(f"{a.steps} steps × 256 rows in {secs:.1f} s ({a.threads} thread(s))")
    if a.figure:
        _figure(a.figure, exact, rows)
        print(f"figure: {a.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
