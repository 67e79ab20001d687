"""Offline stand-ins for the remote releases, for tests and benchmarks (no network).

* :mod:`stardata.mirror.fixtures`: allStar files, a tiny Combined19 map and synthetic archive
  tables (``gaia_source``, 2MASS, XP_CONTINUOUS).
* :mod:`stardata.mirror.server`: :class:`MirrorServer`, a local HTTP server emulating SDSS and
  the Gaia archive's TAP and DataLink endpoints, with :class:`Fault` injection.
* :mod:`stardata.mirror.archive`: the ADQL subset and the DataLink product writers it answers
  with.
"""

from stardata.mirror.archive import XP_PRODUCT_COLUMNS, xp_files
from stardata.mirror.fixtures import (
    COMBINED19_DISTMODS,
    real_xp_product,
    synthetic_gaia_source,
    synthetic_tmass,
    synthetic_xp,
    write_allstar,
    write_tiny_combined19,
)
from stardata.mirror.server import Fault, MirrorServer

__all__ = [
    "COMBINED19_DISTMODS",
    "XP_PRODUCT_COLUMNS",
    "Fault",
    "MirrorServer",
    "real_xp_product",
    "synthetic_gaia_source",
    "synthetic_tmass",
    "synthetic_xp",
    "write_allstar",
    "write_tiny_combined19",
    "xp_files",
]
