"""``--device`` / ``--dtype`` to torch objects (torch is imported only when called)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    import torch


def _pick_device(name: str) -> torch.device:
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise InputError(f"--device {name!r} is not a device torch knows ({error}); use cpu or cuda.") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _pick_dtype(name: str, device: torch.device) -> torch.dtype:
    import torch

    if name == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    from ..dtypes import torch_dtype

    return torch_dtype(name)
