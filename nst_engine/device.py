"""Choosing a torch device and setting it up for fast style transfer."""

from __future__ import annotations

import torch

from nst_engine.errors import InvalidRequest


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: CUDA when present unless ``device`` says otherwise.

    A bare ``"cuda"`` is pinned to the current CUDA device so that caches keyed by
    device see one name for one GPU.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidRequest(f"Unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'.") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidRequest(f"Device {device!r} was asked for, but no CUDA GPU is available here.")
        index = torch.cuda.current_device() if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise InvalidRequest(
                f"Device {device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)."
            )
        resolved = torch.device("cuda", index)
    elif resolved.type != "cpu":
        raise InvalidRequest(f"Unsupported device {device!r}; use 'cpu', 'cuda' or 'cuda:N'.")
    return resolved


def configure_backends(device: torch.device) -> None:
    """Let cuDNN pick the fastest kernels and allow TF32 (style transfer needs no fp32-exact convs)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def weight_format(device: torch.device) -> torch.memory_format:
    """Layout for VGG's convolution weights: channels_last runs 3x3 convolutions faster on
    tensor-core GPUs (and makes every activation channels_last, whatever the input's layout);
    NCHW is the better CPU layout."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
