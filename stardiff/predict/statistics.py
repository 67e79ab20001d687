"""Per-row statistics of draws: median, robust std (1.4826·MAD) and quantiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAD_TO_STD", "draw_statistics", "quantile_name", "statistics_columns"]

MAD_TO_STD = 1.4826


def quantile_name(name: str, q: float) -> str:
    """``teff_q16`` for q = 0.16, ``teff_q2p5`` for 0.025: no dots, which LSDB's nested
    frames would read as struct fields."""
    return f"{name}_q{round(100 * q, 6):g}".replace(".", "p")


def statistics_columns(request: Sequence[str], quantiles: Sequence[float]) -> list[str]:
    """Names of :func:`draw_statistics`' columns, in order."""
    return [
        c
        for name in request
        for c in (f"{name}_median", f"{name}_std", *(quantile_name(name, q) for q in quantiles))
    ]


def draw_statistics(
    draws: dict, request: Sequence[str], rows: int, n: int, quantiles: Sequence[float]
) -> dict[str, np.ndarray]:
    """Per row: median, robust std (1.4826·MAD) and quantiles of each column's ``n`` draws."""
    out = {}
    for name in request:
        s = np.asarray(draws[name]).reshape(rows, n)
        med = np.median(s, axis=1)
        out[f"{name}_median"] = med
        out[f"{name}_std"] = MAD_TO_STD * np.median(np.abs(s - med[:, None]), axis=1)
        if len(quantiles):
            for q, v in zip(quantiles, np.quantile(s, quantiles, axis=1), strict=True):
                out[quantile_name(name, q)] = v
    return out
