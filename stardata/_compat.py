"""The old paths of modules that moved in 0.2.0 (see ``CHANGELOG.md``); they warn when used."""

from __future__ import annotations

from stardata.moved import MovedFinder

__all__ = ["MOVED", "install"]

MOVED: dict[str, tuple[str, ...]] = {
    "stardata.context": ("stardata.release.context",),
    "stardata.inputs": ("stardata.release.inputs",),
    "stardata.outputs": ("stardata.release.outputs",),
    "stardata.pipeline": ("stardata.release.pipeline",),
    "stardata.settings": ("stardata.release.settings",),
    "stardata.sources.errors": ("stardata.errors",),
    "stardata.stagecache": ("stardata.release.stagecache",),
}


def install() -> None:
    """Serve the old paths (once per process)."""
    MovedFinder(MOVED).install()
