"""What every stage of a build shares: the :class:`Context`, and the records stages return.

A stage returns a small frozen record (:class:`StageRecord` and its kinds); the same record is
written as ``DATA_DIR/stages/<release>/<stage>.json`` beside the stage's Parquet file, holding
the key of the stage's inputs and settings and the file's size and SHA-256. A stage is reused
only when its key matches *and* its file still has the recorded hash (:meth:`Context.done`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, TypeVar

from stardata.io import read_json, sha256_file, write_json
from stardata.release.settings import Settings, Sources

__all__ = [
    "Context",
    "DerivedRecord",
    "InputRecord",
    "SelectRecord",
    "StageRecord",
]

log = logging.getLogger("stardata")


@dataclass(frozen=True)
class InputRecord:
    """One input of the build as the manifest lists it (URL, size, SHA-256)."""

    name: str
    url: str
    size: int
    sha256: str
    kind: str | None = None
    rows: int | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class StageRecord:
    """A finished stage: the key it was made from, its file's size and SHA-256, what it found.

    ``counts`` holds row counts for the manifest (treat it as read-only).
    """

    name: str
    key: str
    size: int
    sha256: str
    rows: int = 0
    url: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict):
        """The record from its JSON form; raises ``TypeError`` on a record of another shape.

        Fields missing from ``data`` take their defaults, so records written by an earlier
        version of this module (no ``name``, no ``counts``) stay readable.
        """
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - names:
            raise TypeError(f"not a {cls.__name__}")
        return cls(**{k: _tuples(v) if k in cls._TUPLES else v for k, v in data.items()})

    #: fields stored as JSON lists that the record holds as tuples
    _TUPLES: ClassVar[tuple[str, ...]] = ()


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


@dataclass(frozen=True)
class DerivedRecord(StageRecord):
    """The ``derived`` stage, with the APOGEE vs 2MASS J/H/K comparison."""

    photometry: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SelectRecord(StageRecord):
    """The ``select`` stage: XP percentile bounds and the rows each XP cut removed."""

    bounds_lo: tuple[float, ...] = ()
    bounds_hi: tuple[float, ...] = ()
    cuts: tuple[dict, ...] = ()

    _TUPLES = ("bounds_lo", "bounds_hi", "cuts")


R = TypeVar("R", bound=StageRecord)


@dataclass
class Context:
    """Everything a stage needs: where, which settings, which sources, and what happened."""

    release: str
    data_dir: Path
    s: Settings
    src: Sources
    offline: bool = False
    progress: bool = True
    inputs: list[InputRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: why each stage that was not reused was not (for offline messages and logs)
    stale: dict[str, str] = field(default_factory=dict)

    @property
    def stage_dir(self) -> Path:
        return self.data_dir / "stages" / self.release

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw" / self.release

    def cache_dir(self, name: str) -> Path:
        return self.data_dir / "cache" / self.release / name

    def remote(self) -> dict:
        """The retry policy every remote call of the build uses (from the settings)."""
        return {"retries": self.s.retries, "backoff": self.s.backoff, "timeout": self.s.timeout}

    def path(self, name: str) -> Path:
        return self.stage_dir / f"{name}.parquet"

    def record_path(self, name: str) -> Path:
        return self.stage_dir / f"{name}.json"

    def done(self, name: str, key: str, kind: type[R] = StageRecord) -> R | None:
        """The stage's record if its file exists, was made from ``key`` and is intact.

        A file whose size or SHA-256 differs from its record (a flipped byte, a truncated
        write) is not reused: the stage is recomputed, and ``stale[name]`` says why.
        """
        rec_path, path = self.record_path(name), self.path(name)
        if not rec_path.exists() or not path.exists():
            self.stale[name] = f"{path} is not built"
            return None
        try:
            rec = kind.from_json({"name": name, **read_json(rec_path)})
        except (ValueError, TypeError):
            self.stale[name] = f"{rec_path} is not a {kind.__name__} record"
            return None
        if rec.key != key:
            self.stale[name] = f"{path} was made from other inputs or settings"
            return None
        if path.stat().st_size != rec.size or sha256_file(path) != rec.sha256:
            self.stale[name] = f"{path} does not match the sha256 in {rec_path.name}"
            log.warning("stage %s: %s; recomputing it", name, self.stale[name])
            return None
        return rec

    def record(self, kind: type[R], name: str, key: str, **info) -> R:
        """Write the stage's record (key, size and SHA-256 of its file, and ``info``)."""
        p = self.path(name)
        rec = kind(name=name, key=key, size=p.stat().st_size, sha256=sha256_file(p), **info)
        write_json(self.record_path(name), rec.to_json())
        return rec

    def bar(self, iterable, desc: str, total: int | None = None):
        """``iterable`` with a progress bar (unless ``progress`` is off)."""
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=not self.progress, unit="block")
