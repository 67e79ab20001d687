"""The documentation site stays in step with the docs folder and the packages.

``mkdocs build --strict`` (in ``.ci/run``) is the full check; these are its cheap parts, run
without mkdocs: every page is in the nav and every nav entry is a page, every public face has an
API page, and every public name of the API pages has a docstring (the build's hook, run here).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Subpackages with no API page: the connectors to remote services (reached through
#: ``stardata.build`` and ``stardata.crossmatch``) and the local test archive.
NO_API_PAGE = {"stardata.sources", "stardata.testing"}


def _load(name: str) -> types.ModuleType:
    """A module of ``docs/hooks`` (not a package: mkdocs and mkdocstrings load them by path)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hook() -> types.ModuleType:
    return _load("check_api")


def _nav_pages(nav) -> list[str]:
    """Every page path of a mkdocs nav, depth first."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return [p for item in nav for p in _nav_pages(item)]


@pytest.fixture(scope="module")
def config() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page(config):
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), "a page is in the nav twice"
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - set(nav) == set(), "pages missing from mkdocs.yml's nav"
    assert set(nav) - pages == set(), "nav entries without a page in docs/"


def test_the_hooks_are_configured_and_not_published(config):
    assert "docs/hooks/check_api.py" in config["hooks"]
    assert "hooks/" in config["exclude_docs"]
    (mkdocstrings,) = [p["mkdocstrings"] for p in config["plugins"] if "mkdocstrings" in p]
    extensions = mkdocstrings["handlers"]["python"]["options"]["extensions"]
    assert "docs/hooks/docstrings.py:SphinxMarkup" in extensions
    for extension in extensions:
        if ".py:" in extension:
            assert (ROOT / extension.split(":")[0]).is_file(), extension


def test_each_api_page_renders_the_face_it_is_named_after(config):
    api = next(item["API reference"] for item in config["nav"] if "API reference" in item)
    hook = _hook()
    for entry in api:
        ((title, page),) = entry.items()
        assert page == f"api/{title}.md"
        text = (DOCS / page).read_text()
        assert f"\n::: {title}\n" in text, f"{page} does not render {title}"
        module = importlib.import_module(title)
        assert module.__all__, f"{title} has no __all__"
    # and no other page renders a module (a page for a face belongs in the API reference)
    assert set(hook.api_modules(DOCS)) == {title for entry in api for title in entry}


def test_every_public_face_has_an_api_page():
    listed = set(_hook().api_modules(DOCS))
    faces = {"stardiff", "stardata"}
    for package in ("stardiff", "stardata"):
        path = importlib.import_module(package).__path__
        faces |= {f"{package}.{m.name}" for m in pkgutil.iter_modules(path) if m.ispkg}
    assert faces - NO_API_PAGE - listed == set(), "subpackages without an API page"
    for module in ("errors", "recipe"):
        assert f"stardiff.{module}" in listed


def test_every_public_name_of_the_api_pages_has_a_docstring():
    assert _hook().check(DOCS) == []


def test_the_docstring_check_finds_what_is_missing(monkeypatch):
    hook = _hook()
    fake = types.ModuleType("stardiff_fake_face", "A face.")

    @dataclasses.dataclass
    class Plain:  # no docstring: the dataclass default "Plain(x: int)" does not count
        x: int

        def documented(self) -> None:
            """Documented."""

        def bare(self) -> None:
            pass

        @property
        def prop(self) -> int:
            return 1

        def _private(self) -> None:
            pass

    def function() -> None:
        pass

    Plain.__module__ = function.__module__ = "stardiff._fake"
    fake.Plain, fake.function, fake.VALUE = Plain, function, 3
    fake.__all__ = ["Plain", "VALUE", "function"]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    assert hook.undocumented(fake.__name__) == [
        "stardiff_fake_face.Plain",
        "stardiff_fake_face.Plain.bare",
        "stardiff_fake_face.Plain.prop",
        "stardiff_fake_face.function",
    ]


def test_the_rendered_check_accepts_an_anchor_or_a_link(monkeypatch):
    hook = _hook()
    fake = types.ModuleType("stardiff_fake_face", "A face.")
    fake.a = fake.b = fake.c = len
    fake.__all__ = ["a", "b", "c"]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    html = (
        '<h3 id="stardiff_fake_face.a">a</h3>'
        '<a href="x.html#where.b"><code>stardiff_fake_face.b</code></a>'
        "<code>stardiff_fake_face.c</code>"
    )
    assert hook.unrendered(fake.__name__, html) == ["stardiff_fake_face.c"]


def test_doctest_blocks_are_fenced():
    pytest.importorskip("griffe")
    fence = _load("docstrings").fence_doctests
    text = "Intro.\n\n    >>> f(1)  # doctest: +SKIP\n    2\n\nAfter.\n```\n>>> kept\n```"
    assert fence(text) == (
        "Intro.\n\n    ```pycon\n    >>> f(1)\n    2\n    ```\n\nAfter.\n```\n>>> kept\n```"
    )


def test_sphinx_roles_become_optional_cross_references():
    griffe = pytest.importorskip("griffe")
    markup = _load("docstrings")
    package = griffe.load(
        "stardiff",
        search_paths=[str(ROOT)],
        extensions=griffe.load_extensions(markup.SphinxMarkup),
    )
    text = package["infer"].docstring.value
    assert ":class:" not in text and ":mod:" not in text
    # a name in scope (an import), and a module relative to the package
    assert (
        '<autoref identifier="stardiff.infer.density.DensityModel" optional>'
        "<code>DensityModel</code></autoref>" in text
    )
    assert '<autoref identifier="stardiff.infer.guards" optional><code>guards</code>' in text
