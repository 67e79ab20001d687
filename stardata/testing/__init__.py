"""The local test archive: offline stand-ins for the remote releases (no network).

Not used by any build: this module exists so that tests, benchmarks and the tutorials can run
the real connectors against a local server in the services' real formats. Start a
:class:`MirrorServer` on 127.0.0.1, point :class:`stardata.Sources` at its URLs, and build.

* :mod:`stardata.testing.fixtures`: allStar files, a tiny Combined19 map and synthetic archive
  tables (``gaia_source``, 2MASS, XP_CONTINUOUS).
* :mod:`stardata.testing.server`: :class:`MirrorServer`, a local HTTP server emulating SDSS and
  the Gaia archive's TAP and DataLink endpoints (answers with the archive's ``ID`` attributes
  and DataLink error texts; recorded real answers can be served as they are), with
  :class:`Fault` injection (:mod:`stardata.testing.faults`).
* :mod:`stardata.testing.archive`: the ADQL subset and the DataLink product writers it answers
  with.
"""

from stardata.testing.archive import XP_PRODUCT_COLUMNS, xp_files
from stardata.testing.fixtures import (
    COMBINED19_DISTMODS,
    real_xp_product,
    synthetic_gaia_source,
    synthetic_tmass,
    synthetic_xp,
    write_allstar,
    write_tiny_combined19,
)
from stardata.testing.server import Fault, MirrorServer

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
