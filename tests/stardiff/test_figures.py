import matplotlib
import numpy as np

from stardiff.figures import unconditional_figure


def test_figures_do_not_need_latex_even_if_an_import_asked_for_it(api_model, tmp_path, monkeypatch):
    """gaiaxpy sets text.usetex on import; there is no LaTeX on most machines."""
    model, _ = api_model
    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)
    data = np.random.default_rng(0).normal(size=(200, 3))
    path = unconditional_figure(model, data, tmp_path / "u.png", n=200)
    assert path.stat().st_size > 1000
    assert matplotlib.rcParams["text.usetex"] is True  # the caller's setting is left alone
