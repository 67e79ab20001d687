"""Old import paths kept for one release: importing one warns and serves the new module(s).

A package lists its moved modules (old name → new module names) and installs one
:class:`MovedFinder` on ``sys.meta_path``. ``import old.path`` then raises a
``DeprecationWarning`` naming the new path and returns a module whose attributes are looked up
in the new modules, in order (a module split in two lists both). Names whose signature changed
can be served by a wrapper that accepts the old arguments. Nothing is imported until an old
path is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Mapping

__all__ = ["MovedFinder"]


class _MovedModule(types.ModuleType):
    """A moved module: attributes come from the wrappers, then from the new module(s)."""

    def __init__(self, name: str, targets: tuple[str, ...], wrappers: Mapping[str, Callable]):
        super().__init__(name, f"Moved to {', '.join(targets)}.")
        self._targets = targets
        self._wrappers = dict(wrappers)

    def __getattr__(self, attr: str):
        if attr in self._wrappers:
            return self._wrappers[attr]
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self):
        names = set(self._wrappers)
        for target in self._targets:
            names |= set(getattr(importlib.import_module(target), "__all__", ()))
        return sorted(names)


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serve the old module paths of ``moved``, warning on first import.

    Parameters
    ----------
    moved : mapping of str to tuple of str
        Old module name → the module(s) its names now live in, searched in order.
    wrappers : mapping of (str, str) to callable, optional
        ``(old module, name)`` → a function that takes the old arguments (for a name whose
        signature changed when it moved).
    """

    def __init__(self, moved: Mapping[str, tuple[str, ...]], wrappers=None):
        self.moved = dict(moved)
        self.wrappers = dict(wrappers or {})

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.moved:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        targets = self.moved[spec.name]
        warnings.warn(
            f"{spec.name} moved to {' and '.join(targets)}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        mine = {name: f for (old, name), f in self.wrappers.items() if old == spec.name}
        return _MovedModule(spec.name, targets, mine)

    def exec_module(self, module):
        pass

    def install(self) -> MovedFinder:
        """Put this finder on ``sys.meta_path`` unless one for the same paths is there."""
        if not any(isinstance(f, MovedFinder) and f.moved == self.moved for f in sys.meta_path):
            sys.meta_path.append(self)
        return self
