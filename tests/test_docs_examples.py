"""Every code example in README.md and docs/*.md runs, or says why it cannot run here.

Each ``python`` and ``bash`` block is found in the pages and looked up in :data:`PLAN` by its
page and first line: run as written in a sandbox folder that holds what the example names
(a California model in ``runs/california``, ``my_rows.parquet``, ...); run after listed
substitutions that only shrink it to seconds (fewer epochs, rows or draws); or skipped with the
reason (the network, a GPU, the set-up itself). A new example that is in no plan fails
:func:`test_every_example_has_a_plan`, so none goes untested silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SMALL_EVAL = " --rows 40 --samples 20 --tasks 40"

NETWORK = "needs the public archives (network); the same code runs offline in tests/stardata"
#: (page, first line) → ("run", {old: new substitutions}) or ("skip", reason).
PLAN: dict[tuple[str, str], tuple[str, object]] = {
    ("README.md", "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0"
     ' && pip install -e ".[test]" && python -m pytest -q -n auto'):
        ("skip", "the set-up and test command itself: .ci/run runs it on every landing"),
    ("README.md", ". .venv/bin/activate && stardiff fit recipes/california.toml"):
        ("skip", "the main command (minutes); the sandbox's model is the same command with "
                 "--epochs 1"),
    ("README.md", "import stardiff"): ("run", {}),
    ("README.md", "stardiff sample runs/california --given MedInc=3.0 HouseAge=20 --request "
                  "MedHouseVal -n 1000 --out draws.parquet"):
        ("run", {
            "--out runs/california/eval": "--out runs/california/eval" + SMALL_EVAL,
            # resuming a finished 1-epoch run would train the recipe's other 255 epochs
            "stardiff fit recipes/california.toml --resume": "stardiff info runs/california",
        }),
    ("README.md", "stardata build --release dr17             # writes data/dr17/; needs network "
                  "(cache: data/cache)"):
        ("skip", NETWORK + "; the paper's recipes need its release (and a GPU for xp_apogee)"),
    ("README.md", '. .venv/bin/activate && pip install -e ".[docs]"'):
        ("skip", ".ci/run installs the docs extra and runs mkdocs build --strict"),
    ("docs/crossmatch.md", ">>> from stardata.crossmatch import crossmatch"):
        ("skip", "a transcript printed by docs/tutorial_crossmatch.py against the local test "
                 "archive (2 minutes: run it by hand after changing the crossmatch)"),
    ("docs/crossmatch.md", "crossmatch(catalog, *, source_id=None, ra=None, dec=None, "
                           "epoch=None, radius=1.0,"):
        ("skip", "the function's signature, not a call"),
    ("docs/crossmatch.md", "stardiff predict MODEL TABLE.parquet --request teff logg m_h "
                           "[-n 200] [--quantiles 0.16 0.5 0.84] \\"):
        ("skip", "a synopsis with placeholders; the next example runs the same call"),
    ("docs/crossmatch.md", "import stardiff"): ("run", {}),
    ("docs/crossmatch.md", 'crossmatch("my_labelled_stars.csv", ra="ra", dec="dec", '
                           'epoch=2000.0, out="xm")'):
        ("skip", NETWORK),
    ("docs/crossmatch.md", "stardiff fit recipes/custom_labels.toml      # reads "
                           "../xm/crossmatch.parquet"):
        ("skip", "needs a crossmatch of labelled stars against the archives (network)"),
    ("docs/evaluate.md", "stardiff evaluate MODEL --table TABLE [--split test] --out DIR"):
        ("skip", "a synopsis with placeholders; the examples below run it"),
    ("docs/evaluate.md", "from stardiff.evaluate import evaluate"):
        ("run", {'out_dir="runs/california/eval",':
                 'out_dir="runs/california/eval", rows=40, samples=20, tasks=40,'}),
    # runs/california already holds the README's evaluation, so a refit there is refused (as
    # it should be: the folder holds files fit did not write); this one fits beside it
    ("docs/evaluate.md", "stardiff fit recipes/california.toml"):
        ("run", {"stardiff fit recipes/california.toml":
                 "stardiff fit recipes/california.toml --epochs 1 --out runs/refit --quiet",
                 "stardiff evaluate runs/california": "stardiff evaluate runs/refit",
                 "--out runs/california/eval": "--out runs/refit/eval" + SMALL_EVAL}),
    ("docs/evaluate.md", 'python -c "from stardiff.datasets.synthetic import synthetic_stars; '
                         "synthetic_stars(20000, seed=0, n_spectrum=8).write_parquet("
                         "'synth.parquet')\""):
        ("run", {"20000": "3000", "test_rows = 2000": "test_rows = 300",
                 "epochs = 16": "epochs = 1",
                 "--out runs/synth/eval": "--out runs/synth/eval" + SMALL_EVAL}),
    ("docs/index.md", "# set up and run the tests (CPU only; one worker per core)"):
        ("skip", "the README's two commands (see above)"),
    ("docs/sky.md", 'pip install -e ".[hats]"     # lsdb, hats, hats-import, dask[distributed]; '
                    "the core needs none"):
        ("skip", ".ci/run installs the [hats] extra"),
    ("docs/sky.md", "stardata build --release dr17 --format hats       # adds "
                    "data/dr17/stars_hats/"):
        ("skip", NETWORK + " (tests/stardata/test_release.py builds --format hats offline)"),
    ("docs/sky.md", "from stardata.hats import write_hats"):
        ("skip", "tests/stardiff/test_sky.py and test_crossmatch_hats.py call write_hats so "
                 "(16 s here)"),
    ("docs/sky.md", "import lsdb, polars as pl"):
        ("skip", "opens a built release's stars_hats (network); test_release.py opens one"),
    ("docs/sky.md", "from stardata.crossmatch import crossmatch"):
        ("skip", "needs a HATS Gaia DR3 (tests/stardata/test_crossmatch_hats.py uses a local one)"),
    ("docs/sky.md", "import stardiff"):
        ("skip", "needs the paper's model and a built stars_hats; tests/stardiff/test_sky.py "
                 "runs predict_catalog on a local HATS catalogue"),
    ("docs/stardata.md", "stardata build --release dr17                  # writes data/dr17/, "
                         "caches inputs in data/cache/"):
        ("skip", NETWORK + " (tests/stardata/test_cli.py builds and verifies against the local "
                 "test archive)"),
}  # fmt: skip


def _blocks():
    """(page, first line, language, text) of every python and bash block, in page order."""
    for page in PAGES:
        rel = page.relative_to(ROOT).as_posix()
        for lang, text in re.findall(r"```(\w*)\n(.*?)```", page.read_text(), re.S):
            if lang in ("python", "bash"):
                yield rel, text.splitlines()[0], lang, text


BLOCKS = list(_blocks())


def test_every_example_has_a_plan():
    missing = [(page, first) for page, first, _, _ in BLOCKS if (page, first) not in PLAN]
    assert missing == [], "add these examples to PLAN (run them, or say why not)"
    stale = set(PLAN) - {(page, first) for page, first, _, _ in BLOCKS}
    assert stale == set(), "PLAN names examples the pages no longer have"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A folder like the repository's root holding what the examples name: recipes, the
    package (and so the bundled table), a 1-epoch
    California model in runs/california, a small synthetic-stars model in runs/xp_apogee and
    its crossmatch-like table in xm/, and my_rows.parquet."""
    from stardiff.datasets import CALIFORNIA
    from stardiff.datasets.synthetic import synthetic_stars
    from stardiff.train import fit

    root = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "recipes", root / "recipes")
    # the examples run from the repository's root: stardiff/ there is the package itself
    (root / "stardiff").symlink_to(ROOT / "stardiff", target_is_directory=True)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        fit("recipes/california.toml", out="runs/california", epochs=1, progress=False)
        stars = synthetic_stars(1500, seed=0, n_spectrum=0)
        stars.write_parquet("stars.parquet")
        (root / "xp.toml").write_text(
            'name = "xp"\n[data]\ntable = "stars.parquet"\n'
            '[train]\nepochs = 1\ncontext = 6\nout = "runs/xp_apogee"\n'
        )
        fit("xp.toml", out="runs/xp_apogee", progress=False, figures=False)
    finally:
        os.chdir(cwd)
    (root / "xm").mkdir()
    stars.head(200).with_row_index("name").write_parquet(root / "xm" / "crossmatch.parquet")
    pl.read_parquet(CALIFORNIA).head(50).write_parquet(root / "my_rows.parquet")
    return root, stars


def _substituted(text: str, subs: dict) -> str:
    for old, new in subs.items():
        assert old in text, f"substitution {old!r} no longer matches the example"
        text = text.replace(old, new)
    return text


def _run_bash(text: str, cwd: Path) -> None:
    """A block of CLI lines in process (fast), any other block in bash (as a shell runs it)."""
    lines = [ln.split("  #")[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if all(ln.split()[0] in ("stardiff", "stardata") for ln in lines):
        from stardata.cli import main as stardata_main
        from stardiff.cli import main as stardiff_main

        for ln in lines:
            argv = shlex.split(ln)
            main = stardiff_main if argv[0] == "stardiff" else stardata_main
            assert main(argv[1:]) == 0, ln
        return
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["bash", "-e", "-c", text], cwd=cwd, env=env, check=True)


@pytest.mark.parametrize(
    "page, first, lang, text",
    [b for b in BLOCKS if PLAN.get(b[:2], ("skip",))[0] == "run"],
    ids=[f"{b[0]}:{b[1][:40]}" for b in BLOCKS if PLAN.get(b[:2], ("skip",))[0] == "run"],
)
def test_example_runs(page, first, lang, text, sandbox, monkeypatch):
    root, stars = sandbox
    text = _substituted(text, PLAN[page, first][1])
    monkeypatch.chdir(root)
    if lang == "bash":
        _run_bash(text, root)
        return
    namespace = {"polars_frame": stars.head(100), "__name__": "__docs__"}
    exec(compile(text, f"{page}:{first}", "exec"), namespace)  # noqa: S102
