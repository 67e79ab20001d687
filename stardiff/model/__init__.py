"""The network and its samplers: embedding, encoder, head, schedule, noise, samplers.

Imports only torch and itself: a network and a way to draw from it, nothing about files,
tables or training.
"""

from stardiff.model.head import DiffusionHead, DistilledHead
from stardiff.model.network import DensityNetwork, NetworkConfig, attention_mask
from stardiff.model.noise import DRAW_BLOCK, ROW_BLOCK, BlockNoise
from stardiff.model.samplers import (
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    SAMPLERS,
    TILE_BYTES,
    ancestral,
    ddim,
    distilled,
    multistep,
    resolve_sampler,
    rollout,
    solve,
    student_steps,
    teacher_states,
)

__all__ = [
    "DEFAULT_SAMPLER",
    "DEFAULT_STEPS",
    "DRAW_BLOCK",
    "ROW_BLOCK",
    "SAMPLERS",
    "TILE_BYTES",
    "BlockNoise",
    "DensityNetwork",
    "DiffusionHead",
    "DistilledHead",
    "NetworkConfig",
    "ancestral",
    "attention_mask",
    "ddim",
    "distilled",
    "multistep",
    "resolve_sampler",
    "rollout",
    "solve",
    "student_steps",
    "teacher_states",
]
