"""Is the model right? Calibration (PIT), CRPS, W1 and the paper's figures on held-out rows.

:func:`evaluate` (:mod:`.evaluation`) scores a model on a table's rows that it did not train on
(:mod:`.rows` finds them) and draws the figures (:mod:`.figures`).
"""

from stardiff.evaluate.evaluation import (
    column_metrics,
    evaluate,
    subset_columns,
    subset_metrics,
    task_metrics,
)
from stardiff.evaluate.rows import SPLITS, EvalData, load_eval_data

__all__ = [
    "SPLITS",
    "EvalData",
    "column_metrics",
    "evaluate",
    "load_eval_data",
    "subset_columns",
    "subset_metrics",
    "task_metrics",
]
