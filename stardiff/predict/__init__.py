"""Per-row densities of whole tables: medians, robust stds, quantiles; streamed and resumable.

:func:`predict` (:mod:`.table`) takes an in-memory table or streams a Parquet file
(:mod:`.stream`, resumable after a kill); :func:`predict_catalog` (:mod:`.sky`) does the same
for a HATS catalogue, partition by partition on Dask. Both decide what the model sees in
:mod:`.windows` and compute the same statistics (:mod:`.statistics`). They need a model object
(``.sample``, ``.columns``), never how it was made.
"""

from stardiff.errors import PredictError
from stardiff.predict.sky import DEFAULT_QUANTILES, predict_catalog
from stardiff.predict.statistics import draw_statistics, statistics_columns
from stardiff.predict.table import predict
from stardiff.predict.windows import CHUNK

__all__ = [
    "CHUNK",
    "DEFAULT_QUANTILES",
    "PredictError",
    "draw_statistics",
    "predict",
    "predict_catalog",
    "statistics_columns",
]
