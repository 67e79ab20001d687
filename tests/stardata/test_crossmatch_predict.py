"""From a catalogue to label densities, and from a labelled catalogue to a trained model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import stardata
from stardata.crossmatch import crossmatch
from stardata.testing import MirrorServer, write_tiny_combined19
from tests.stardata.crossmatch_fixtures import IDS, archive_tables, catalogue
from tests.stardiff.conftest import TINY_MODEL

COLUMNS = ["bprp", "jh", "jk", "g_fakemag", "teff", "logg", "m_h"]


def _labelled(cat: pl.DataFrame) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return cat.with_columns(
        pl.Series("teff", rng.uniform(4000, 6500, cat.height)),
        pl.Series("logg", rng.uniform(1.0, 4.8, cat.height)),
        pl.Series("m_h", rng.normal(-0.2, 0.3, cat.height)),
        pl.Series("mass", rng.lognormal(0.0, 0.3, cat.height)),
    )


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xm")
    tables, xp = archive_tables()
    write_tiny_combined19(tmp / "dust")
    with MirrorServer(tables=tables, xp=xp) as server:
        src = stardata.Sources(
            gaia_tap_url=server.tap_url,
            gaia_datalink_url=server.datalink_url,
            dust_dir=str(tmp / "dust"),
        )
        yield tmp, src, tables["gaiadr3.gaia_source"]


def _crossmatch(sky, catalog, name: str, **kw):
    tmp, src, _ = sky
    settings = stardata.Settings(ebv_n_draws=16, retries=0, **kw.pop("settings", {}))
    return crossmatch(
        catalog, out=tmp / name, cache_dir=tmp / "cache", sources=src, settings=settings,
        progress=False, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def crossmatched(sky):
    """The fixture sky crossmatched by position (archive path), with labels on each row."""
    cat = _labelled(catalogue(sky[2], epoch=2000.0))
    return _crossmatch(sky, cat, "xm", epoch=2000.0), cat


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory):
    """A small model of synthetic stars (colours, luminosity stand-in, labels)."""
    from stardiff.datasets.synthetic import synthetic_stars
    from stardiff.train import fit
    from tests.stardiff.conftest import make_recipe

    tmp = tmp_path_factory.mktemp("model")
    table = synthetic_stars(2000, seed=0, n_spectrum=0)
    table = table.rename({"g_absmag": "g_fakemag"}).select(COLUMNS)
    recipe = make_recipe(
        tmp, table, name="stars", data={"requestable": ["teff", "logg", "m_h"]},
        train={"epochs": 2, "context": 4},
    )  # fmt: skip
    return fit(recipe, progress=False, figures=False)


def test_crossmatch_then_predict_round_trip(crossmatched, synthetic_model, tmp_path):
    from stardiff.predict import predict

    out, cat = crossmatched
    table = out / "crossmatch.parquet"
    with pytest.warns(UserWarning, match="the model does not know are ignored"):
        got = predict(
            synthetic_model, table, ["teff", "logg", "m_h"], n=50, out=tmp_path / "p.parquet",
            keep=["name", "gaia_source_id"], progress=False,
        )  # fmt: skip
    p = pl.read_parquet(got)
    assert p["name"].to_list() == cat["name"].to_list()
    xm = pl.read_parquet(table)
    # unmatched rows have no Gaia input (the user's labels are requested, so not given):
    # the unconditional density, flagged
    assert p["no_input"].to_list() == (~xm["gaia_found"]).to_list()
    assert np.all(np.isfinite(p["teff_median"].to_numpy()))
    assert np.all(p["teff_q84"].to_numpy() >= p["teff_q16"].to_numpy())


def test_custom_labels_recipe_trains_on_the_crossmatch(sky, tmp_path):
    from stardiff.recipe import load_recipe, override
    from stardiff.train import fit

    # every star by id, whole XP spectra kept (the tiny sky has too few stars for each
    # coefficient to be relevant somewhere)
    cat = _labelled(pl.DataFrame({"source_id": IDS}))
    out = _crossmatch(sky, cat, "xm_ids", settings={"mask_irrelevant_xp": False})
    recipe = load_recipe("recipes/custom_labels.toml")
    assert {"teff", "logg", "m_h", "mass", "bp0", "logebv"} <= set(recipe.data.columns)
    recipe = override(recipe, "data", table=str(out / "crossmatch.parquet"))
    recipe = override(recipe, "model", **TINY_MODEL)
    recipe = override(
        recipe, "train", epochs=1, batch_size=8, context=8, out=str(tmp_path / "m"),
        checkpoint_every=1,
    )  # fmt: skip
    model = fit(recipe, progress=False, figures=False)
    assert set(model.requestable) == set(recipe.data.requestable)
    draws = model.sample({"bprp": 1.0}, "mass", 10, seed=0)
    assert np.all(draws > 0)  # the quantile transform keeps mass in its range
