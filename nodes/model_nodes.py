"""Loader nodes: the EchoMimic V1 models and the Whisper-tiny audio encoder.

Both are wrapped in ComfyUI's ModelPatcher, so comfy.model_management loads them onto the GPU when a
node needs them and offloads them when other nodes need the memory.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import (
    AUDIO_ENCODER_TYPE,
    DEFAULT_WEIGHTS_FOLDER,
    DOWNLOAD_HINT,
    LOADERS_CATEGORY,
    MODEL_TYPE,
    PRECISIONS,
    VARIANTS,
    WEIGHTS_FOLDER_OF_RELEASE,
    EchoMimicNodeError,
    comfy_download_tqdm,
    resolve_weights_folder,
    tooltip,
    torch_dtype_for,
    user_errors,
    weights_folder_choices,
)

if TYPE_CHECKING:
    import torch

    from ..echomimic.audio.whisper_encoder import WhisperEncoder
    from ..echomimic.models.loading import EchoMimicModels
    from ..echomimic.weights_download import RequiredFile


_WEIGHTS_FOLDER_TOOLTIP = (
    "Folder inside ComfyUI/models/echomimic holding the Hugging Face repository as downloaded: "
    "BadToBest/EchoMimic for V1 (EchoMimic), BadToBest/EchoMimicV2 for V2 (EchoMimicV2). "
    "extra_model_paths.yaml can add more locations under the key 'echomimic'. "
    "JSON configs (unet_config.json, inference.json, face_locator.json) in that folder override the shipped "
    "SD1.5 architecture."
)
_DOWNLOAD_TOOLTIP = (
    "Download missing official files of this choice from Hugging Face into the weights folder on first use "
    "(HF_ENDPOINT, HF_TOKEN and the Hugging Face cache apply; progress bar and Cancel work). Off: a missing "
    "file is an error naming it."
)
_COMPILE_TOOLTIP = (
    "torch.compile the denoising UNet's blocks (resnets, attention, feed-forwards, motion modules). Faster "
    "sampling on a GPU after a slow first run (compilation, and again for a new size); needs a working "
    "Triton/C++ compiler. Off: plain PyTorch."
)
_PRECISION_TOOLTIP = "Weights and compute precision. auto: fp16 (or bf16) where the GPU runs it well, fp32 on CPU."


@dataclass
class LoadedEchoMimic:
    """What flows through an ECHOMIMIC_MODEL socket."""

    models: EchoMimicModels
    patcher: Any  # comfy.model_patcher.ModelPatcher around all of the models' modules
    variant: str  # library id (release.VARIANT_NAMES): audio, audio_acc, pose, pose_acc, v2, v2_acc
    variant_label: str  # the combo value, for messages
    dtype: torch.dtype

    @property
    def conditioning(self) -> str:
        return self.models.conditioning

    @property
    def accelerated(self) -> bool:
        return self.models.accelerated


@dataclass
class LoadedAudioEncoder:
    """What flows through an ECHOMIMIC_AUDIO_ENCODER socket."""

    encoder: WhisperEncoder
    patcher: Any
    dtype: torch.dtype


@functools.cache
def _container_class() -> type:
    import torch

    class EchoMimicModules(torch.nn.Module):
        """Every module of one loaded model, so a single ModelPatcher moves them all together."""

        def __init__(self, modules: dict[str, Any], dtype: torch.dtype) -> None:
            super().__init__()
            self._weights_dtype = dtype
            for name, module in modules.items():
                self.add_module(name, module)

        def get_dtype(self) -> torch.dtype:  # ModelPatcher.model_dtype() asks for it
            return self._weights_dtype

    return EchoMimicModules


def _module_container(modules: dict[str, Any], dtype: torch.dtype) -> Any:
    """One nn.Module holding every module and reporting their dtype."""
    return _container_class()(modules, dtype)


def download_missing_files(weights_dir: str, files: list[RequiredFile]) -> None:
    """Fetch the files of `files` (weights_download.RequiredFile) that weights_dir lacks, with ComfyUI's
    progress bar and Cancel; each lands complete or not at all."""
    from ..echomimic.weights_download import download_hub_files

    for item in files:
        download_hub_files(weights_dir, [item], tqdm_class=comfy_download_tqdm(item.repo_filename))


def make_patcher(modules: dict[str, Any], dtype: torch.dtype) -> Any:
    """A ModelPatcher over `modules`, on ComfyUI's compute device; the weights start offloaded."""
    import comfy.model_management as model_management
    import comfy.model_patcher

    container = _module_container(modules, dtype)
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
    DESCRIPTION = (
        "Loads an EchoMimic model: the reference UNet, the denoising UNet (+ motion module) and its "
        "conditioning net (V1: face locator; V2 semi-body: pose encoder)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "variant": (
                    list(VARIANTS),
                    tooltip(
                        "Which EchoMimic weights to load. V1 audio: a talking head driven by speech only; V1 "
                        "landmarks: driven by facial landmark images plus speech (weights folder EchoMimic); V2 "
                        "semi-body: a half-body driven by hand-pose images plus speech (weights folder EchoMimicV2); "
                        "accelerated: "
                        "distilled weights for 6 steps at cfg 1.",
                        default="V1 audio",
                    ),
                ),
                "precision": (list(PRECISIONS), tooltip(_PRECISION_TOOLTIP, default="auto")),
                "weights_folder": (
                    weights_folder_choices(),
                    tooltip(_WEIGHTS_FOLDER_TOOLTIP, default=DEFAULT_WEIGHTS_FOLDER),
                ),
            },
            # Optional and at the end: workflows saved before it existed keep loading (default on).
            "optional": {
                "download_missing": ("BOOLEAN", tooltip(_DOWNLOAD_TOOLTIP, default=True)),
                "compile": ("BOOLEAN", tooltip(_COMPILE_TOOLTIP, default=False)),
            },
        }

    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The EchoMimic models, managed by ComfyUI's model management.",)
    FUNCTION = "load"
    CATEGORY = LOADERS_CATEGORY

    @user_errors
    def load(
        self, variant: str, precision: str, weights_folder: str, download_missing: bool = True, compile: bool = False
    ) -> tuple[LoadedEchoMimic]:
        if variant not in VARIANTS:
            raise EchoMimicNodeError(f"Unknown variant {variant!r}; choose one of {list(VARIANTS)}.")
        import comfy.model_management as model_management

        from ..echomimic.models.loading import load_echomimic

        weights_dir = resolve_weights_folder(weights_folder)
        from ..echomimic.weights_download import model_files, refuse_other_release

        # Before anything is downloaded into it; in node words (the combo label, the models/echomimic folders).
        refuse_other_release(
            weights_dir, VARIANTS[variant], variant_name=variant, folder_names=WEIGHTS_FOLDER_OF_RELEASE
        )
        files = model_files(VARIANTS[variant])
        if download_missing:
            download_missing_files(weights_dir, files)
        missing = [item.relative_path for item in files if item.found_path(Path(weights_dir)) is None]
        if missing:
            raise EchoMimicNodeError(
                f"The {variant} weights are missing from {weights_dir}: {', '.join(missing)}. " + DOWNLOAD_HINT
            )
        dtype = torch_dtype_for(precision, model_management.get_torch_device())
        # Load on the offload device; ModelPatcher moves the weights when sampling needs them.
        models = load_echomimic(
            weights_dir, VARIANTS[variant], device=model_management.unet_offload_device(), dtype=dtype
        )
        if compile:
            from ..echomimic.models.compile import compile_unet_blocks

            compile_unet_blocks(models.denoising_unet)
        patcher = make_patcher({name: module for name, module in _named_modules(models)}, dtype)
        return (
            LoadedEchoMimic(
                models=models, patcher=patcher, variant=VARIANTS[variant], variant_label=variant, dtype=dtype
            ),
        )


def _named_modules(models: Any) -> list[tuple[str, Any]]:
    return [
        ("reference_unet", models.reference_unet),
        ("denoising_unet", models.denoising_unet),
        ("face_locator", models.face_locator),
    ]


RELEASE_FROM_FOLDER = "from the folder"
# The Audio Encoder Loader's release combo -> release.Variant.version (None: told by the folder).
RELEASE_CHOICES: dict[str, str | None] = {RELEASE_FROM_FOLDER: None, "V1": "v1", "V2": "v2"}


class EchoMimicAudioEncoderLoader:
    DESCRIPTION = (
        "Loads the Whisper-tiny audio encoder EchoMimic uses (audio_processor/whisper_tiny.pt in V1's "
        "folder, audio_processor/tiny.pt in V2's)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "weights_folder": (
                    weights_folder_choices(),
                    tooltip(
                        "Folder inside ComfyUI/models/echomimic with Whisper-tiny: audio_processor/whisper_tiny.pt "
                        "(BadToBest/EchoMimic, default EchoMimic) or audio_processor/tiny.pt (BadToBest/EchoMimicV2, "
                        "EchoMimicV2).",
                        default=DEFAULT_WEIGHTS_FOLDER,
                    ),
                ),
                "precision": (
                    list(PRECISIONS),
                    tooltip(
                        "Encoder precision. fp32 matches the official features exactly; auto picks fp16/bf16 on GPUs.",
                        default="fp32",
                    ),
                ),
            },
            "optional": {  # at the end: saved workflows keep loading
                "download_missing": ("BOOLEAN", tooltip(_DOWNLOAD_TOOLTIP, default=True)),
                "release": (
                    list(RELEASE_CHOICES),
                    tooltip(
                        "Which release's Whisper file to fetch into a folder that has none (V1: whisper_tiny.pt, "
                        "V2: tiny.pt). 'from the folder' tells it by the files there, or by the folder's name "
                        "when it is EchoMimic or EchoMimicV2.",
                        default=RELEASE_FROM_FOLDER,
                    ),
                ),
            },
        }

    RETURN_TYPES = (AUDIO_ENCODER_TYPE,)
    RETURN_NAMES = ("audio_encoder",)
    OUTPUT_TOOLTIPS = ("The Whisper-tiny encoder for the EchoMimic Audio Features node.",)
    FUNCTION = "load"
    CATEGORY = LOADERS_CATEGORY

    @user_errors
    def load(
        self, weights_folder: str, precision: str, download_missing: bool = True, release: str = RELEASE_FROM_FOLDER
    ) -> tuple[LoadedAudioEncoder]:
        import comfy.model_management as model_management

        from ..echomimic.audio import load_whisper_encoder
        from ..echomimic.weights_download import whisper_file_of_folder

        weights_dir = resolve_weights_folder(weights_folder)
        wanted = whisper_file_of_folder(weights_dir, RELEASE_CHOICES[release], folder_names=WEIGHTS_FOLDER_OF_RELEASE)
        if download_missing:
            download_missing_files(weights_dir, [wanted])
        found = wanted.found_path(Path(weights_dir))
        path = str(found) if found is not None else os.path.join(weights_dir, wanted.relative_path)
        if not os.path.isfile(path):
            raise EchoMimicNodeError(
                f"The Whisper-tiny audio encoder is missing: {path} does not exist. {DOWNLOAD_HINT}"
            )
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
