"""Loader nodes: the EchoMimic V1 models and the Whisper-tiny audio encoder.

Both are wrapped in ComfyUI's ModelPatcher, so comfy.model_management loads them onto the GPU when a
node needs them and offloads them when other nodes need the memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .common import (
    AUDIO_ENCODER_TYPE,
    CATEGORY,
    DEFAULT_WEIGHTS_FOLDER,
    DOWNLOAD_HINT,
    MODEL_TYPE,
    PRECISIONS,
    VARIANTS,
    WHISPER_RELATIVE_PATH,
    EchoMimicNodeError,
    resolve_weights_folder,
    tooltip,
    torch_dtype_for,
    user_errors,
    weights_folder_choices,
)

_WEIGHTS_FOLDER_TOOLTIP = (
    "Folder inside ComfyUI/models/echomimic holding the Hugging Face repository BadToBest/EchoMimic as "
    "downloaded (default: EchoMimic). extra_model_paths.yaml can add more locations under the key 'echomimic'. "
    "JSON configs (unet_config.json, inference.json, face_locator.json) in that folder override the shipped "
    "SD1.5 architecture."
)
_PRECISION_TOOLTIP = (
    "Weights and compute precision. auto: fp16 (or bf16) where the GPU runs it well, fp32 on CPU."
)


@dataclass
class LoadedEchoMimic:
    """What flows through an ECHOMIMIC_MODEL socket."""

    models: Any  # echomimic.models.loading.EchoMimicModels
    patcher: Any  # comfy.model_patcher.ModelPatcher around all of the models' modules
    variant: str  # library id: audio | audio_acc | pose | pose_acc
    variant_label: str  # the combo value, for messages
    dtype: Any  # torch.dtype

    @property
    def mode(self) -> str:
        return self.models.mode

    @property
    def accelerated(self) -> bool:
        return self.models.accelerated


@dataclass
class LoadedAudioEncoder:
    """What flows through an ECHOMIMIC_AUDIO_ENCODER socket."""

    encoder: Any  # echomimic.audio WhisperEncoder (an nn.Module)
    patcher: Any
    dtype: Any


def _module_container(modules: dict[str, Any]) -> Any:
    """One nn.Module holding every module, so a single ModelPatcher moves them all together."""
    import torch

    container = torch.nn.Module()
    for name, module in modules.items():
        container.add_module(name, module)
    return container


def make_patcher(modules: dict[str, Any], dtype: Any) -> Any:
    """A ModelPatcher over `modules`, on ComfyUI's compute device; the weights start offloaded."""
    import comfy.model_management as model_management
    import comfy.model_patcher

    container = _module_container(modules)
    container.get_dtype = lambda: dtype  # ModelPatcher.model_dtype() asks for it
    load_device = model_management.get_torch_device()
    offload_device = model_management.unet_offload_device()
    container.to(offload_device)
    return comfy.model_patcher.ModelPatcher(container, load_device=load_device, offload_device=offload_device)


def load_patched_models(patcher: Any, memory_required: int = 0) -> Any:
    """Ask comfy.model_management to bring the whole model onto its device; returns that device.

    force_full_load: these plain torch modules cannot run partly offloaded (no comfy.ops casting).
    """
    import comfy.model_management as model_management

    model_management.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    return patcher.load_device


class EchoMimicModelLoader:
    DESCRIPTION = "Loads the EchoMimic V1 reference UNet, denoising UNet (+ motion module) and face locator."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "variant": (list(VARIANTS), tooltip(
                    "Which EchoMimic V1 weights to load. audio: driven by speech only; landmarks: driven by "
                    "facial landmark images plus speech; accelerated: distilled weights for 6 steps at cfg 1.",
                    default="V1 audio")),
                "precision": (list(PRECISIONS), tooltip(_PRECISION_TOOLTIP, default="auto")),
                "weights_folder": (weights_folder_choices(), tooltip(_WEIGHTS_FOLDER_TOOLTIP, default=DEFAULT_WEIGHTS_FOLDER)),
            }
        }

    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The EchoMimic models, managed by ComfyUI's model management.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @user_errors
    def load(self, variant: str, precision: str, weights_folder: str) -> tuple[LoadedEchoMimic]:
        if variant not in VARIANTS:
            raise EchoMimicNodeError(f"Unknown variant {variant!r}; choose one of {list(VARIANTS)}.")
        import comfy.model_management as model_management

        from ..echomimic.models.loading import load_echomimic_v1

        weights_dir = resolve_weights_folder(weights_folder)
        dtype = torch_dtype_for(precision, model_management.get_torch_device())
        # Load on the offload device; ModelPatcher moves the weights when sampling needs them.
        models = load_echomimic_v1(weights_dir, VARIANTS[variant], device=model_management.unet_offload_device(), dtype=dtype)
        patcher = make_patcher({name: module for name, module in _named_modules(models)}, dtype)
        return (LoadedEchoMimic(models=models, patcher=patcher, variant=VARIANTS[variant],
                                variant_label=variant, dtype=dtype),)


def _named_modules(models: Any) -> list[tuple[str, Any]]:
    return [("reference_unet", models.reference_unet), ("denoising_unet", models.denoising_unet),
            ("face_locator", models.face_locator)]


class EchoMimicAudioEncoderLoader:
    DESCRIPTION = "Loads the Whisper-tiny audio encoder EchoMimic uses (audio_processor/whisper_tiny.pt)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "weights_folder": (weights_folder_choices(), tooltip(
                    "Folder inside ComfyUI/models/echomimic with audio_processor/whisper_tiny.pt "
                    "(the BadToBest/EchoMimic download; default: EchoMimic).", default=DEFAULT_WEIGHTS_FOLDER)),
                "precision": (list(PRECISIONS), tooltip(
                    "Encoder precision. fp32 matches the official features exactly; auto picks fp16/bf16 on GPUs.",
                    default="fp32")),
            }
        }

    RETURN_TYPES = (AUDIO_ENCODER_TYPE,)
    RETURN_NAMES = ("audio_encoder",)
    OUTPUT_TOOLTIPS = ("The Whisper-tiny encoder for the EchoMimic Audio Features node.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @user_errors
    def load(self, weights_folder: str, precision: str) -> tuple[LoadedAudioEncoder]:
        import comfy.model_management as model_management

        from ..echomimic.audio import load_whisper_encoder

        path = os.path.join(resolve_weights_folder(weights_folder), WHISPER_RELATIVE_PATH)
        if not os.path.isfile(path):
            raise EchoMimicNodeError(f"The Whisper-tiny audio encoder is missing: {path} does not exist. {DOWNLOAD_HINT}")
        dtype = torch_dtype_for(precision, model_management.get_torch_device())
        encoder = load_whisper_encoder(path, device=model_management.unet_offload_device(), dtype=dtype)
        patcher = make_patcher({"encoder": encoder}, dtype)
        return (LoadedAudioEncoder(encoder=encoder, patcher=patcher, dtype=dtype),)


NODE_CLASS_MAPPINGS = {
    "EchoMimicModelLoader": EchoMimicModelLoader,
    "EchoMimicAudioEncoderLoader": EchoMimicAudioEncoderLoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EchoMimicModelLoader": "Load EchoMimic Model",
    "EchoMimicAudioEncoderLoader": "Load EchoMimic Audio Encoder (Whisper-tiny)",
}
