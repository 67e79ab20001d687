"""A Griffe extension: the docstrings' reStructuredText habits as Markdown on the site.

The package's docstrings are numpydoc, written for Sphinx; mkdocstrings reads them as Markdown.
Two things would come out wrong, and this extension rewrites them before they are rendered:

- Sphinx roles (``:func:`fit```, ``:mod:`.rows```, ``:class:`~stardata.errors.BuildError```)
  would be printed as written. Each becomes an optional cross-reference: a link where the
  object is rendered on the site (an API page), else the name in code. The name is resolved the
  way Python would see it from the docstring's object (its members, its class, its module's
  definitions and imports), a leading dot relative to the module or its package; a dotted name
  is otherwise taken as a full path.
- Doctest blocks (``>>> ...`` up to a blank line) would be read as nested block quotes. Each
  becomes a fenced ``pycon`` code block, without its ``# doctest:`` directives.

Loaded through mkdocstrings' ``extensions`` option in ``mkdocs.yml``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|mod|func|meth|attr|data|exc|obj):"
    r"`(?:(?P<title>[^`<]+?)\s*<(?P<target>[^`>]+)>|(?P<plain>[^`]+))`"
)


_DOCTEST_DIRECTIVE = re.compile(r"\s*# doctest:.*$")


def fence_doctests(text: str) -> str:
    """Put every doctest block of a docstring (``>>>`` up to a blank line) in a code fence.

    Parameters
    ----------
    text : str
        A docstring.

    Returns
    -------
    str
        The docstring, each doctest block fenced as ``pycon`` at its own indentation and
        without its ``# doctest:`` directives; blocks already inside a fence are left alone.
    """
    lines, out, fenced, i = text.split("\n"), [], False, 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if stripped.startswith("```"):
            fenced = not fenced
        elif stripped.startswith(">>>") and not fenced:
            indent = lines[i][: len(lines[i]) - len(stripped)]
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(_DOCTEST_DIRECTIVE.sub("", lines[i]))
                i += 1
            out.append(f"{indent}```")
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def _exists(obj: griffe.Object, path: str) -> bool:
    """Whether ``path`` names an object that the loader knows."""
    try:
        obj.modules_collection[path]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path that a role's target names, seen from ``obj``'s docstring.

    Parameters
    ----------
    obj : griffe.Object
        The object whose docstring holds the role.
    target : str
        The role's target, without ``~`` and ``()``.

    Returns
    -------
    str or None
        The dotted path, or None when the name is neither in scope nor dotted.
    """
    if target.startswith("."):
        module = obj.module
        for base in (module.path, module.parent.path if module.parent else None):
            if base and _exists(obj, base + target):
                return base + target
        return None
    first, dot, rest = target.partition(".")
    try:
        path = obj.resolve(first)
    except griffe.NameResolutionError:
        return target if dot else None
    return f"{path}{dot}{rest}"


def reference(obj: griffe.Object, match: re.Match[str]) -> str:
    """The Markdown (inline HTML) for one role: an optional cross-reference, or code."""
    target = match["target"] or match["plain"]
    short = target.startswith("~")
    target = target.lstrip("~").removesuffix("()")
    title = match["title"] or (target.rsplit(".", 1)[-1] if short else target.lstrip("."))
    if (match["plain"] or "").endswith("()"):
        title += "()"
    code = f"<code>{html.escape(title)}</code>"
    path = resolve(obj, target)
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


class SphinxMarkup(griffe.Extension):
    """Rewrite a docstring's Sphinx roles and doctest blocks as Markdown (see the module)."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite one object's docstring, once its package is loaded.

        Parameters
        ----------
        obj : griffe.Object
            Any object (module, class, function, attribute).
        loader : griffe.GriffeLoader
            The loader (unused).
        **kwargs
            The rest of the event's arguments (unused).
        """
        if obj.docstring is None:
            return
        text = fence_doctests(obj.docstring.value)
        obj.docstring.value = _ROLE.sub(lambda m: reference(obj, m), text)
