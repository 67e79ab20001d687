"""Data-parallel training: 2 Gloo ranks × batch B follow 1 process × batch 2B."""

import os
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from stardiff.recipe import recipe_from_dict
from tests.stardiff.conftest import TINY_MODEL, bimodal_table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw(table_path, out, batch):
    return {
        "data": {"table": str(table_path), "validation_fraction": 0.1},
        "model": {**TINY_MODEL, "dropout": 0.0},
        "train": {
            "epochs": 2,
            "batch_size": batch,
            "lr": 3e-3,
            "cycle_epochs": 2,
            "context": 2,
            "checkpoint_every": 1,
            "out": str(out),
            "threads": 1,
        },
    }


def _worker(rank, world, raw, port):
    from stardiff.train import fit

    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    fit(recipe_from_dict(raw, name="ddp"), progress=False, figures=False)
    torch.distributed.destroy_process_group()


def test_two_ranks_match_one_process_with_double_batch(tmp_path):
    from stardiff.train import fit

    table = tmp_path / "t.parquet"
    bimodal_table(700).write_parquet(table)  # 630 training rows: the last batch is ragged
    fit(
        recipe_from_dict(_raw(table, tmp_path / "one", 128), name="one"),
        progress=False,
        figures=False,
    )
    mp.spawn(_worker, args=(2, _raw(table, tmp_path / "two", 64), _free_port()), nprocs=2)
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    for k in a:
        x, y = a[k], b[k]
        if k.endswith("attn.qkv.bias"):
            # Softmax ignores a constant added to every key, so the key bias has an exactly
            # zero gradient; AdamW turns the float round-off there into lr-sized steps.
            d = x.shape[0] // 3
            torch.testing.assert_close(x[d : 2 * d], y[d : 2 * d], rtol=0, atol=1e-3, msg=k)
            x, y = torch.cat([x[:d], x[2 * d :]]), torch.cat([y[:d], y[2 * d :]])
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=k)
    assert (tmp_path / "two" / "checkpoint" / "state.json").exists()
