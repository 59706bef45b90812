"""Reading weight files safely and loading them strictly.

``.pth``/``.pt``/``.bin`` files are opened only with ``torch.load(weights_only=True)``: a pickle that
would run code is refused. ``.safetensors`` files are read with safetensors.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
_SHOWN_KEYS = 5


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` state dict from ``.safetensors`` or a weights-only ``.pth``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weight file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle_weights(path)
    raise WeightsError(
        f"{path.name}: unknown weight format {suffix!r}. Use the official .pth files or .safetensors."
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path} is not a readable .safetensors file ({exc}). It may be truncated: download it again."
        ) from None


def _read_pickle_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # Legacy (non-zip) torch files cannot be memory-mapped; still weights-only.
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path} was refused: it is not a plain weights file (its pickle asks to run or import "
            f"code: {str(exc).splitlines()[0][:200]}). Nothing from it was executed. Use the official "
            "release file or a .safetensors copy."
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path} could not be read ({str(exc).splitlines()[0][:200]}). The file is probably truncated "
            "or from another program: download it again."
        ) from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors; it is not an EchoMimic weight file.")
    return dict(loaded)


def _describe(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return shown + more


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                     *, expected_keys: Iterable[str] | None = None, hint: str = "") -> None:
    """Raise a :class:`WeightsError` naming ``source`` unless ``state_dict`` fits ``module`` exactly.

    ``expected_keys`` restricts the check to part of the module (a file that holds only some keys).
    """
    own = module.state_dict()
    expected = set(own) if expected_keys is None else set(expected_keys)
    given = set(state_dict)
    missing, unexpected = expected - given, given - expected
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_describe(unexpected)}")
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}"
        for key in sorted(expected & given)
        if tuple(state_dict[key].shape) != tuple(own[key].shape)
    ]
    if mismatched:
        problems.append(
            f"{len(mismatched)} tensors of another shape (file vs model): " + "; ".join(mismatched[:_SHOWN_KEYS])
        )
    if problems:
        advice = hint or "Check that the file belongs to this model variant and that the config matches it."
        raise WeightsError(f"{source} does not fit the model: " + "; ".join(problems) + f". {advice}")

