"""Convert the official ``.pth`` release files to ``.safetensors`` (fp16 or fp32).

``.safetensors`` loads faster, memory-maps, and can never carry code; the loader prefers it when both
files are present.
"""

from __future__ import annotations

from pathlib import Path

from .atomic import atomic_path, check_output_folder
from .dtypes import torch_dtype
from .errors import InputError
from .weights import read_state_dict


def convert_file(source: str | Path, target: str | Path | None = None, dtype: str = "fp16") -> Path:
    """Write ``source`` (.pth, read weights-only) as ``target`` (.safetensors beside it by default).

    Floating tensors are cast to ``dtype`` except the motion modules' sinusoid tables (``.pe``), which
    stay fp32 as the exact values they are.
    """
    from safetensors.torch import save_file

    target_dtype = torch_dtype(dtype)  # InputError naming the choices for an unknown name
    source = Path(source)
    target = Path(target) if target is not None else source.with_suffix(".safetensors")
    state = read_state_dict(source)
    converted = {}
    for key, tensor in state.items():
        if tensor.is_floating_point() and not key.endswith(".pe"):
            tensor = tensor.to(target_dtype)
        converted[key] = tensor.contiguous()
    with atomic_path(target) as temporary:  # never leave a half-written file under the real name
        save_file(converted, str(temporary), metadata={"converted_from": source.name, "dtype": dtype})
    return target


def convert_folder(folder: str | Path, dtype: str = "fp16", overwrite: bool = False) -> list[Path]:
    """Convert every EchoMimic ``*.pth`` at the top of ``folder``; returns the files written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; pass the weights folder (the BadToBest/EchoMimic download).")
    check_output_folder(folder, create=False)  # writable, before the first (slow) conversion
    written = []
    for source in sorted(folder.glob("*.pth")):
        target = source.with_suffix(".safetensors")
        if target.exists() and not overwrite:
            continue
        written.append(convert_file(source, target, dtype))
    return written
