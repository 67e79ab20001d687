"""The network, one concept per module: embedding, encoder, head, schedule, sampler."""

from stardiff.model.network import DensityNetwork, NetworkConfig
from stardiff.model.sampler import ancestral, ddim, multistep

__all__ = ["DensityNetwork", "NetworkConfig", "ancestral", "ddim", "multistep"]
