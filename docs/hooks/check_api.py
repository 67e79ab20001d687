"""A mkdocs hook: the build fails while a public name of the API reference is undocumented.

``mkdocs build --strict`` fails on warnings, but a public function without a docstring is no
warning to mkdocstrings (it is rendered as a bare signature), nor is a name of ``__all__`` that
it cannot find in the source (it is left out). This hook closes both gaps, each with one
``PluginError`` that names every object at fault:

- before the build (:func:`on_pre_build`), it finds every ``::: module`` directive in the
  pages, imports each module, and checks that the module, and every function, class or module
  named in its ``__all__`` (re-exports included), has a docstring of its own; for a class, so
  must each public method and property defined in ``stardiff`` or ``stardata`` (inherited ones
  included, those of ``torch`` or the standard library not). The dataclass default
  (``Name(field: type, ...)``) does not count. Constants are not checked.
- as each page is rendered (:func:`on_page_content`), every name of the ``__all__`` of each
  module the page renders must be on it: rendered in place, or linked to where it is documented.

``tests/test_docs_site.py`` runs the first check without mkdocs.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

#: The packages whose classes' methods must be documented (inherited methods of other
#: packages' base classes, ``torch.nn.Module`` say, are theirs to document).
OWN_PACKAGES = ("stardiff", "stardata")

_DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


def _module(name: str) -> ModuleType | None:
    """The module of a ``:::`` directive's dotted name, or None for a function or class."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        # "No module named 'a.b.f'; 'a.b' is not a package": f may be a function or class
        if error.name == name and "." in name:
            parent = _module(name.rsplit(".", 1)[0])
            if parent is not None and hasattr(parent, name.rsplit(".", 1)[1]):
                return None
        raise


def api_modules(docs_dir: str | Path) -> list[str]:
    """The modules that the pages of a docs folder render with ``::: module``.

    A directive that names a function or class (``::: package.module.function``) is skipped:
    the module it is in is what :func:`undocumented` checks.

    Parameters
    ----------
    docs_dir : str or Path
        The docs folder; every ``*.md`` file under it is read.

    Returns
    -------
    list of str
        The dotted module names, each once, in the order of the pages' paths.
    """
    names: dict[str, None] = {}
    for page in sorted(Path(docs_dir).rglob("*.md")):
        for name in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            if _module(name) is not None:
                names[name] = None
    return list(names)


def _own_doc(obj: Any) -> str:
    """The docstring an object defines itself (a class's is not inherited), stripped."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        # dataclasses and named tuples fill in "Name(field, ...)" when there is no docstring
        if re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc.strip(), flags=re.DOTALL):
            return ""
        return doc.strip()
    if isinstance(obj, property):
        return (obj.__doc__ or "").strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def _methods(cls: type) -> Iterable[tuple[str, Any]]:
    """The public methods and properties of a class defined in :data:`OWN_PACKAGES`."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] not in OWN_PACKAGES:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                seen.add(name)
                yield name, value


def undocumented(module_name: str) -> list[str]:
    """The public objects of a module that have no docstring.

    Parameters
    ----------
    module_name : str
        A dotted module name, e.g. ``"stardiff.infer"``; it is imported.

    Returns
    -------
    list of str
        The dotted path of each undocumented object: the module itself, a function, class or
        module in its ``__all__``, or a public method or property of such a class. A module
        without ``__all__`` is reported as such.
    """
    module = importlib.import_module(module_name)
    missing = [] if _own_doc(module) else [f"{module_name} (module)"]
    names = getattr(module, "__all__", None)
    if names is None:
        return [*missing, f"{module_name}.__all__ (missing: the API page lists no names)"]
    for name in names:
        obj = getattr(module, name)
        path = f"{module_name}.{name}"
        if not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)):
            continue  # a constant: documented in the module's docstring or beside it
        if not _own_doc(obj):
            missing.append(path)
        if inspect.isclass(obj):
            missing += [f"{path}.{m}" for m, member in _methods(obj) if not _own_doc(member)]
    return missing


def check(docs_dir: str | Path) -> list[str]:
    """Every undocumented public object of every module rendered under ``docs_dir``.

    Parameters
    ----------
    docs_dir : str or Path
        The docs folder.

    Returns
    -------
    list of str
        Dotted paths, each once; empty when everything is documented. An object re-exported
        by several modules (``stardiff.DensityModel`` and ``stardiff.infer.DensityModel``) is
        named under each.
    """
    found: dict[str, None] = {}
    for module_name in api_modules(docs_dir):
        for path in undocumented(module_name):
            found[path] = None
    return list(found)


def unrendered(module_name: str, html: str) -> list[str]:
    """The names of a module's ``__all__`` that a rendered API page neither shows nor links.

    A name counts as shown when the page has its anchor (``id="module.name"``, what
    mkdocstrings writes for each member it renders) and as linked when the page links to where
    it is documented with the name as the link's text (``[`module.name`][where.it.is]``): the
    way out for a name the reference cannot render in place, such as a function that shares
    its name with a submodule, or a name a module loads on first use.

    Parameters
    ----------
    module_name : str
        The module that the page renders with ``::: module_name``.
    html : str
        The page's HTML, before or after cross-references are resolved.

    Returns
    -------
    list of str
        The dotted path of each name missing from the page.
    """
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", ()):
        path = f"{module_name}.{name}"
        anchor = f'id="{path}"'
        link = re.compile(rf"<(a|autoref)\b[^>]*>\s*<code>{re.escape(path)}</code>\s*</\1>")
        if anchor not in html and not link.search(html):
            missing.append(path)
    return missing


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """The mkdocs hook: fail the build when an API page leaves out a name of ``__all__``.

    Parameters
    ----------
    html : str
        The page's HTML.
    page : mkdocs.structure.pages.Page
        The page (its Markdown is searched for ``::: module`` directives).
    **kwargs
        The rest of the event's arguments (unused).

    Returns
    -------
    str
        ``html``, unchanged.

    Raises
    ------
    mkdocs.exceptions.PluginError
        Naming every name of ``__all__`` that the page neither renders nor links.
    """
    from mkdocs.exceptions import PluginError

    missing = []
    for name in dict.fromkeys(_DIRECTIVE.findall(page.markdown or "")):
        if _module(name) is not None:
            missing += unrendered(name, html)
    if missing:
        raise PluginError(
            f"{page.file.src_uri}: {len(missing)} public name(s) are neither rendered nor "
            "linked (mkdocstrings could not resolve them; link them where they are "
            "documented):\n  " + "\n  ".join(missing)
        )
    return html


def on_pre_build(config: Any) -> None:
    """The mkdocs hook: fail the build when :func:`check` finds anything.

    Parameters
    ----------
    config : mkdocs.config.defaults.MkDocsConfig
        The site's configuration (``docs_dir`` is read).

    Raises
    ------
    mkdocs.exceptions.PluginError
        Naming every undocumented public object.
    """
    from mkdocs.exceptions import PluginError

    missing = check(config["docs_dir"])
    if missing:
        raise PluginError(
            f"{len(missing)} public name(s) of the API reference have no docstring:\n  "
            + "\n  ".join(missing)
        )
