"""Files on disk: the model folder (config + weights, one writer), checkpoints, row hashes.

Everything ``stardiff`` writes into a model folder is written here: :mod:`.files` (safetensors
and JSON, atomically; training checkpoints), :mod:`.folder` (what stardiff owns in a folder,
its lock, clean-up after kills), :mod:`.rowhash` (content hashes of the training rows) and
:mod:`.distilled` (few-step student heads beside the model).
"""

from stardiff.persist.distilled import (
    DISTILLED,
    distilled_file,
    load_distilled,
    read_distilled,
    save_distilled,
    teacher_digest,
)
from stardiff.persist.files import (
    CHECKPOINT,
    CONFIG,
    FIGURE_SOFTWARE,
    METRIC_FIELDS,
    METRICS,
    ROWS,
    WEIGHTS,
    TrainingState,
    atomic_write_text,
    check_pair,
    is_own_figure,
    load_row_hashes,
    load_tensors,
    load_training_state,
    load_weights,
    read_json,
    save_figure,
    save_model_files,
    save_row_hashes,
    save_training_state,
    save_weights,
    write_json,
)
from stardiff.persist.folder import (
    OWN_NAMES,
    check_out_folder,
    foreign_entries,
    is_own,
    prepare_model_folder,
    training_folder,
)
from stardiff.persist.rowhash import NEAR_TABLES, near_hashes, row_hashes

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "DISTILLED",
    "FIGURE_SOFTWARE",
    "METRICS",
    "METRIC_FIELDS",
    "NEAR_TABLES",
    "OWN_NAMES",
    "ROWS",
    "TrainingState",
    "WEIGHTS",
    "atomic_write_text",
    "check_out_folder",
    "check_pair",
    "distilled_file",
    "is_own_figure",
    "foreign_entries",
    "is_own",
    "load_row_hashes",
    "load_distilled",
    "load_tensors",
    "load_training_state",
    "load_weights",
    "near_hashes",
    "prepare_model_folder",
    "read_distilled",
    "read_json",
    "row_hashes",
    "save_distilled",
    "save_figure",
    "save_model_files",
    "save_row_hashes",
    "save_training_state",
    "save_weights",
    "teacher_digest",
    "training_folder",
    "write_json",
]
