"""Atomic writes, deterministic Parquet/HDF5 bytes, hashing."""

import hashlib
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stardata import io


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    io.write_json(target, {"b": 1, "a": np.int64(2)})
    assert target.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert io.read_json(target) == {"a": 2, "b": 1}


def test_sha256_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc" * 1000)
    assert io.sha256_file(p, block=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def _table(n=10_000):
    rng = np.random.default_rng(0)
    return pa.table(
        {"id": [f"2M{i:06d}" for i in range(n)], "x": rng.normal(size=n), "k": np.arange(n)}
    )


def test_parquet_bytes_independent_of_chunking_and_time(tmp_path):
    t = _table()
    io.write_parquet(tmp_path / "a.parquet", t, row_group_size=3000)
    time.sleep(1.1)
    with io.ParquetRowWriter(tmp_path / "b.parquet", t.schema, row_group_size=3000) as w:
        for start in range(0, t.num_rows, 777):
            w.write(t.slice(start, 777))
    assert io.sha256_file(tmp_path / "a.parquet") == io.sha256_file(tmp_path / "b.parquet")
    meta = pq.ParquetFile(tmp_path / "b.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3000] * 3 + [1000]
    assert pq.read_table(tmp_path / "b.parquet").equals(t)


def test_parquet_writer_failure_and_missing_column(tmp_path):
    t = _table(100)
    with pytest.raises(KeyError, match="missing column"):
        with io.ParquetRowWriter(tmp_path / "c.parquet", t.schema) as w:
            w.write(t.drop_columns(["x"]))
    assert list(tmp_path.iterdir()) == []
    with io.ParquetRowWriter(tmp_path / "empty.parquet", t.schema) as w:
        pass
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_hdf5_bytes_reproducible(tmp_path):
    def make(path):
        with io.h5_file(path) as f:
            f.attrs["note"] = "x"
            d = io.h5_dataset(f, "a", (5000, 7), "float32", chunk_rows=1000)
            d[:] = np.arange(35000, dtype=np.float32).reshape(5000, 7)
            g = f.create_group("g", track_order=True)
            io.h5_dataset(g, "b", (3,), "int64", data=np.arange(3))

    make(tmp_path / "a.h5")
    time.sleep(1.1)
    make(tmp_path / "b.h5")
    assert io.sha256_file(tmp_path / "a.h5") == io.sha256_file(tmp_path / "b.h5")
