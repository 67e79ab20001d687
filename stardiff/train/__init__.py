"""Training: recipe → prepared data → batches → steps → a model folder.

:func:`fit` (:mod:`.loop`) is the whole job. On its way: :mod:`.prepared` (recipe → standardized
matrix, split, network), :mod:`.batches` (random inputs and requests per row), :mod:`.step`
(noise, diffusion steps, gradients), :mod:`.budget` (a budget in minutes), :mod:`.ema` (a
moving average of the weights) and :mod:`.distributed` (several processes under ``torchrun``).
:func:`distill` (:mod:`.distillation`) trains a few-step student of a trained model's head.
"""

from stardiff.train.batches import Batch, BatchBuilder
from stardiff.train.distillation import distill
from stardiff.train.loop import fit
from stardiff.train.prepared import Prepared, network_for, prepare

__all__ = ["Batch", "BatchBuilder", "Prepared", "distill", "fit", "network_for", "prepare"]
