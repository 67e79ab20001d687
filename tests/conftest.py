"""Settings of the whole suite for parallel runs (``python -m pytest -q -n auto``).

- One thread per test process: pytest-xdist runs one worker per core, and torch processes
  with several OpenMP threads each on the same cores slow down 10-40× (the threads spin while
  they wait for each other). The workers, and every process a test starts, inherit
  ``OMP_NUM_THREADS=1`` (and the BLAS libraries' equivalents).
- A costly fixture is built once: the tests of a module that defines a module-scoped fixture
  run in one worker, and so do the tests that take a costly session fixture (:data:`SHARED`);
  other tests go one by one to whichever worker is free (:class:`SharedFixtureScheduling`).
- The long work starts first, so that no worker is left alone with it at the end: the tests
  of :data:`SLOW` and of :data:`SHARED`, then the modules' shared units, then the rest.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

#: Session fixtures too costly to build once per worker: the tests that take one run in one
#: worker (``bimodal_model`` trains for 40 epochs, ~13 s on one core).
SHARED = ("bimodal_model",)
#: Tests that run long by themselves (one compiles with inductor, ~30 s without a warm cache;
#: the others start processes): scheduled first.
SLOW = (
    "tests/stardiff/test_gpu_script.py::test_gpu_script_runs_on_cpu_and_prints_a_record",
    "tests/stardiff/test_train.py::test_compiled_training_matches_eager_on_cpu",
    "tests/stardiff/test_distributed.py::test_two_ranks_match_one_process_with_double_batch",
)
#: Thread pools of OpenMP and of the BLAS libraries numpy and torch may use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
TESTS = Path(__file__).resolve().parent


def _parallel(config: pytest.Config) -> bool:
    """Whether this run has xdist workers (``-n N``/``-n auto``, not ``-n 0``), or this process
    is one."""
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) or "PYTEST_XDIST_WORKER" in os.environ


def pytest_configure(config: pytest.Config) -> None:
    if not _parallel(config):
        return
    for name in THREAD_VARIABLES:  # before the workers start: they and their children inherit
        os.environ[name] = "1"
    if "PYTEST_XDIST_WORKER" in os.environ:
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: the long work first (see the module's docstring). Every worker
    sorts the same way, and the scheduler keeps this order."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    modules, shared = _work_units(config.rootpath, TESTS)

    def rank(item: pytest.Item) -> int:
        function = item.nodeid.split("[", 1)[0]
        if function in SLOW or function in shared:
            return 0
        return 1 if item.nodeid.split("::", 1)[0] in modules else 2

    items[:] = [item for _, item in sorted(enumerate(items), key=lambda x: (rank(x[1]), x[0]))]


def _work_units(root: Path, tests: Path) -> tuple[set[str], dict[str, str]]:
    """From the test files' source: the modules that define a module-scoped fixture (as node
    ids, relative to ``root``), and the test functions that take a :data:`SHARED` fixture
    (``module::name`` → the fixture)."""
    modules, shared = set(), {}
    for path in sorted(tests.rglob("test_*.py")):
        module = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                scope = [k.value for k in getattr(deco, "keywords", []) if k.arg == "scope"]
                if any(isinstance(s, ast.Constant) and s.value == "module" for s in scope):
                    modules.add(module)
            args = {a.arg for a in node.args.args}
            for name in SHARED:
                if node.name.startswith("test") and name in args:
                    shared[f"{module}::{node.name}"] = name
    return modules, shared


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With ``-n`` (and the default ``--dist load``): :class:`SharedFixtureScheduling`."""
    if config.getvalue("dist") != "load":
        return None  # another --dist asked for: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the workers' order (long work first) stands

    class SharedFixtureScheduling(LoadScopeScheduling):
        """Load scheduling in which a work unit is a module that defines a module-scoped
        fixture, or the tests that take one :data:`SHARED` fixture, or else one test.

        (xdist's ``--dist loadgroup`` would do this with ``xdist_group`` marks, but it names
        the groups by editing node ids, which pytest 9.2 no longer allows.) Units go in the
        order the workers collected them: the long work first.
        """

        def __init__(self, config, log=None):
            super().__init__(config, log)
            self.modules, self.shared = _work_units(config.rootpath, TESTS)

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            function = nodeid.split("[", 1)[0]
            if function in self.shared:
                return self.shared[function]
            return module if module in self.modules else nodeid

    return SharedFixtureScheduling(config, log)
