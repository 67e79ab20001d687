"""A snapshot of a folder tree, for tests that check that nothing outside an output changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with its content hash (folders: "dir"; links: their target)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = f"link:{os.readlink(p)}"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
