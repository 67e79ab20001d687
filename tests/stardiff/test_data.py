import numpy as np
import pytest
import torch

from stardiff.tables import read_table, split_rows
from stardiff.train.batches import BatchBuilder


def _matrix(n=500, v=6, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, v)).astype(np.float32)
    z[rng.random((n, v)) < 0.3] = np.nan
    return torch.as_tensor(z)


@pytest.mark.parametrize("target_in_context", [False, True])
def test_batches_use_only_present_columns_in_random_sets(target_in_context):
    z = _matrix()
    requestable = torch.tensor([True, True, True, True, False, False])
    b = BatchBuilder(z, requestable, context=4, target_in_context=target_in_context)
    rows = b.trainable_rows()
    batch = b(rows, torch.Generator().manual_seed(0))
    x = z[rows]
    req = batch.request - 1
    assert requestable[req].all()
    torch.testing.assert_close(batch.target, x[torch.arange(len(rows)), req])
    n_in = (batch.tokens > 0).sum(1)
    assert n_in.max() <= 4 and n_in.min() == 0
    seen_target_in_inputs = False
    for i in range(len(rows)):
        toks = batch.tokens[i][batch.tokens[i] > 0] - 1
        assert len(set(toks.tolist())) == len(toks)  # no column twice
        assert not torch.isnan(x[i, toks]).any()  # only present columns
        torch.testing.assert_close(batch.values[i][: len(toks)], x[i, toks])
        seen_target_in_inputs |= bool((toks == req[i]).any())
    assert seen_target_in_inputs == target_in_context


def test_batches_are_seeded():
    z = _matrix()
    b = BatchBuilder(z, torch.ones(6, dtype=torch.bool), context=3)
    rows = torch.arange(100)
    b1 = b(rows, torch.Generator().manual_seed(5))
    b2 = b(rows, torch.Generator().manual_seed(5))
    assert torch.equal(b1.tokens, b2.tokens) and torch.equal(b1.request, b2.request)


def test_rows_without_requestable_values_are_not_trainable():
    z = torch.tensor([[1.0, float("nan")], [float("nan"), 2.0]])
    b = BatchBuilder(z, torch.tensor([True, False]), context=2)
    assert b.trainable_rows().tolist() == [0]


def test_split_is_fixed_and_disjoint():
    tr, va, te = split_rows(1000, test_rows=100, validation_fraction=0.1, seed=0)
    perm = np.random.default_rng(0).permutation(1000)
    assert set(te) == set(perm[:100])
    assert len(va) == 90 and len(tr) == 810
    assert not (set(tr) & set(va)) and not (set(tr) & set(te))
    tr2, va2, te2 = split_rows(1000, test_rows=100, validation_fraction=0.1, seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)


def test_split_from_labels():
    labels = np.array(["train", "test", "validation", "train"])
    tr, va, te = split_rows(4, labels=labels)
    assert tr.tolist() == [0, 3] and va.tolist() == [2] and te.tolist() == [1]
    with pytest.raises(ValueError, match="unknown label"):
        split_rows(2, labels=np.array(["train", "oops"]))


def test_read_table_errors(tmp_path):
    import polars as pl

    with pytest.raises(FileNotFoundError, match="not found"):
        read_table(tmp_path / "nope.parquet")
    pl.DataFrame({"a": [1.0], "name": ["x"]}).write_parquet(tmp_path / "t.parquet")
    with pytest.raises(KeyError, match="no column 'b'"):
        read_table(tmp_path / "t.parquet", ["b"])
    with pytest.raises(TypeError, match="'name' is not numeric"):
        read_table(tmp_path / "t.parquet", ["name"])
    assert read_table(tmp_path / "t.parquet").names == ["a"]
    pl.DataFrame({"a": []}, schema={"a": pl.Float64}).write_parquet(tmp_path / "e.parquet")
    with pytest.raises(ValueError, match="no rows"):
        read_table(tmp_path / "e.parquet")
    (tmp_path / "t.txt").write_text("a\n1\n")
    with pytest.raises(ValueError, match="unknown table format"):
        read_table(tmp_path / "t.txt")
