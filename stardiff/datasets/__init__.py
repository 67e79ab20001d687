"""Bundled and generated data sets.

- ``CALIFORNIA``: the California Housing table (Pace & Barry 1997; 20,640 rows, 9 columns),
  bundled as Parquet, used by the paper's Appendix A.
- :func:`synthetic_stars`: a toy stellar population whose every conditional density is
  known exactly (a ground truth for calibration checks).
"""

from pathlib import Path

from stardiff.datasets.synthetic import synthetic_stars, synthetic_stars_model

CALIFORNIA = Path(__file__).parent / "california_housing.parquet"

__all__ = ["CALIFORNIA", "synthetic_stars", "synthetic_stars_model"]
