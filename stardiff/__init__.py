"""stardiff: probability densities of any column of a table, given any subset of the others.

An encoder-only Transformer over (column, value) tokens with a denoising-diffusion head
(Leung, Bovy & Speagle 2024).

>>> import stardiff
>>> model = stardiff.fit("recipes/california.toml")          # doctest: +SKIP
>>> model.sample({"MedInc": 3.0}, "MedHouseVal", n=1000)       # doctest: +SKIP

The package is grouped by room: ``model`` (network and samplers), ``train``, ``infer``
(``DensityModel``), ``predict`` (whole tables and HATS catalogues), ``evaluate``, ``persist``
(files and model folders) and ``datasets``; ``errors`` holds every user-facing error.
"""

from stardiff import _compat
from stardiff._version import __version__
from stardiff.errors import RecipeError
from stardiff.evaluate import evaluate
from stardiff.infer import DensityModel, describe, load
from stardiff.recipe import Recipe, load_recipe
from stardiff.train import fit

_compat.install()

__all__ = [
    "DensityModel",
    "Recipe",
    "RecipeError",
    "__version__",
    "describe",
    "evaluate",
    "fit",
    "load",
    "load_recipe",
]
