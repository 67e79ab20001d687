""":func:`crossmatch`: anyone's catalogue → a Gaia DR3 match → the build's columns + a manifest."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from stardata.crossmatch import catalog as cat
from stardata.errors import CatalogError
from stardata.numbers import Range, check_number

__all__ = ["MATCH_COLUMNS", "crossmatch"]

#: Columns every crossmatch adds after the catalogue's own.
MATCH_COLUMNS = (
    "gaia_source_id",
    "xm_matched",
    "xm_separation_arcsec",
    "xm_n_candidates",
    "xm_ambiguous",
)


@contextlib.contextmanager
def _archive_notices(show: bool) -> Iterator[None]:
    """astroquery's "Query finished." (INFO, on stdout) for every archive job, unless ``show``."""
    if show:
        yield
        return
    try:
        from astroquery import log
    except ImportError:  # the archive is never asked without it
        yield
        return
    level = log.level
    log.setLevel("WARNING")
    try:
        yield
    finally:
        log.setLevel(level)


def _mode(table: pa.Table, source_id, ra, dec) -> tuple[str, str | None, str | None]:
    if source_id is not None and (ra is not None or dec is not None):
        raise CatalogError("give source_id= or ra= and dec=, not both")
    if source_id is not None:
        return "source_id", source_id, None
    if ra is None and dec is None:
        names = table.column_names
        if "source_id" in names:
            return "source_id", "source_id", None
        if "ra" in names and "dec" in names:
            return "position", "ra", "dec"
        raise CatalogError(
            "catalogue has neither a source_id column nor ra and dec columns; name the columns "
            "with source_id= or ra= and dec="
        )
    if ra is None or dec is None:
        raise CatalogError("a positional match needs both ra= and dec=")
    return "position", ra, dec


def _reference(reference) -> dict[str, np.ndarray]:
    """A reference table's columns for :func:`stardata.crossmatch.sky.match_local`.

    Errors name the reference (its path, or "reference table"), never the catalogue.
    """
    from stardata.crossmatch.sky import ASTROMETRY

    owner = (
        f"reference {os.fspath(reference)}"
        if isinstance(reference, str | os.PathLike)
        else "reference table"
    )
    table = cat.read_catalog(reference, owner="reference")  # file errors name the path
    ids = cat.source_ids(table, "source_id", owner=owner)
    r, d = cat.positions(table, "ra", "dec", owner=owner)
    out = {"source_id": ids, "ra": r, "dec": d}
    for name in ASTROMETRY:
        if name in table.column_names:
            out[name] = cat.floats(table, name, name, owner=owner)
    for name, (lo, hi, missing_ok, unit) in REFERENCE_VALUES.items():
        if name in out:
            _check_reference_column(out[name], name, lo, hi, missing_ok, unit, owner)
    return out


#: The values a Gaia reference row may hold: column → (low, high, whether null is allowed: an
#: unknown motion is no motion, but a row without a position or epoch is broken, unit).
REFERENCE_VALUES = {
    "ra": (0.0, 360.0, False, "deg"),
    "dec": (-90.0, 90.0, False, "deg"),
    "ref_epoch": (1000.0, 3000.0, False, "Julian yr"),
    "pmra": (-1e5, 1e5, True, "mas/yr"),
    "pmdec": (-1e5, 1e5, True, "mas/yr"),
    "parallax": (-1e4, 1e4, True, "mas"),
    "radial_velocity": (-3e5, 3e5, True, "km/s"),
}


def _check_reference_column(v, name, lo, hi, missing_ok, unit, owner) -> None:
    """One line naming the reference, the column and the first row with an impossible value."""
    with np.errstate(invalid="ignore"):
        bad = ~((v >= lo) & (v <= hi)) & ~(missing_ok & np.isnan(v))
    rows = np.flatnonzero(bad)
    if rows.size:
        k = rows[0]
        what = "no value" if np.isnan(v[k]) else f"{v[k]:g} {unit}"
        raise CatalogError(
            f"{owner} column {name!r}: row {k} has {what}, expected {lo:g} to {hi:g} {unit} "
            f"({rows.size} row(s) in all)"
        )


def _match(table, mode, key, dec_col, epoch, radius, reference, cache, src, s, max_pm, progress):
    """Match columns (catalogue order) and a description for the manifest."""
    n = table.num_rows
    if mode == "source_id":
        ids = cat.source_ids(table, key)
        given = ids > 0
        from stardata.crossmatch.hats import is_hats_reference

        if is_hats_reference(reference):  # keep only the ids the HATS reference holds
            from stardata.crossmatch.hats import lookup_ids

            known = lookup_ids(reference, ids[given], ["source_id"], progress=progress)
            known = known["source_id"].to_numpy()
            given &= np.isin(ids, known)
            ids = np.where(given, ids, 0)
        m = {
            "source_id": ids,
            "separation_arcsec": np.full(n, np.nan),
            "n_candidates": given.astype(np.int32),
            "ambiguous": np.zeros(n, bool),
        }
        return m, {"by": "source_id", "column": key}
    ra, dec = cat.positions(table, key, dec_col)
    ep = cat.epochs(table, epoch, n)
    info = {"by": "position", "ra": key, "dec": dec_col, "epoch": epoch, "radius_arcsec": radius}
    from stardata.crossmatch.hats import is_hats_reference

    if is_hats_reference(reference):
        from stardata.crossmatch.hats import match_hats

        m = match_hats(ra, dec, ep, reference, radius, max_pm, progress=progress)
        info.update(against="HATS catalogue (LSDB)", max_pm=max_pm)
        if isinstance(reference, str | os.PathLike):
            info["reference"] = {"path": os.fspath(reference)}
        return m, info
    if reference is not None:
        from stardata.crossmatch.sky import match_local

        m = match_local(ra, dec, ep, _reference(reference), radius)
        info["against"] = "reference table"
        if isinstance(reference, str | os.PathLike):
            from stardata.io import sha256_file

            info["reference"] = {"path": str(reference), "sha256": sha256_file(reference)}
        return m, info
    from stardata.crossmatch.archive import match_archive

    m = match_archive(
        ra,
        dec,
        ep,
        radius,
        cache / "gaia_cone",
        tap_url=src.gaia_tap_url,
        max_pm=max_pm,
        progress=progress,
        retries=s.retries,
        backoff=s.backoff,
        timeout=s.timeout,
    )
    info.update(
        against="Gaia archive TAP (EPOCH_PROP_POS)", tap_url=src.gaia_tap_url, max_pm=max_pm
    )
    return m, info


def _hats_positions(formats, out, mode, table, ra, dec) -> tuple[str, str] | None:
    """The (ra, dec) columns to partition a HATS copy of the output on, if one is asked for."""
    unknown = sorted(set(formats) - {"parquet", "hats"})
    if unknown:
        raise CatalogError(f"unknown format(s) {unknown}; choose from parquet, hats")
    if "hats" not in formats:
        return None
    if out is None:
        raise CatalogError("formats=['hats'] needs out= (a HATS catalogue is a folder)")
    if mode != "position":
        if "ra" in table.column_names and "dec" in table.column_names:
            ra, dec = "ra", "dec"
        else:
            raise CatalogError("a HATS copy needs ra and dec columns in the catalogue")
    r, d = cat.positions(table, ra, dec)
    bad = int(np.count_nonzero(~(np.isfinite(r) & np.isfinite(d))))
    if bad:
        raise CatalogError(f"a HATS copy needs a position for every row; {bad} row(s) have none")
    return ra, dec


def _vocabulary(vocabulary):
    from stardata.tokens import Vocabulary

    if vocabulary is None or isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, str | os.PathLike):
        from stardata.io import read_json

        config = Path(vocabulary) / "config.json"
        if not config.is_file():
            raise CatalogError(f"{vocabulary}: not a model folder (no config.json)")
        return Vocabulary.from_dict(read_json(config)["vocabulary"])
    return Vocabulary(list(vocabulary))


#: Where the numbers of :func:`crossmatch` mean something.
RADIUS = Range(0.0, 180 * 3600.0, lo_open=True, hi_open=True)  # arcsec: above 0, below 180°
MAX_PM = Range(0.0, 100.0)  # arcsec/yr: the fastest star (Barnard's) moves 10.4″/yr


def _check_numbers(radius, max_pm) -> tuple[float, float]:
    """``radius`` and ``max_pm`` checked, one line naming each (epochs: :func:`cat.epochs`)."""
    return (
        check_number(radius, "radius [arcsec]", RADIUS, CatalogError),
        check_number(max_pm, "max_pm [arcsec/yr]", MAX_PM, CatalogError),
    )


def _input_paths(*given) -> list:
    """The local paths among the inputs (URLs and tables in memory are not paths)."""
    return [g for g in given if isinstance(g, str | os.PathLike) and "://" not in os.fspath(g)]


def crossmatch(
    catalog,
    *,
    source_id: str | None = None,
    ra: str | None = None,
    dec: str | None = None,
    epoch: float | str | None = None,
    radius: float = 1.0,
    reference=None,
    columns: str = "derived",
    out: str | os.PathLike | None = None,
    vocabulary=None,
    cache_dir: str | os.PathLike = "data/cache/crossmatch",
    settings=None,
    sources=None,
    xp_bounds: dict | None = None,
    extinction: bool = True,
    max_pm: float = 11.0,
    formats: Sequence[str] = ("parquet",),
    progress: bool = True,
):
    """Crossmatch a catalogue to Gaia DR3 and add the release build's columns beside its own.

    Parameters
    ----------
    catalog : astropy Table, pandas/polars DataFrame, Arrow table or path
        The user's stars (CSV, FITS, Parquet or VOTable for a path). Every row is kept, in
        order, with all its columns (their names must not clash with the added ones).
    source_id : str, optional
        Column of Gaia DR3 source ids (match by id; 0 or null = no id).
    ra, dec : str, optional
        Columns of positions [deg] (match by position). Without ``source_id``, ``ra`` and
        ``dec``, a ``source_id`` column is used if present, else ``ra``/``dec`` columns.
    epoch : float or str, optional
        Epoch of the positions [Julian yr], or the name of a per-row epoch column
        (default 2016.0, Gaia DR3's own).
    radius : float
        Match radius [arcsec], above 0 and below 180° (648,000″).
    reference : table, path, HATS catalogue or URL, optional
        Gaia rows to match positions against (``source_id``, ``ra``, ``dec``, optional
        ``pmra``, ``pmdec`` [mas/yr], ``parallax`` [mas], ``radial_velocity`` [km/s] and
        ``ref_epoch`` [Julian yr, default 2016.0], used to move the stars to each row's epoch
        with :func:`stardata.crossmatch.sky.propagate`): a table in memory or a file (matched
        with a KD-tree), or a HATS catalogue with a margin — an ``lsdb.Catalog``, a local
        folder or a URL such as a public Gaia DR3 HATS copy (matched through LSDB, reading
        only the sky the catalogue touches, with the same result; needs ``stardiff[hats]``).
        By default positions go to the Gaia archive. Errors in it name the reference.
    columns : {"derived", "match"}
        Add the derived columns (the archive joins of the build), or the match columns only.
    out : path-like, optional
        Folder for ``crossmatch.parquet``, ``manifest.json`` (and ``tokens.h5``); replaced
        only once complete, and only if it is empty or an earlier crossmatch's (a folder
        holding anything else, a file, or an input is refused: :mod:`stardata.outpaths`).
        Without it the table is returned.
    vocabulary : Vocabulary, sequence of str or model folder, optional
        Also write ``tokens.h5`` with these columns (absent ones are padding).
    cache_dir : path-like
        The connectors' chunk caches (a rerun resumes from them).
    settings : stardata.Settings, optional
        The build's thresholds, seeds and chunk sizes (default: the release's).
    sources : stardata.Sources, optional
        Archive URLs and the dust-map folder.
    xp_bounds : dict, optional
        A release manifest's ``xp_percentile_bounds`` to apply its XP percentile cut.
    extinction : bool
        Compute ``logebv`` from Combined19 (needs the map).
    max_pm : float
        Largest motion [arcsec/yr] an archive or HATS positional match looks for (the search
        radius around the reference's stored positions is ``radius + max_pm · |Δt|``); 0 to
        100.
    formats : sequence of str
        ``"parquet"`` (always) and optionally ``"hats"``: with ``out``, the table also as a
        HATS collection with a margin, ``out/crossmatch_hats/``, partitioned on the
        catalogue's positions (every row needs one; needs ``stardiff[hats]``).
    progress : bool
        Progress bars (this package's, LSDB's) and astroquery's notices; ``False`` leaves only
        warnings.

    Returns
    -------
    polars.DataFrame or pathlib.Path
        The table, or ``out`` when given.

    Raises
    ------
    CatalogError
        A bad catalogue, reference or argument, in one line.
    """
    import stardata
    from stardata.crossmatch.output import check_out, write_or_return

    radius, max_pm = _check_numbers(radius, max_pm)
    if columns not in ("derived", "match"):
        raise CatalogError(f"columns must be 'derived' or 'match', not {columns!r}")
    inputs = _input_paths(catalog, reference, vocabulary, cache_dir)
    if out is not None:
        check_out(Path(out), inputs)  # before any work; again under the output's lock
    s, src = settings or stardata.Settings(), sources or stardata.Sources()
    vocab = _vocabulary(vocabulary)
    table = cat.read_catalog(catalog)
    mode, key, dec_col = _mode(table, source_id, ra, dec)
    cache = Path(cache_dir)
    hats = _hats_positions(formats, out, mode, table, key, dec_col)

    with _archive_notices(progress):
        m, info = _match(
            table, mode, key, dec_col, epoch, radius, reference, cache, src, s, max_pm, progress
        )
        match = {
            "gaia_source_id": m["source_id"],
            "xm_matched": m["source_id"] > 0,
            "xm_separation_arcsec": m["separation_arcsec"],
            "xm_n_candidates": m["n_candidates"],
            "xm_ambiguous": m["ambiguous"],
        }
        return write_or_return(
            table,
            match,
            info,
            out=None if out is None else Path(out),
            derived=columns == "derived",
            vocab=vocab,
            cache=cache,
            s=s,
            src=src,
            options={"xp_bounds": xp_bounds, "extinction": extinction},
            catalog=catalog,
            hats=hats,
            progress=progress,
            inputs=inputs,
        )
