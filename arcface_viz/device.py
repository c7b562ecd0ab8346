"""Pick the compute device: CUDA when present, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The device to train on; ``prefer`` ("cpu", "cuda", "mps") overrides when it is available."""
    if prefer:
        if prefer == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA device is available")
        if prefer == "mps" and not _mps():
            raise ValueError("MPS was asked for but is not available")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps():
        return torch.device("mps")
    return torch.device("cpu")


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def describe(device: torch.device | None = None) -> str:
    """A short human label, e.g. 'CUDA · NVIDIA H100' or 'CPU · 2 threads'."""
    device = device or pick_device()
    if device.type == "cuda":
        return f"CUDA · {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "MPS · Apple GPU"
    return f"CPU · {torch.get_num_threads()} threads"
