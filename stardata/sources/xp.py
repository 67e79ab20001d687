"""Gaia DR3 XP continuous mean-spectrum coefficients through the archive's DataLink service.

:func:`fetch_xp_continuous` posts chunks of ids (at most 5,000 a request) to DataLink, caches each
chunk (see :func:`stardata.sources.tap.cached_chunks`) and parses the zipped products with
:mod:`stardata.sources.xp_products` (re-exported here).

``DATA_STRUCTURE``: the archive withdrew ``COMBINED`` (astroquery PR #3012; the service answers
``Invalid Data Structure parameter: 'COMBINED', valid ones are: RAW, INDIVIDUAL``) and is renaming
``INDIVIDUAL`` to ``DATAMODEL_STANDARD`` and ``RAW`` to ``DATAMODEL_GAIA`` (astroquery PR #3629).
The default is ``INDIVIDUAL`` (what the operational service and astroquery document today); when
the service rejects a value, the other accepted values are tried in turn (the one it lists as
valid first), and the one that worked is kept for the remaining chunks.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np
import polars as pl

from stardata.errors import ArchiveError
from stardata.sources.http import http_post
from stardata.sources.tap import cached_chunks, clean_source_ids, merge_chunks
from stardata.sources.xp_products import (
    XP_N_COEFFICIENTS,
    parse_xp_continuous,
    parse_xp_csv,
    parse_xp_zip,
)

__all__ = [
    "DEFAULT_XP_DATA_STRUCTURE",
    "GAIA_DATALINK_URL",
    "StructureChoice",
    "XP_DATA_STRUCTURES",
    "XP_N_COEFFICIENTS",
    "fetch_xp_continuous",
    "parse_xp_continuous",
    "parse_xp_csv",
    "structure_candidates",
]

GAIA_DATALINK_URL = "https://gea.esac.esa.int/data-server/data"
"""The Gaia archive DataLink data server (what ``Gaia.load_data`` posts to)."""


log = logging.getLogger(__name__)

#: ``DATA_STRUCTURE`` values: one file per source (``INDIVIDUAL``, renamed ``DATAMODEL_STANDARD``)
#: or one file for all sources (``RAW``, renamed ``DATAMODEL_GAIA``); the parsers read both.
XP_DATA_STRUCTURES = ("INDIVIDUAL", "RAW", "DATAMODEL_STANDARD", "DATAMODEL_GAIA")
DEFAULT_XP_DATA_STRUCTURE = "INDIVIDUAL"
_RENAMED = {
    "INDIVIDUAL": "DATAMODEL_STANDARD",
    "DATAMODEL_STANDARD": "INDIVIDUAL",
    "RAW": "DATAMODEL_GAIA",
    "DATAMODEL_GAIA": "RAW",
}


def structure_candidates(preferred: str) -> list[str]:
    """``DATA_STRUCTURE`` values to try, in order: ``preferred``, its new/old name, the others."""
    order = [preferred, _RENAMED.get(preferred)]
    order += [s for s in XP_DATA_STRUCTURES if s not in order]
    return [s for s in order if s]


class StructureChoice:
    """The ``DATA_STRUCTURE`` in use; moves on when the service rejects one.

    Pass one object to several :func:`fetch_xp_continuous` calls (as a build does, block by
    block) so that a value the service refused is asked for only once.
    """

    def __init__(self, preferred: str) -> None:
        self.candidates = structure_candidates(preferred)
        self.current = preferred
        self.rejected: list[str] = []

    def next_after(self, error: ArchiveError) -> bool:
        """Record a rejection of :attr:`current`; pick the next value (False if none is left)."""
        message = str(error)
        if not re.search(r"data.?structure", message, re.IGNORECASE):
            return False
        self.rejected.append(self.current)
        listed = re.search(r"valid ones are:?\s*([A-Z_, ]+)", message)
        valid = [v.strip() for v in listed.group(1).split(",")] if listed else []
        left = [c for c in self.candidates if c not in self.rejected]
        if listed:  # the service says which it accepts: try only those
            left = [c for c in left if c in valid]
        if not left:
            return False
        log.warning("DataLink rejected DATA_STRUCTURE=%s; using %s", self.current, left[0])
        self.current = left[0]
        return True


def fetch_xp_continuous(
    source_ids: Sequence[int] | np.ndarray,
    cache_dir: str | os.PathLike,
    *,
    datalink_url: str = GAIA_DATALINK_URL,
    chunk_size: int = 5000,
    progress: bool = True,
    data_format: str = "csv",
    data_structure: str | StructureChoice = DEFAULT_XP_DATA_STRUCTURE,
    release: str = "Gaia DR3",
    correlations: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 600,
) -> pl.DataFrame:
    """Fetch XP continuous mean-spectrum coefficients through the archive's DataLink service.

    Parameters
    ----------
    source_ids : array-like of int
        Gaia DR3 source ids (duplicates, 0 and negatives dropped).
    cache_dir : path-like
        Folder for the per-chunk Parquet cache.
    datalink_url : str, optional
        DataLink endpoint (``Gaia.load_data`` posts to the same URL with the same fields:
        ``ID``, ``RETRIEVAL_TYPE=XP_CONTINUOUS``, ``FORMAT``, ``DATA_STRUCTURE``, ``RELEASE``).
    chunk_size : int, optional
        Ids per request; the archive allows at most 5,000.
    data_format : {"csv", "fits", "votable", "ecsv"}, optional
        Product format requested; all are parsed to the same table. CSV (the default) is parsed
        for a whole chunk at once with polars (about 1 ms a star, against 3-12 ms for astropy
        reading single-row files) and is lossless (the archive prints round-trip decimals).
    data_structure : str or StructureChoice, optional
        One of :data:`XP_DATA_STRUCTURES`; if the service rejects it, the others are tried (see
        the module notes). All give the same table, so the cache does not depend on it.
    correlations : bool, optional
        Keep the coefficient correlations too (large: 1,485 floats per band and star).
    retries, backoff, timeout : optional
        Retry policy and per-request time-out.

    Returns
    -------
    polars.DataFrame
        One row per source with XP spectra, sorted by ``source_id``; see
        :func:`parse_xp_continuous` for the columns. Ids without XP are simply absent.
    """
    if chunk_size > 5000:
        raise ValueError(f"chunk_size {chunk_size} exceeds the archive's DataLink limit of 5000")
    ids = clean_source_ids(source_ids)
    fields = {
        "RETRIEVAL_TYPE": "XP_CONTINUOUS",
        "FORMAT": data_format,
        "RELEASE": release,
        "VALID_DATA": "false",
        "USE_ZIP_ALWAYS": "true",
    }
    structure = (
        data_structure
        if isinstance(data_structure, StructureChoice)
        else StructureChoice(data_structure)
    )
    what = f"DataLink {datalink_url}"

    def fetch(chunk: np.ndarray) -> pl.DataFrame:
        request = {**fields, "ID": ",".join(map(str, chunk))}
        while True:
            try:
                request["DATA_STRUCTURE"] = structure.current
                body = http_post(datalink_url, request, timeout=timeout)
                return parse_xp_zip(body, what, correlations)
            except ArchiveError as exc:
                if not structure.next_after(exc):
                    if len(structure.rejected) > 1:
                        tried = ", ".join(structure.rejected)
                        raise ArchiveError(f"{exc} (tried DATA_STRUCTURE {tried})") from exc
                    raise

    salt = f"{sorted(fields.items())}|{correlations}"
    frames = list(
        cached_chunks(
            ids,
            cache_dir,
            prefix="xp_continuous",
            chunk_size=chunk_size,
            fetch=fetch,
            salt=salt,
            progress=progress,
            retries=retries,
            backoff=backoff,
        )
    )
    frame = merge_chunks(frames, ids, "drop", "xp_continuous")
    return frame
