import json
import warnings

import numpy as np
import pytest

from stardata.tokens import PAD, Vocabulary, tokenize
from stardiff.transforms import ColumnTransform, Preprocessor, Standardizer


def test_vocabulary_ids_and_round_trip():
    v = Vocabulary(["teff", "logg", "m_h"])
    assert PAD == 0
    assert list(v.ids(["teff", "m_h"])) == [1, 3]
    assert v.name(2) == "logg"
    again = Vocabulary.from_dict(json.loads(json.dumps(v.to_dict())))
    assert again == v and again.names == v.names


def test_vocabulary_errors():
    v = Vocabulary(["a", "b"])
    with pytest.raises(KeyError, match="valid columns are: a, b"):
        v.id("c")
    with pytest.raises(KeyError):
        v.name(0)  # padding has no name
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError):
        Vocabulary([])


def test_tokenize_nan_and_inf_become_padding():
    x = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, -np.inf]])
    with pytest.warns(RuntimeWarning, match="2 infinite"):
        tokens, values = tokenize(x)
    assert tokens.dtype == np.int16 and values.dtype == np.float32
    assert tokens.tolist() == [[1, 0, 3], [0, 2, 0]]
    assert values.tolist() == [[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]]


def test_standardizer_is_median_mad_of_training_rows_only():
    rng = np.random.default_rng(1)
    train = rng.normal(5.0, 2.0, size=(1001, 1))
    s = Standardizer.fit(train, ["a"])
    med = np.median(train)
    assert s.centre[0] == med
    assert s.scale[0] == pytest.approx(1.4826 * np.median(np.abs(train - med)))


def _california_like(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.lognormal(1, 0.4, n), rng.normal(30, 10, n), rng.lognormal(0, 2, n)])
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


def test_preprocessor_round_trips_exactly_through_json():
    x = _california_like()
    vocab = Vocabulary(["a", "b", "c"])
    pre = Preprocessor.fit(x[:1500], vocab, {"a": "log", "c": "quantile"})
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.to_dict() == pre.to_dict()
    np.testing.assert_array_equal(again.encode(x), pre.encode(x))
    z = pre.encode(x)
    for j in range(3):
        back = pre.decode(z[:, j].astype(np.float64), j)
        ok = np.isfinite(x[:, j])
        np.testing.assert_allclose(back[ok], x[ok, j], rtol=2e-5)
        assert np.isnan(z[~ok, j]).all()


def test_preprocessor_counts_infinities_and_pads_them():
    x = _california_like()
    pre = Preprocessor.fit(x, Vocabulary(["a", "b", "c"]), {})
    x[0, 1], x[1, 1] = np.inf, -np.inf
    with pytest.warns(RuntimeWarning, match="2 infinite"):
        z = pre.encode(x)
    assert np.isnan(z[:2, 1]).all()


def test_all_nan_column_is_an_error_naming_it():
    x = _california_like()
    x[:, 1] = np.nan
    with pytest.raises(ValueError, match="'b' has no finite value"):
        Preprocessor.fit(x, Vocabulary(["a", "b", "c"]), {})


def test_log_transform_rejects_non_positive_values():
    with pytest.raises(ValueError, match="column 'a'.*log"):
        ColumnTransform.fit("log", np.array([1.0, 0.0, 2.0]), column="a")
    pre = Preprocessor.fit(np.array([[1.0], [2.0], [3.0]]), Vocabulary(["a"]), {"a": "log"})
    with pytest.raises(ValueError, match=r"column 'a', row\(s\) 0: -1 <= 0 in a log-transformed"):
        pre.encode(np.array([[-1.0]]))


def test_quantile_transform_is_monotone_with_atoms_and_extrapolates():
    rng = np.random.default_rng(0)
    x = np.minimum(rng.lognormal(0.5, 0.6, 5000), 5.00001)  # a capped column: an atom at the top
    t = ColumnTransform.fit("quantile", x)
    grid = np.linspace(-1, 8, 500)
    y = t.forward(grid)
    assert np.all(np.diff(y) >= 0)
    assert np.isfinite(y).all()
    z = t.forward(x)
    assert abs(np.median(z)) < 0.05 and 0.8 < np.std(z[x < 5]) < 1.2
    np.testing.assert_allclose(t.inverse(t.forward(x)), x, rtol=1e-9)


def test_unknown_transform_name():
    with pytest.raises(ValueError, match="unknown transform 'sqrt'"):
        ColumnTransform("sqrt")
    with pytest.raises(KeyError, match="unknown column"):
        Preprocessor.fit(np.ones((3, 1)), Vocabulary(["a"]), {"b": "log"})


def test_mad_zero_falls_back_with_warning():
    x = np.array([[1.0], [1.0], [1.0], [2.0], [4.0]])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = Standardizer.fit(x, ["flat"])
    assert s.scale[0] > 0 and any("MAD is 0" in str(m.message) for m in w)
