"""Stand-in for `comfy.model_management`: CPU device, the interrupt flag, model loading bookkeeping.

The interrupt functions behave like ComfyUI's (throw_exception_if_processing_interrupted resets the
flag and raises InterruptProcessingException). load_models_gpu records what was loaded and calls the
patcher's load, like ComfyUI does for a model that fits.
"""

from __future__ import annotations

import threading

import torch

_interrupt_lock = threading.RLock()
interrupt_processing = False
# Every load_models_gpu call: (patchers, memory_required, force_full_load).
load_calls: list[tuple[list, int, bool]] = []
current_loaded_models: list = []


class InterruptProcessingException(Exception):
    pass


def interrupt_current_processing(value: bool = True) -> None:
    global interrupt_processing
    with _interrupt_lock:
        interrupt_processing = value


def processing_interrupted() -> bool:
    with _interrupt_lock:
        return interrupt_processing


def throw_exception_if_processing_interrupted() -> None:
    global interrupt_processing
    with _interrupt_lock:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()


def get_torch_device() -> torch.device:
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    return False


def should_use_bf16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    return False


def load_models_gpu(
    models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False
) -> None:
    load_calls.append((list(models), memory_required, force_full_load))
    for patcher in models:
        patcher.patch_model(device_to=patcher.load_device)
        if patcher not in current_loaded_models:
            current_loaded_models.append(patcher)


def load_model_gpu(model) -> None:
    load_models_gpu([model])
