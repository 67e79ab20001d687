"""Distilled heads: ``stardiff distill`` trains a K-step student, saves it beside the model, and
``sampler="distilled"`` samples with exactly K head evaluations per draw (seconds, tiny model)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import stardiff
from stardiff import persist
from stardiff.cli import main
from stardiff.errors import ModelFileError
from stardiff.model import (
    DistilledHead,
    multistep,
    rollout,
    student_steps,
    teacher_states,
)
from stardiff.model.samplers import distilled, lambda_indices
from stardiff.persist.distilled import DISTILLED_FORMAT
from stardiff.train import distill, fit
from tests.stardiff.conftest import bimodal_table, make_recipe

FAST = {"batches": 6, "batch_size": 32, "draws": 4, "progress": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model (2 epochs) with a 4-step student; returns (recipe, folder)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("distill")
    recipe = make_recipe(tmp, bimodal_table(600), name="d", train={"epochs": 2, "context": 2})
    model = fit(recipe, progress=False, figures=False)
    distill(model, 4, **FAST)
    return recipe, model.folder


def _copy(folder, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(folder, dst)
    return dst


def test_student_steps_are_teacher_steps_noisy_first():
    from stardiff.model.schedule import SigmoidSchedule

    s = SigmoidSchedule(100)
    teacher = sorted(lambda_indices(s, 20), reverse=True)
    assert student_steps(s, 4) == [teacher[0], teacher[5], teacher[10], teacher[15]]
    assert student_steps(s, 1) == [99]
    assert len(student_steps(s, 2)) == 2
    with pytest.raises(ValueError, match="1..20 steps"):
        student_steps(s, 21)


def test_rollout_is_the_sampler_and_the_teacher_is_dpm2(trained):
    _, folder = trained
    m = stardiff.load(folder)
    net, st = m.network, m.student()
    h = net.condition(torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 1), torch.tensor([2] * 3))
    x = torch.randn(3, 50, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond = [c.unsqueeze(1) for c in st.head.project_condition(h)]
        roll = rollout(st.head, net.schedule, cond, x.clone(), st.steps)
        fast = distilled(st, net.schedule, cond, lambda: x.clone())
        torch.testing.assert_close(roll[-1].squeeze(-1), fast, rtol=1e-5, atol=1e-6)
        tcond = [c.unsqueeze(1) for c in net.head.project_condition(h)]
        states = teacher_states(net.head, net.schedule, tcond, x, 20, st.steps[1:])
        dpm = multistep(net.head, net.schedule, tcond, lambda: x.clone(), 20)
    assert len(states) == len(st.steps)
    torch.testing.assert_close(states[-1].squeeze(-1), dpm, rtol=1e-5, atol=1e-6)


def test_distill_writes_student_and_index_and_learns(trained):
    _, folder = trained
    names = {p.name for p in folder.iterdir()}
    assert {"distilled.json", "distilled-4.safetensors"} <= names
    index = json.loads((folder / "distilled.json").read_text())
    assert index["format"] == "stardiff-distilled" and index["default"] == 4
    entry = index["heads"]["4"]
    assert len(entry["steps"]) == 4 and entry["teacher"] == {"sampler": "dpm2", "steps": 20}
    v = entry["validation_rms"]
    assert v["after"] < v["before"]  # closer to the teacher than the teacher's own 4 steps
    for name in ("distilled.json", "distilled-4.safetensors"):  # the folder's own files
        assert persist.is_own(folder / name)
    info = stardiff.describe(folder)["distilled"]  # what `stardiff info` prints
    assert info["default"] == 4 and info["heads"]["4"]["steps"] == entry["steps"]


def test_distilled_sampler_uses_exactly_k_head_evaluations(trained, monkeypatch):
    _, folder = trained
    m = stardiff.load(folder)
    student = m.student()
    calls = {"student": 0, "teacher": 0}
    for who, head in (("student", student.head), ("teacher", m.network.head)):
        real = head.mlp

        def counted(x, pre, real=real, who=who):
            calls[who] += 1
            return real(x, pre)

        monkeypatch.setattr(head, "mlp", counted)
    m.sample({"x": [0.1, 0.5, 1.0]}, "y", 100, seed=0, sampler="distilled")
    assert calls == {"student": 4, "teacher": 0}  # one tile: K evaluations for every draw


def test_samples_reproducible_and_identical_after_reload(trained):
    _, folder = trained
    given = {"x": [0.2, -1.0, 1.5]}
    a = stardiff.load(folder).sample(given, "y", 64, seed=3, sampler="distilled")
    b = stardiff.load(folder).sample(given, "y", 64, seed=3, sampler="distilled", steps=4)
    c = stardiff.load(folder).sample(given, "y", 64, seed=4, sampler="distilled")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    joint = stardiff.load(folder).sample_joint({"x": 0.5}, ["y", "z"], 32, sampler="distilled")
    assert joint["y"].shape == (32,) and np.isfinite(joint["z"]).all()


def test_several_students_and_the_default(trained, tmp_path):
    _, folder = trained
    dst = _copy(folder, tmp_path)
    distill(dst, 2, **FAST)
    m = stardiff.load(dst)
    assert len(m.student().steps) == 2  # the last distilled is the default
    assert len(m.student(4).steps) == 4
    a = m.sample({"x": 1.0}, "y", 50, seed=0, sampler="distilled", steps=4)
    b = stardiff.load(folder).sample({"x": 1.0}, "y", 50, seed=0, sampler="distilled")
    np.testing.assert_array_equal(a, b)


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_errors_are_one_line(trained, tmp_path):
    recipe, folder = trained
    dst = _copy(folder, tmp_path)
    m = stardiff.load(dst)
    with pytest.raises(ModelFileError) as e:
        m.sample({"x": 1.0}, "y", 10, sampler="distilled", steps=3)
    assert "no 3-step distilled head (it has steps=4)" in _one_line(e)
    with pytest.raises(ValueError) as e:
        m.sample({"x": 1.0}, "y", 10, sampler="distilled", eta=0.5)
    assert "eta applies to the ddim sampler only" in _one_line(e)
    # a model without one
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("distilled*"))
    with pytest.raises(ModelFileError) as e:
        stardiff.load(bare).sample({"x": 1.0}, "y", 10, sampler="distilled")
    assert "has no distilled head" in _one_line(e) and "stardiff distill" in str(e.value)
    # a student file that is not the one the index records
    raw = bytearray((dst / "distilled-4.safetensors").read_bytes())
    raw[-1] ^= 1
    (dst / "distilled-4.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ModelFileError) as e:
        stardiff.load(dst).sample({"x": 1.0}, "y", 10, sampler="distilled")
    assert "not the file distilled.json records" in _one_line(e)


def test_a_student_of_other_weights_is_refused(trained, tmp_path):
    recipe, folder = trained
    dst = _copy(folder, tmp_path)
    from stardiff.recipe import override

    fit(override(recipe, "train", epochs=3, out=str(dst)), resume=True, progress=False,
        figures=False)  # fmt: skip
    with pytest.raises(ModelFileError) as e:
        stardiff.load(dst).sample({"x": 1.0}, "y", 10, sampler="distilled")
    assert "distilled from other weights" in _one_line(e)
    distill(dst, 4, **FAST)  # distilling again repairs it
    assert stardiff.load(dst).sample({"x": 1.0}, "y", 10, sampler="distilled").shape == (10,)


def test_fit_overwrite_removes_students_and_keeps_foreign_refusal(trained, tmp_path):
    recipe, folder = trained
    dst = _copy(folder, tmp_path)
    from stardiff.recipe import override

    r = override(recipe, "train", epochs=1, out=str(dst))
    fit(r, overwrite=True, progress=False, figures=False)
    assert not any(p.name.startswith("distilled") for p in dst.iterdir())
    (dst / "distilled.json").write_text("{}")  # not ours: a fit must refuse the folder
    with pytest.raises(FileExistsError, match="distilled.json"):
        fit(r, overwrite=True, progress=False, figures=False)


def test_distilled_head_rejects_bad_steps():
    from stardiff.model import DiffusionHead

    head = DiffusionHead(8, 8, 2, 10)
    with pytest.raises(ValueError, match="noisy first"):
        DistilledHead(head, [1, 5])
    with pytest.raises(ValueError, match="noisy first"):
        DistilledHead(head, [10])


def test_cli_distill_and_sample(trained, tmp_path, capsys):
    _, folder = trained
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("distilled*"))
    assert main(["sample", str(bare), "--request", "y", "-n", "5", "--sampler", "distilled"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no distilled head" in err
    argv = ["distill", str(bare), "--steps", "2", "--batches", "3", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "distilled-2.safetensors" in out and "sampler='distilled'" in out
    assert (bare / "distilled-2.safetensors").is_file()
    f = tmp_path / "s.parquet"
    argv = ["sample", str(bare), "--given", "x=1.0", "--request", "y", "-n", "20"]
    assert main([*argv, "--sampler", "distilled", "--out", str(f)]) == 0
    assert main(["distill", str(bare), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=_JSON
    | st.fixed_dictionaries(
        {
            "format": st.just(DISTILLED_FORMAT),
            "heads": st.dictionaries(st.text(max_size=3), _JSON),
        }
    ),
    k=st.none() | st.integers(1, 9),
)
@example(index={"format": "stardiff-distilled", "heads": {"²": {}}}, k=3)
@example(index=[], k=None)
def test_any_damaged_index_is_refused_in_one_line(tmp_path, index, k):
    """Whatever distilled.json holds (a list, a number, keys such as "²" that ``isdigit`` takes
    for a count), asking for a student is a one-line ModelFileError, never a traceback."""
    (tmp_path / "distilled.json").write_text(json.dumps(index))
    with pytest.raises(ModelFileError) as e:
        persist.load_distilled(tmp_path, k, torch.nn.Linear(1, 1))
    assert "\n" not in str(e.value)
