"""Bundled and generated data sets."""

from pathlib import Path

CALIFORNIA = Path(__file__).parent / "california_housing.parquet"

__all__ = ["CALIFORNIA"]
