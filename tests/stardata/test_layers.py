"""stardata imports one way only; the build core at module level (no hidden cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

import stardata

ROOT = Path(stardata.__file__).parent
#: Lowest first: a module may import only modules before it (``sources`` and ``testing`` are
#: packages; ``testing`` serves the tests and benchmarks and no library module imports it).
ORDER = [
    "errors", "numbers", "cliargs", "moved", "_compat", "locks", "io", "outpaths", "tables",
    "hats", "columns", "split", "tokens", "cuts", "sources", "derive", "release", "crossmatch",
    "cli", "testing",
]  # fmt: skip
CORE = {"release"}  # the build core: settings, context, stage cache, inputs, outputs, pipeline


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(stardata submodule imported, whether at module level) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "stardata":
                names = [a.name for a in node.names]
            elif node.module.startswith("stardata."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("stardata.")]
        found += [(n, id(node) in top) for n in names]
    return found


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def test_every_module_has_a_place_in_the_order():
    names = {_module(p) for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT}
    assert names <= set(ORDER), names - set(ORDER)


def test_imports_go_down_only_and_the_core_imports_at_module_level():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT and path.name == "__init__.py":
            continue  # the package's lazy public API
        me = _module(path)
        for name, at_top in _imports(path):
            if name == me:
                continue  # inside one package (sources, testing)
            if name not in ORDER or ORDER.index(name) >= ORDER.index(me):
                wrong.append(f"{path.relative_to(ROOT)} imports stardata.{name} (upward)")
            elif me in CORE and not at_top:
                wrong.append(f"{path.relative_to(ROOT)} imports stardata.{name} in a function")
    assert wrong == []


def test_no_private_name_crosses_modules():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stardata"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                private = [n for n in private if not n.startswith("__") and n != "_compat"]
                wrong += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{n}" for n in private
                ]
    assert wrong == []
