"""Task families and scores of the fidelity benchmark (``benchmarks.fidelity``).

A task is one held-out row, one requested column and a set of given columns. Every family
is scored against the exact conditional of ``synthetic_stars``: ``w1`` is the 1-Wasserstein
distance of the draws to the exact conditional ÷ the column's training std (mean over tasks),
``pit_ks`` the KS distance from uniform of the exact conditional CDF at the draws (pooled;
0 for a perfect sampler up to the draw count), ``cover68`` the fraction of true values inside
the draws' central 68 % interval, ``crps`` the CRPS of the draws at the true value ÷ std and
``scatter`` the robust scatter of the draws' median about the true value (physical units).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from stardiff import metrics as M

__all__ = ["LABELS", "families", "score_family", "score_observed"]

LABELS = ("teff", "logg", "m_h")
SCORES = ("w1", "pit_ks", "cover68", "crps", "scatter", "draws_per_s")

# draw(given (T, V) NaN = not given, request (T,) column index, n) -> (T, n) physical units
Draw = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _pick_rows(x: np.ndarray, need: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` distinct rows (fewer if not available) where every column of ``need`` is present."""
    ok = np.flatnonzero(np.isfinite(x[:, need]).all(axis=1))
    return rng.choice(ok, size=min(n, ok.size), replace=False)


def _random_sizes(x, rows, lo: int, hi: int, rng):
    """A random request per row and ``L`` uniform in ``lo..hi`` other present inputs."""
    req = np.empty(rows.size, dtype=np.int64)
    given = np.full((rows.size, x.shape[1]), np.nan)
    for t, i in enumerate(rows):
        present = np.flatnonzero(np.isfinite(x[i]))
        req[t] = rng.choice(present)
        others = present[present != req[t]]
        size = rng.integers(min(lo, others.size), min(hi, others.size) + 1)
        chosen = rng.choice(others, size=size, replace=False)
        given[t, chosen] = x[i, chosen]
    return req, given


def families(
    x: np.ndarray, columns: list[str], n: int, seed: int, labels: tuple[str, ...] = LABELS
) -> dict[str, tuple]:
    """The benchmark's task families on held-out rows ``x`` (physical units, NaN = missing).

    Returns ``{name: (rows, request, given)}``: each label from every present non-label column;
    logg given teff; unconditional (a random column, nothing given); random tasks with 1-5
    inputs; random tasks with 32-64 inputs (the training context). ``labels`` must include
    ``teff`` and ``logg``.
    """
    rng = np.random.default_rng(seed)
    lab = np.array([columns.index(c) for c in labels])
    rest = np.setdiff1d(np.arange(len(columns)), lab)
    out = {}
    for c, j in zip(labels, lab, strict=True):
        rows = _pick_rows(x, np.array([j]), n, rng)
        given = np.full((rows.size, x.shape[1]), np.nan)
        given[:, rest] = x[np.ix_(rows, rest)]
        out[f"{c} | non-labels"] = (rows, np.full(rows.size, j), given)
    t, g = columns.index("teff"), columns.index("logg")
    rows = _pick_rows(x, np.array([t, g]), n, rng)
    given = np.full((rows.size, x.shape[1]), np.nan)
    given[:, t] = x[rows, t]
    out["logg | teff"] = (rows, np.full(rows.size, g), given)
    rows = rng.choice(x.shape[0], size=n, replace=False)
    req, _ = _random_sizes(x, rows, 0, 0, rng)
    out["unconditional"] = (rows, req, np.full((rows.size, x.shape[1]), np.nan))
    for name, lo, hi in (("random 1-5 inputs", 1, 5), ("random 32-64 inputs", 32, 64)):
        rows = rng.choice(x.shape[0], size=n, replace=False)
        out[name] = (rows, *_random_sizes(x, rows, lo, hi, rng))
    return out


def score_family(synth, x, task, std: np.ndarray, draw: Draw, n_draws: int, seed: int) -> dict:
    """Scores of one sampler on one family (see the module docstring)."""
    rows, req, given = task
    truth = x[rows, req]
    t0 = time.perf_counter()
    s = draw(given, req, n_draws)
    dt = time.perf_counter() - t0
    w, m, sd = synth.exact_conditional_batch(given, req)
    sdv = std[req]
    u = M.gaussian_mixture_cdf(s, w, m, sd)
    return {
        "n": int(rows.size),
        "w1": float(np.mean(M.wasserstein_to_gaussian_mixture(s, w, m, sd) / sdv)),
        "pit_ks": M.ks_uniform(u.ravel()),
        "cover68": M.coverage(s, truth, 0.68),
        "crps": float(np.mean(M.crps_samples(s, truth) / sdv)),
        "scatter": M.median_bias_scatter(s, truth)[1],
        "draws_per_s": round(s.size / max(dt, 1e-9), 1),
    }


def score_observed(x, task, std: np.ndarray, draw: Draw, n_draws: int, seed: int) -> dict:
    """Scores of one sampler on one family of real rows (no exact conditional to compare with).

    The draws are scored at the observed values only: CRPS ÷ std, the KS distance from
    uniform of the (randomized) PIT, 68 % coverage, and the robust scatter and bias of the
    median about the truth (physical units).
    """
    rows, req, given = task
    truth = x[rows, req]
    t0 = time.perf_counter()
    s = draw(given, req, n_draws)
    dt = time.perf_counter() - t0
    bias, scatter = M.median_bias_scatter(s, truth)
    return {
        "n": int(rows.size),
        "crps": float(np.mean(M.crps_samples(s, truth) / std[req])),
        "pit_ks": M.ks_uniform(M.pit(s, truth, rng=seed)),
        "cover68": M.coverage(s, truth, 0.68),
        "scatter": scatter,
        "bias": bias,
        "draws_per_s": round(s.size / max(dt, 1e-9), 1),
        "medians": np.median(s, axis=1).tolist(),
    }


def exact_draw(synth, seed: int) -> Draw:
    """The oracle: draws from the exact conditional (the floor of every figure)."""

    def draw(given, req, n):
        return synth.sample_exact_conditional(given, req, n, rng=seed)

    return draw


def model_draw(
    model,
    columns: list[str],
    seed: int,
    sampler: str | None,
    steps,
    eta: float = 0.0,
    errors_of: Callable[[np.ndarray], dict] | None = None,
) -> Draw:
    """A trained DensityModel as a ``Draw`` (one call per requested column; ``eta``: ddim's).

    ``errors_of(sel)``: the given values' errors of the tasks selected by the mask ``sel``
    (``model.sample``'s ``errors``), for a model that reads them."""

    def draw(given, req, n):
        out = np.empty((req.size, n))
        for j in np.unique(req):
            sel = req == j
            g = {c: given[sel, k] for k, c in enumerate(columns)}
            how = {"seed": seed + int(j), "sampler": sampler, "steps": steps}
            if eta:
                how["eta"] = eta
            if errors_of is not None:
                how["errors"] = errors_of(sel)
            out[sel] = model.sample(g, columns[j], n, **how)
        return out

    return draw
