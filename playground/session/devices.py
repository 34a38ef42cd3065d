"""Where a run computes: the device a visitor picked, how it is named, and torch's threads."""

from __future__ import annotations

import os

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks CUDA when available, else the CPU; "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device '{device}' (auto, cpu or cuda)")
    return torch.device(device)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})"


def warm_up() -> None:
    """Pay torch's one-off costs at start-up rather than on the first visitor's Train: the first optimizer
    imports torch._dynamo (1.4 s here)."""
    from models.base import make_adam

    make_adam([torch.zeros(1, requires_grad=True)], 1e-3)


def configure_threads() -> int:
    """One intra-op thread by default: tiny models gain little from two, and lose 4-6x when the
    cores are shared with the web server or another visitor (../shared/PERFORMANCE.md).
    PLAYGROUND_THREADS overrides."""
    n = int(os.environ.get("PLAYGROUND_THREADS", "1"))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
