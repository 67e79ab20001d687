"""Custom crossmatches: anyone's catalogue → Gaia DR3 (by id or position) → the build's columns.

>>> from stardata.crossmatch import crossmatch
>>> crossmatch("my_stars.csv", ra="ra", dec="dec", epoch=2000.0, out="xm")  # doctest: +SKIP

See ``docs/crossmatch.md``. The derived columns come from the same connectors
(:mod:`stardata.sources`) and the same functions (:func:`stardata.derive.derive_gaia`,
:func:`stardata.cuts.xp_quality_cuts`, :func:`stardata.derive.mask_xp`) as ``stardata build``.
"""

from stardata.crossmatch.archive import CONE_QUERY, match_archive
from stardata.crossmatch.catalog import read_catalog
from stardata.crossmatch.run import MATCH_COLUMNS, crossmatch
from stardata.crossmatch.sky import GAIA_EPOCH, match_local, propagate
from stardata.errors import CatalogError

__all__ = [
    "CONE_QUERY",
    "GAIA_EPOCH",
    "MATCH_COLUMNS",
    "CatalogError",
    "crossmatch",
    "match_archive",
    "match_local",
    "propagate",
    "read_catalog",
]
