"""The rooms of stardiff import each other in one direction only, and only through faces.

Every import counts, those inside functions too. A *room* is a subpackage (``model``,
``train``, ``infer``, ``predict``, ``evaluate``, ``persist``, ``datasets``); a *leaf* is a
top-level module that several rooms share. Rooms import each other only through their face
(``from stardiff.infer import load``, never ``stardiff.infer.density``); no module imports a
private name (``_x``) of another module; nothing imports ``cli``; no import circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stardiff

ROOT = Path(stardiff.__file__).parent

#: What each room or leaf may import of stardiff (besides itself). ``_compat`` (the old import
#: paths) and the package face may import anything.
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "errors": set(),
    "devices": set(),
    "metrics": set(),
    "transforms": {"errors"},
    "uncertainty": set(),  # numpy only: the inputs' errors as features
    "recipe": {"errors", "transforms"},
    "tables": {"errors", "uncertainty"},
    "figures": {"persist", "tables"},
    "model": set(),  # torch and itself only
    "datasets": {"metrics"},
    "persist": {"errors"},
    "infer": {"_version", "devices", "errors", "model", "persist", "predict", "transforms",
              "uncertainty"},
    "predict": {"errors", "model"},
    "train": {"devices", "errors", "figures", "infer", "model", "persist", "recipe", "tables",
              "transforms", "uncertainty"},
    "evaluate": {"datasets", "errors", "figures", "infer", "metrics", "persist", "recipe",
                 "tables"},
    "cli": {"errors", "evaluate", "infer", "model", "predict", "recipe", "tables", "train"},
    "__main__": {"cli"},
}  # fmt: skip
ROOMS = {"model", "train", "infer", "predict", "evaluate", "persist", "datasets"}
#: stardata modules each may use (model/ none: it is torch only).
STARDATA = {"model": set()}


def _room(path: Path) -> str:
    return path.relative_to(ROOT).with_suffix("").parts[0]


def _imports(path: Path):
    """(module imported, names imported, line) for every import of stardiff/stardata."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT and path.name in ("__init__.py", "_compat.py"):
            continue
        yield path, _room(path)


def test_every_module_has_a_place():
    assert {room for _, room in _modules()} <= set(ALLOWED)


def test_rooms_import_downward_only_and_through_faces():
    wrong = []
    for path, me in _modules():
        where = path.relative_to(ROOT)
        for module, names, line in _imports(path):
            parts = module.split(".")
            if parts[0] == "stardata" and me in STARDATA:
                wrong.append(f"{where}:{line} imports {module} ({me}/ imports no stardata)")
            if parts[0] != "stardiff":
                continue
            targets = [parts[1]] if len(parts) > 1 else names  # "from stardiff import persist"
            for target in targets:
                if target == me:
                    continue
                if target not in ALLOWED[me]:
                    wrong.append(f"{where}:{line} imports stardiff.{target}")
                elif target in ROOMS and len(parts) > 2:
                    wrong.append(f"{where}:{line} imports {module}, not the face stardiff.{target}")
    assert wrong == []


def test_no_private_name_crosses_modules():
    wrong = []
    for path, _ in _modules():
        for module, names, line in _imports(path):
            if module.startswith(("stardiff", "stardata")):
                wrong += [
                    f"{path.relative_to(ROOT)}:{line} {module}.{n}"
                    for n in names
                    if n.startswith("_") and not n.startswith("__")
                ]
    assert wrong == []


def test_no_import_circle_between_rooms():
    """The allowed graph itself has no cycle (so the code cannot have one between rooms)."""
    done = set()

    def visit(node, stack):
        assert node not in stack, " -> ".join([*stack, node])
        if node in done:
            return
        for nxt in ALLOWED.get(node, ()):
            visit(nxt, [*stack, node])
        done.add(node)

    for node in ALLOWED:
        visit(node, [])


def test_faces_only_re_export():
    """Each subpackage's ``__init__`` imports and lists names, and defines nothing."""
    wrong = []
    for init in sorted(ROOT.glob("*/__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        for node in tree.body:
            ok = isinstance(node, ast.Import | ast.ImportFrom) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            )
            ok = ok or (
                isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] in (["__all__"], ["CALIFORNIA"])
            )
            if not ok:
                wrong.append(f"{init.relative_to(ROOT)}:{node.lineno}")
        names = {
            a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
        }
        exported = next(
            (ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
             and [getattr(t, "id", None) for t in n.targets] == ["__all__"]), None
        )  # fmt: skip
        assert exported is not None, f"{init} has no __all__"
        assert set(exported) <= names | {"CALIFORNIA"}, init
    assert wrong == []
