"""The build core: a release's settings, stages, stage cache, outputs and manifest.

:func:`build` runs the stages (:mod:`.pipeline`: :mod:`.inputs` → derived columns → cuts →
:mod:`.outputs`) under a folder lock, each stage cached and resumable (:mod:`.stagecache`,
:mod:`.context`), with every setting in one typed place (:mod:`.settings`); :func:`verify`
checks a built release against its manifest; :func:`read_table` reads it back.
"""

from stardata.release.runner import MANIFEST_VERSION, build, package_versions, read_table, verify
from stardata.release.settings import RELEASES, VOCABULARY, Settings, Sources

__all__ = [
    "MANIFEST_VERSION",
    "RELEASES",
    "VOCABULARY",
    "Settings",
    "Sources",
    "build",
    "package_versions",
    "read_table",
    "verify",
]
