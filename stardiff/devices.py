"""Device names a user types (``cpu``, ``cuda``, ``cuda:N``, ``mps``) checked before any work."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """The torch device ``name`` names, or a one-line ``ValueError`` naming ``option``.

    Parameters
    ----------
    name : str or torch.device
        A device name; ``cuda`` and ``cuda:N`` need that GPU, ``mps`` an Apple GPU.
    option : str
        The option or recipe key the name came from (used in the message).
    """
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{option}: unknown device {name!r} (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"{option} = {str(name)!r} but no CUDA device is available")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"{option} = {str(name)!r} but only {n} CUDA device(s) exist")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} = {str(name)!r} but no MPS device is available")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{option}: unsupported device {name!r} (cpu, cuda, cuda:N)")
    return dev
