"""Old import paths keep working for one release, with a DeprecationWarning where they moved."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import stardata._compat
import stardiff._compat


@pytest.mark.parametrize("old", [*stardiff._compat.MOVED, *stardata._compat.MOVED])
def test_a_moved_path_warns_and_serves_the_new_names(old, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to"):
        module = importlib.import_module(old)
    new = [importlib.import_module(t) for t in stardiff._compat.MOVED.get(old, ())] or [
        importlib.import_module(t) for t in stardata._compat.MOVED[old]
    ]
    names = [n for m in new for n in getattr(m, "__all__", ())]
    assert names, old
    for name in names:
        if (old, name) in stardiff._compat.CHANGED:  # a wrapper taking the old arguments
            continue
        assert getattr(module, name) is next(getattr(m, name) for m in new if hasattr(m, name))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018


def test_paths_users_already_use_work_without_a_warning():
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import stardiff, stardiff.infer, stardiff.predict\n"
        "from stardata.crossmatch import crossmatch\n"
        "from stardata.release import build, verify\n"
        "assert stardiff.load is stardiff.infer.load\n"
        "assert callable(stardiff.predict.predict) and callable(stardiff.fit)\n"
        "assert callable(crossmatch) and callable(build) and callable(verify)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_old_predict_catalog_still_takes_a_folder(monkeypatch):
    seen = {}
    monkeypatch.setattr("stardiff.infer.load", lambda folder: seen.setdefault("loaded", folder))
    monkeypatch.setattr("stardiff.predict.predict_catalog", lambda model, *a, **k: (model, a, k))
    monkeypatch.delitem(sys.modules, "stardiff.sky", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import stardiff.sky

    got = stardiff.sky.predict_catalog("runs/m", "cat", ["teff"], "out", n=5)
    assert seen["loaded"] == "runs/m"
    assert got == ("runs/m", ("cat", ["teff"], "out"), {"n": 5})
