"""The per-partition step of the HATS crossmatch: an LSDB crossmatch algorithm with epochs.

LSDB hands :class:`EpochCrossmatch` one partition of the catalogue (``left``) and one of the
reference with its margin (``right``). Every reference star within a row's *search radius* of
the row — ``radius + max_pm · |Δt|`` around the stored positions, with no cap on their number —
is a candidate; each candidate is moved to the row's epoch with
:func:`stardata.crossmatch.sky.propagate` (the function the in-memory match uses) and kept when
it lies within ``radius`` there. Only the kept pairs leave the partition.

This module imports LSDB; :mod:`stardata.crossmatch.hats` imports it only when matching.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from lsdb.core.crossmatch.abstract_crossmatch_algorithm import AbstractCrossmatchAlgorithm

from stardata.crossmatch.sky import (
    ASTROMETRY,
    GAIA_EPOCH,
    arcsec_chord,
    chord_arcsec,
    propagate,
    unit_vectors,
)
from stardata.errors import CatalogError

__all__ = ["EpochCrossmatch", "search_radius"]

SEPARATION = "_sep_arcsec"


def search_radius(
    epoch: np.ndarray, epoch_range: tuple[float, float], radius: float, max_pm: float
) -> np.ndarray:
    """Per row: ``radius + max_pm · |Δt|`` [arcsec], Δt to the farthest reference epoch.

    Parameters
    ----------
    epoch : numpy.ndarray
        The rows' epochs [Julian yr].
    epoch_range : tuple of float
        Smallest and largest ``ref_epoch`` of the reference [Julian yr].
    radius : float
        Match radius [arcsec].
    max_pm : float
        Largest motion looked for [arcsec/yr].
    """
    lo, hi = epoch_range
    dt = np.maximum(np.abs(epoch - lo), np.abs(epoch - hi))
    return radius + max_pm * dt


def _floats(frame: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), default)
    return frame[name].to_numpy(np.float64, na_value=np.nan)


class EpochCrossmatch(AbstractCrossmatchAlgorithm):
    """Every reference star within ``radius`` of a row once moved to the row's epoch.

    Parameters
    ----------
    radius : float
        Match radius [arcsec] at the row's epoch.
    max_pm : float
        Largest motion looked for [arcsec/yr]: candidates are searched within
        ``radius + max_pm · |Δt|`` of the row around the stored positions.
    epoch_range : tuple of float
        Smallest and largest ``ref_epoch`` in the whole reference [Julian yr] (its Parquet
        statistics); a partition holding another value is refused (the search radius, checked
        against the margin before the match, assumed the range).
    epoch_column : str
        The left catalogue's column of epochs [Julian yr].
    name : str
        The reference's name, for error messages.
    """

    extra_columns = pd.DataFrame({SEPARATION: pd.Series(dtype=pd.ArrowDtype(pa.float64()))})

    def __init__(
        self,
        radius: float,
        max_pm: float,
        epoch_range: tuple[float, float],
        epoch_column: str = "epoch",
        name: str = "HATS reference",
    ):
        super().__init__()
        self.radius = float(radius)
        self.max_pm = float(max_pm)
        self.epoch_range = (float(epoch_range[0]), float(epoch_range[1]))
        self.epoch_column = epoch_column
        self.name = name

    def _ref_epochs(self, right: pd.DataFrame) -> np.ndarray:
        ref_epoch = _floats(right, "ref_epoch", GAIA_EPOCH)
        if not np.isfinite(ref_epoch).all():
            bad = int(np.count_nonzero(~np.isfinite(ref_epoch)))
            raise CatalogError(f"{self.name}: {bad} row(s) have no ref_epoch")
        lo, hi = self.epoch_range
        if ref_epoch.size and (ref_epoch.min() < lo or ref_epoch.max() > hi):
            raise CatalogError(
                f"{self.name}: ref_epoch {ref_epoch.min():g}-{ref_epoch.max():g} in a partition, "
                f"outside the range {lo:g}-{hi:g} its metadata records; rewrite the catalogue"
            )
        return ref_epoch

    def perform_crossmatch(self, crossmatch_args) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """Indices of the (row, star) pairs within ``radius`` at the row's epoch, and the
        separations [arcsec]."""
        from scipy.spatial import cKDTree

        left, right = crossmatch_args.left_df, crossmatch_args.right_df
        lcat, rcat = crossmatch_args.left_catalog_info, crossmatch_args.right_catalog_info
        ref_epoch = self._ref_epochs(right)
        epoch = left[self.epoch_column].to_numpy(np.float64)
        own = unit_vectors(
            left[lcat.ra_column].to_numpy(np.float64), left[lcat.dec_column].to_numpy(np.float64)
        )
        ra = right[rcat.ra_column].to_numpy(np.float64)
        dec = right[rcat.dec_column].to_numpy(np.float64)
        search = search_radius(epoch, self.epoch_range, self.radius, self.max_pm)
        # every star within each row's search radius: no neighbour cap
        found = cKDTree(unit_vectors(ra, dec)).query_ball_point(
            own, arcsec_chord(search), return_sorted=False
        )
        counts = np.fromiter((len(f) for f in found), np.int64, count=len(found))
        rows = np.repeat(np.arange(len(found), dtype=np.int64), counts)
        stars = (
            np.concatenate([np.asarray(f, np.int64) for f in found])
            if rows.size
            else np.zeros(0, np.int64)
        )
        motion = {k: _floats(right, k)[stars] for k in ASTROMETRY[:4]}
        moved = propagate(
            ra[stars],
            dec[stars],
            motion["pmra"],
            motion["pmdec"],
            epoch[rows] - ref_epoch[stars],
            motion["parallax"],
            motion["radial_velocity"],
        )
        chord = np.linalg.norm(moved - own[rows], axis=1)
        keep = chord <= arcsec_chord(self.radius)
        sep = pd.Series(chord_arcsec(chord[keep]), dtype=pd.ArrowDtype(pa.float64()))
        return rows[keep], stars[keep], pd.DataFrame({SEPARATION: sep})
