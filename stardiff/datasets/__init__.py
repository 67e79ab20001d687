"""Bundled and generated data sets.

- ``CALIFORNIA``: the California Housing table (Pace & Barry 1997; 20,640 rows, 9 columns),
  bundled as Parquet, used by the paper's Appendix A.
- :func:`synthetic_stars`: a toy stellar population whose every conditional density is
  known exactly (a ground truth for calibration checks).
"""

from pathlib import Path

from stardiff.datasets.mixture import GaussianMixtureTable
from stardiff.datasets.synthetic import FIXED_COLUMNS, synthetic_stars, synthetic_stars_model
from stardiff.datasets.tasks import random_tasks

CALIFORNIA = Path(__file__).parent / "california_housing.parquet"

__all__ = [
    "CALIFORNIA",
    "FIXED_COLUMNS",
    "GaussianMixtureTable",
    "random_tasks",
    "synthetic_stars",
    "synthetic_stars_model",
]
