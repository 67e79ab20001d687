"""An exponential moving average of the network's weights (``train.ema``).

Diffusion models are usually sampled from an average of the weights over the last steps
rather than from the last step's weights, which carry the noise of the last few gradient
steps. The average is a second copy of the network; it is what validation scores and what
the model folder holds, while the optimizer keeps stepping the raw weights. The decay ramps
up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early weights (random
initialization) are forgotten quickly.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of a module's floating-point parameters and buffers.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network; it is copied once.
    decay : float
        The final decay per optimizer step, in (0, 1).
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(module)
        self.module.requires_grad_(False)

    def _pairs(self, module: torch.nn.Module) -> tuple[list, list]:
        avg = [t for t in self.module.state_dict().values() if t.is_floating_point()]
        raw = [t for t in module.state_dict().values() if t.is_floating_point()]
        return avg, raw

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Move the average toward ``module``'s current weights by one step."""
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        avg, raw = self._pairs(module)
        for a, r in zip(avg, raw, strict=True):
            a.lerp_(r, 1.0 - d)
        self.updates += 1
