"""tokens.h5: NaN → padding, vocabulary in the file, row order, reproducible bytes."""

import h5py
import numpy as np
import pytest

from stardata.io import sha256_file
from stardata.tokens import PAD, TokensH5Writer, Vocabulary, read_tokens_h5, write_tokens_h5

VOCAB = Vocabulary(["bp0", "bprp", "teff"])


def _data():
    values = np.array([[1.5, np.nan, 4800.0], [np.nan, np.nan, np.nan], [0.25, 1.0, np.inf]])
    errors = np.array([[0.1, 0.2, 50.0], [1.0, 1.0, 1.0], [np.nan, 0.01, 3.0]])
    return values, errors


def test_round_trip(tmp_path):
    values, errors = _data()
    extra = {"star_id": np.array(["2Ma", "2Mb", "2Mc"]), "gaia_source_id": np.array([1, 2, 3])}
    with pytest.warns(RuntimeWarning, match="1 infinite"):
        write_tokens_h5(tmp_path / "t.h5", values, errors, VOCAB, extra=extra)
    tokens, vals, errs, vocab, ex = read_tokens_h5(tmp_path / "t.h5")
    assert vocab == VOCAB
    assert tokens.dtype == np.int16 and vals.dtype == np.float32 and errs.dtype == np.float32
    assert tokens.tolist() == [[1, PAD, 3], [PAD] * 3, [1, 2, PAD]]
    assert vals.tolist() == [[1.5, 0.0, 4800.0], [0.0] * 3, [0.25, 1.0, 0.0]]
    assert errs[0].tolist() == pytest.approx([0.1, 0.0, 50.0])
    assert np.isnan(errs[2, 0]) and errs[2, 2] == 0.0  # a present value keeps its NaN error
    assert ex["star_id"].tolist() == ["2Ma", "2Mb", "2Mc"]
    assert ex["gaia_source_id"].tolist() == [1, 2, 3]
    with h5py.File(tmp_path / "t.h5") as f:
        assert [v.decode() for v in f["vocabulary"][:]] == list(VOCAB.names)
    t2, *_ = read_tokens_h5(tmp_path / "t.h5", rows=slice(1, 3))
    assert t2.shape == (2, 3)


def test_blockwise_writer_equals_whole_write(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(1000, 3))
    values[rng.random(values.shape) < 0.2] = np.nan
    errors = np.abs(values)
    write_tokens_h5(tmp_path / "a.h5", values, errors, VOCAB, extra={"k": np.arange(1000)})
    with TokensH5Writer(tmp_path / "b.h5", 1000, VOCAB, extra={"k": np.int64}) as w:
        for s in range(0, 1000, 333):
            w.write(
                values[s : s + 333], errors[s : s + 333], {"k": np.arange(s, min(s + 333, 1000))}
            )
    assert sha256_file(tmp_path / "a.h5") == sha256_file(tmp_path / "b.h5")


def test_writer_errors_leave_no_file(tmp_path):
    values, errors = _data()
    with pytest.raises(ValueError, match="wrote 3 of 4 rows"):
        with TokensH5Writer(tmp_path / "c.h5", 4, VOCAB) as w:
            w.write(np.where(np.isfinite(values), values, 1.0), errors)
    with pytest.raises(ValueError, match=r"must be \(n, 3\)"):
        with TokensH5Writer(tmp_path / "c.h5", 3, VOCAB) as w:
            w.write(values[:, :2], errors[:, :2])
    assert list(tmp_path.iterdir()) == []


def test_not_a_tokens_file(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="not a stardata-tokens file"):
        read_tokens_h5(tmp_path / "x.h5")


def test_read_only_the_extra_columns_asked_for(tmp_path):
    values, errors = _data()
    values = np.nan_to_num(values, posinf=1.0)
    extra = {"split": np.array(["train", "test", "train"]), "gaia_source_id": np.arange(3)}
    write_tokens_h5(tmp_path / "t.h5", values, errors, VOCAB, extra=extra)
    *_, ex = read_tokens_h5(tmp_path / "t.h5", extra=["split"])
    assert list(ex) == ["split"] and ex["split"].tolist() == ["train", "test", "train"]
    assert read_tokens_h5(tmp_path / "t.h5", extra=[])[4] == {}
    with pytest.raises(KeyError, match=r"t\.h5: no per-row column 'fold'; it has: .*split"):
        read_tokens_h5(tmp_path / "t.h5", extra=["fold"])


def test_stardiff_reads_tokens_h5_through_the_one_reader(tmp_path, monkeypatch):
    """stardiff.tables has no reader of its own: it calls stardata.tokens.read_tokens_h5."""
    data = pytest.importorskip("stardiff.tables")
    import stardata.tokens as T

    values, errors = _data()
    values = np.nan_to_num(values, posinf=np.nan)
    write_tokens_h5(tmp_path / "t.h5", values, errors, VOCAB, extra={"split": ["a", "b", "c"]})
    calls = []
    real = T.read_tokens_h5
    monkeypatch.setattr(T, "read_tokens_h5", lambda *a, **k: calls.append(k) or real(*a, **k))
    table = data.read_table(tmp_path / "t.h5", ["teff", "bp0"], split_column="split")
    assert calls == [{"extra": ["split"]}]
    np.testing.assert_array_equal(table.values, values[:, [2, 0]])
    assert table.names == ["teff", "bp0"] and table.split.tolist() == ["a", "b", "c"]
    with pytest.raises(KeyError, match="no column 'logg'"):
        data.read_table(tmp_path / "t.h5", ["logg"])
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="x.h5: not a stardata-tokens file"):
        data.read_table(tmp_path / "x.h5")
