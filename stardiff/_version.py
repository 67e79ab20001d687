"""The package version, importable from any module (the package face imports everything)."""

__version__ = "0.1.0"
