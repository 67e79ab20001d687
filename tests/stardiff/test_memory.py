"""Sampling stays under ``max_memory``: the plans count every term (attention included) and
cut the work so that the count fits, without changing a single sample."""

import numpy as np
import pytest
import torch

from stardiff.infer.memory import (
    STATE_BYTES,
    chain_plan,
    condition_row_bytes,
    encoder_row_bytes,
    head_sample_bytes,
    input_row_bytes,
    sample_plan,
)
from stardiff.model import DRAW_BLOCK, ROW_BLOCK, NetworkConfig

#: the paper's network (recipes/xp_apogee.toml), 3.77 M parameters at 118 columns
PAPER = {"dim": 192, "n_heads": 24, "ff_dim": 2048, "n_layers": 2, "head_width": 512,
         "head_layers": 5, "steps": 120}  # fmt: skip
MB = 2**20


@pytest.fixture
def one_thread():
    """Bit-identity across plans holds at one thread (a threaded matmul may split its rows
    differently for another row count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _whole_blocks(plan, n_rows, n):
    assert plan.rows % ROW_BLOCK == 0 or plan.rows >= n_rows
    assert plan.draws % DRAW_BLOCK == 0 or plan.draws >= n


def _pass_ok(encode, rows):
    """An encoder pass is all the rows, whole noise blocks of them or a power of two."""
    return encode == rows or encode % ROW_BLOCK == 0 or encode & (encode - 1) == 0


@pytest.mark.parametrize("columns", [30, 118, 250])
@pytest.mark.parametrize("bound_mb", [64, 256, 1024])
@pytest.mark.parametrize("rows, n", [(10_000, 1000), (5000, 1), (3, 200_000)])
def test_sample_plans_fit_the_bound_with_the_attention_term(columns, bound_mb, rows, n):
    config = NetworkConfig(n_kinds=columns, **PAPER)
    bound = bound_mb * MB
    for scores in (False, True):  # fused attention kernels, or the scores written out
        plan = sample_plan(config, rows, columns, columns, n, bound, scores=scores)
        _whole_blocks(plan, rows, n)
        r = min(plan.rows, rows)
        assert _pass_ok(plan.encode, r) and plan.encode <= r
        c_row = condition_row_bytes(config)
        per_row = encoder_row_bytes(config, columns, scores) + input_row_bytes(columns, columns)
        encoder_phase = r * c_row + plan.encode * per_row
        solver_phase = (
            r * c_row
            + r * min(plan.draws, n) * STATE_BYTES
            + plan.tile * head_sample_bytes(config)
            + min(rows, ROW_BLOCK) * min(n, DRAW_BLOCK) * 4
        )
        assert max(encoder_phase, solver_phase) == plan.peak <= bound, plan
        if bound_mb == 64 and columns == 250 and rows > ROW_BLOCK:  # smaller passes than a block
            assert ROW_BLOCK * per_row > bound and plan.encode < ROW_BLOCK
            assert scores or plan.encode == 8


def test_the_encoder_count_has_the_quadratic_attention_term_and_the_feed_forward():
    config = NetworkConfig(n_kinds=250, **PAPER)
    S, H, F, D = 251, 24, 2048, 192
    fused, written = encoder_row_bytes(config, 250, False), encoder_row_bytes(config, 250, True)
    assert fused >= 4 * 2 * S * F  # the feed-forward's hidden layer before and after its GELU
    assert written - fused >= 4 * (2 * H * S * S - 2 * S * F)  # scores replace it as the peak
    # what the former bound counted per row (width × (ff_dim + 4·dim) floats) was less than
    # the feed-forward alone
    assert fused > 2 * 4 * 250 * (F + 4 * D)


@pytest.mark.parametrize("columns", [30, 118, 250])
@pytest.mark.parametrize("bound_mb", [64, 256, 1024])
def test_joint_plans_fit_the_bound(columns, bound_mb):
    config = NetworkConfig(n_kinds=columns, **PAPER)
    for rows, n in ((100, 1000), (3, 100_000), (20_000, 10)):
        plan = chain_plan(config, rows, columns, 2, n, bound_mb * MB)
        _whole_blocks(plan, rows, n)
        chains = min(plan.rows, rows) * min(plan.draws, n)
        assert _pass_ok(plan.encode, chains) and plan.peak <= plan.bound, plan


@pytest.mark.parametrize("sampler", ["dpm2", "ancestral"])
def test_samples_do_not_depend_on_the_bound_at_one_thread(api_model, one_thread, sampler):
    model, _ = api_model
    rows = {"x": np.linspace(-2, 2, 150), "z": np.where(np.arange(150) % 3, 0.5, np.nan)}
    saved = model.max_memory
    plans, draws = [], []
    try:
        for bound in (saved, MB, 64 * 1024):  # one chunk; row blocks; passes of 8 rows
            model.max_memory = bound
            plans.append(model._sample_plan(150, 2, 50))
            draws.append(model.sample(rows, "y", 50, seed=5, sampler=sampler))
    finally:
        model.max_memory = saved
    assert [(p.rows >= 150, p.encode) for p in plans] == [(True, 150), (False, 64), (False, 8)]
    for d in draws[1:]:
        np.testing.assert_array_equal(d, draws[0])


def test_head_tiles_do_not_change_the_ancestral_samples(one_thread):
    from stardiff.model import ancestral
    from stardiff.model.head import DiffusionHead
    from stardiff.model.schedule import SigmoidSchedule

    torch.manual_seed(0)
    head, sch = DiffusionHead(8, 32, 3, 30).eval(), SigmoidSchedule(30, 1e-5, 0.1)
    cond = [c.unsqueeze(1) for c in head.project_condition(torch.randn(6, 8))]

    def noise():
        gen = torch.Generator().manual_seed(3)
        return lambda: torch.randn(6, 400, 1, generator=gen)

    whole = ancestral(head, sch, cond, noise())
    for tile in (800, 200):  # two rows at a time; half a row at a time
        torch.testing.assert_close(ancestral(head, sch, cond, noise(), tile), whole, rtol=0, atol=0)
