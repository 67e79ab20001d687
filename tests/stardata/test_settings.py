"""Every build setting's type and range is checked up front, with one line naming it."""

from __future__ import annotations

import dataclasses

import pytest

from stardata.errors import BuildError
from stardata.release.settings import Settings

BAD = [
    ("g_min", {"g_min": 18.0, "g_max": 17.0}),
    ("g_min", {"g_min": -1.0}),
    ("bprp_min", {"bprp_min": 4.0, "bprp_max": 0.0}),
    ("xp_percentile_lo", {"xp_percentile_lo": 50.0, "xp_percentile_hi": 40.0}),
    ("xp_percentile_lo", {"xp_percentile_hi": 100.5}),
    ("zp_extra_g_min", {"zp_extra_g_min": 17.0, "zp_extra_g_max": 13.0}),
    ("ebv_n_draws", {"ebv_n_draws": 0}),
    ("ebv_n_draws", {"ebv_n_draws": 10.5}),
    ("ebv_seed", {"ebv_seed": -1}),
    ("chunk_rows", {"chunk_rows": -5}),
    ("chunk_rows", {"chunk_rows": "64"}),
    ("gaia_chunk_size", {"gaia_chunk_size": 0}),
    ("xp_chunk_size", {"xp_chunk_size": -1}),
    ("row_group_size", {"row_group_size": 0}),
    ("retries", {"retries": -2}),
    ("timeout", {"timeout": 0}),
    ("backoff", {"backoff": -1.0}),
    ("xp_ruwe_max", {"xp_ruwe_max": float("nan")}),
    ("parallax_error_max", {"parallax_error_max": -0.1}),
    ("bp_zp_err", {"bp_zp_err": -0.001}),
    ("split_fractions", {"split_fractions": (("train", 0.9), ("test", 0.2))}),
    ("split_fractions", {"split_fractions": (("train", 1.5), ("test", -0.5))}),
    ("split_fractions", {"split_fractions": (("train", 0.5), ("fold", 0.5))}),
    ("split_fractions", {"split_fractions": (("train", 0.5), ("train", 0.5))}),
    ("split_fractions", {"split_fractions": ("train", 1.0)}),
    ("xp_starflag_bits", {"xp_starflag_bits": (2, 70)}),
    ("label_bad_aspcap_bits", {"label_bad_aspcap_bits": 19}),
    ("duplicate_extratarg_bit", {"duplicate_extratarg_bit": 40}),
    ("dedup_gaia_source_id", {"dedup_gaia_source_id": 1}),
    ("jhk_prefer", {"jhk_prefer": "gaia"}),
    ("tmass_bad_ph_qual", {"tmass_bad_ph_qual": "UZ"}),
]


@pytest.mark.parametrize(("name", "values"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_setting_is_one_line_naming_it(name, values):
    with pytest.raises(BuildError) as err:
        Settings(**values)
    msg = str(err.value)
    assert msg.startswith(f"setting {name}") and "\n" not in msg


def test_bad_json_values_are_named_too():
    with pytest.raises(BuildError, match="setting g_max must be a finite number, not 'high'"):
        Settings.from_dict({"g_max": "high"})
    with pytest.raises(BuildError, match="unknown setting.*gmax"):
        Settings.from_dict({"gmax": 17.0})
    with pytest.raises(BuildError, match="needs g_min < g_max"):
        Settings.from_dict({"g_min": 17.5, "g_max": 6.0})
    s = Settings.from_dict({"split_fractions": [["train", 0.9], ["test", 0.1]], "g_max": 17})
    assert s.split_fractions == (("train", 0.9), ("test", 0.1)) and s.g_max == 17


def test_defaults_and_round_trip_are_valid():
    s = Settings()
    assert Settings.from_dict(s.to_dict()) == s
    with pytest.raises(BuildError, match="setting ebv_n_draws"):
        dataclasses.replace(s, ebv_n_draws=-3)
