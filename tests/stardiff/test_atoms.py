"""Atoms of quantile maps (capped values, integers): an interval each, a flat inverse."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr

from stardiff.transforms import ColumnTransform


def _capped_and_integer(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    capped = np.minimum(rng.lognormal(0.8, 0.6, n), 5.00001)  # ~13 % at the cap
    ages = rng.integers(1, 53, n).astype(float)  # 52 integers, ~2 % each
    return capped, ages


def test_an_atom_spans_an_interval_of_its_share_and_decodes_to_itself():
    capped, ages = _capped_and_integer()
    for x, n_atoms in ((capped, 1), (ages, 52)):
        t = ColumnTransform.fit("quantile", x)
        atoms = t.atoms()
        assert len(atoms) == n_atoms
        for value, lo, hi in atoms:
            share = np.mean(x == value)
            assert abs(ndtr(hi) - ndtr(lo) - share) < 2.5e-3, value  # knots every 1/1000
            inside = np.linspace(lo, hi, 50)
            np.testing.assert_array_equal(t.inverse(inside), value)
            assert lo < t.forward(np.array([value]))[0] < hi
    t = ColumnTransform.fit("quantile", capped)
    assert t.inverse(np.array([9.0]))[0] == 5.00001  # beyond the top atom: still the cap
    grid = np.linspace(-1, 8, 2001)
    assert np.all(np.diff(t.forward(grid)) >= 0)
    np.testing.assert_allclose(t.inverse(t.forward(capped)), capped, rtol=1e-9)


def test_a_saved_map_without_repeated_knots_has_no_atoms_and_maps_as_before():
    t = ColumnTransform.from_dict({"kind": "quantile", "knots_x": [0, 1, 5], "knots_z": [-2, 0, 2]})
    assert t.atoms() == []
    np.testing.assert_allclose(t.forward(np.array([0.5, 5.0, 7.0])), [-1.0, 2.0, 3.0])
    assert ColumnTransform("log").atoms() == []


def test_an_atom_at_the_bottom_and_a_two_valued_column():
    rng = np.random.default_rng(2)
    zero_inflated = np.where(rng.random(5000) < 0.3, 0.0, rng.exponential(1.0, 5000))
    t = ColumnTransform.fit("quantile", zero_inflated)
    ((value, lo, hi),) = t.atoms()
    assert value == 0.0 and abs(ndtr(hi) - ndtr(lo) - 0.3) < 0.02
    assert t.inverse(np.array([-9.0, lo, hi]))[0:3].tolist() == [0.0, 0.0, 0.0]
    binary = (rng.random(5000) < 0.2).astype(float)
    t = ColumnTransform.fit("quantile", binary)
    assert [a[0] for a in t.atoms()] == [0.0, 1.0]
    codes = t.forward(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(t.inverse(codes), [0.0, 1.0])
    again = ColumnTransform.from_dict(t.to_dict())  # as a saved model holds it
    assert again.atoms() == t.atoms()
    np.testing.assert_array_equal(again.forward(binary), t.forward(binary))


@settings(max_examples=40, deadline=None)
@given(
    shares=st.lists(st.floats(0.005, 0.3), min_size=1, max_size=4),
    where=st.lists(st.floats(-3.0, 3.0), min_size=4, max_size=4, unique=True),
    seed=st.integers(0, 2**16),
)
def test_any_atoms_decode_to_themselves_and_keep_their_share(shares, where, seed):
    """Atoms anywhere (bottom, top, middle; 0.5-30 % each) in a continuous column: each is
    listed once, its interval holds its share, the inverse is flat on it, the map stays
    monotone, and every training value comes back from its code."""
    rng = np.random.default_rng(seed)
    n = 4000
    x = rng.normal(size=n)
    start = 0
    values = sorted(round(w, 3) for w in where[: len(shares)])
    for value, share in zip(values, shares, strict=False):
        k = int(share * n)
        x[start : start + k] = value
        start += k
    t = ColumnTransform.fit("quantile", x)
    found = {a[0]: a for a in t.atoms()}
    for value in values[: len(shares)]:
        share = np.mean(x == value)
        if share < 0.003:  # under three knot steps: not necessarily an atom
            continue
        _, lo, hi = found[value]
        assert abs(ndtr(hi) - ndtr(lo) - share) < 2.5e-3
        np.testing.assert_array_equal(t.inverse(np.linspace(lo, hi, 7)), value)
        assert lo < t.forward(np.array([value]))[0] < hi
    assert all(np.mean(x == value) >= 1e-3 for value in found)  # only real atoms
    grid = np.linspace(x.min() - 1, x.max() + 1, 3001)
    assert np.all(np.diff(t.forward(grid)) >= 0)
    np.testing.assert_allclose(t.inverse(t.forward(x)), x, rtol=1e-9, atol=1e-12)
