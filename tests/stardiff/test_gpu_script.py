"""benchmarks/gpu.sh: without a GPU it runs the same code path on CPU, eager (compiled training
on CPU is checked against eager in test_train.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_runs_on_cpu_and_prints_a_record():
    env = dict(os.environ, PYTHON=sys.executable, STEPS_CPU="1", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    record = json.loads(out.strip().splitlines()[-1])
    assert record["config"] == "small" and record["compile"] is False
    for key in ("train_rows_per_s", "sample_draws_per_s_ancestral", "sample_draws_per_s_default"):
        assert record[key] > 0, key
    assert record["default_sampler"] == "dpm2_20" and record["peak_rss_gb"] > 0
