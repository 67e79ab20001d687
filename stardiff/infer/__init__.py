"""A trained model: load it, draw from its densities, summarize them, chain joint draws.

:class:`DensityModel` (:mod:`.density`) holds the network and its preprocessing; the given
values are checked (:mod:`.guards`) and encoded (:mod:`.inputs`) before sampling, and joint
draws are chained in bounded chunks (:mod:`.joint`). :func:`describe` summarizes a model folder.
"""

from stardiff.infer.density import DensityModel, load
from stardiff.infer.describe import describe
from stardiff.infer.guards import check_finite, column_ranges, warn_out_of_range
from stardiff.model import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS

__all__ = [
    "DEFAULT_SAMPLER",
    "DEFAULT_STEPS",
    "SAMPLERS",
    "DensityModel",
    "check_finite",
    "column_ranges",
    "describe",
    "load",
    "warn_out_of_range",
]
