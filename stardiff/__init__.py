"""stardiff: probability densities of any column of a table, given any subset of the others.

An encoder-only Transformer over (column, value) tokens with a denoising-diffusion head
(Leung, Bovy & Speagle 2024).

>>> import stardiff
>>> model = stardiff.fit("recipes/california.toml")          # doctest: +SKIP
>>> model.sample({"MedInc": 3.0}, "MedHouseVal", n=1000)       # doctest: +SKIP
"""

__version__ = "0.1.0"

from stardiff.describe import describe  # noqa: E402
from stardiff.evaluate import evaluate  # noqa: E402
from stardiff.infer import DensityModel, load  # noqa: E402
from stardiff.recipe import Recipe, RecipeError, load_recipe  # noqa: E402
from stardiff.train import fit  # noqa: E402

__all__ = [
    "DensityModel",
    "Recipe",
    "RecipeError",
    "describe",
    "evaluate",
    "fit",
    "load",
    "load_recipe",
    "__version__",
]
