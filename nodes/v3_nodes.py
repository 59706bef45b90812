"""EchoMimic V3 flash nodes: loaders, audio features and the sampler, over ComfyUI's own Wan parts.

The prompt comes as CONDITIONING (core Load CLIP type wan + CLIP Text Encode), the picture's CLIP tokens as
CLIP_VISION_OUTPUT (core Load CLIP Vision + CLIP Vision Encode) and the VAE from core Load VAE
(wan_2.1_vae): the files other Wan workflows already use. For the official release layout
(``models/echomimic/EchoMimicV3/Wan2.1-Fun-V1.1-1.3B-InP/``) the project's own text, CLIP and VAE nodes give
the same socket types with the official numbers. Every rule of a run lives in ``echomimic.v3``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..echomimic import release
from ..echomimic.v3.files import role_path
from .common import (
    CATEGORY,
    LOADERS_CATEGORY,
    PRECISIONS,
    EchoMimicNodeError,
    finite_inputs,
    models_base_paths,
    resolve_weights_folder,
    tooltip,
    user_errors,
)
from .model_nodes import download_missing_files, load_patched_models, make_patcher

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..echomimic.v3.audio import V3AudioEncoder
    from ..echomimic.v3.transformer import FlashTransformer
    from .comfy_types import ComfyAudio


V3_CATEGORY = f"{CATEGORY}/V3 flash"
V3_MODEL_TYPE = "ECHOMIMIC_V3_MODEL"
V3_AUDIO_ENCODER_TYPE = "ECHOMIMIC_V3_AUDIO_ENCODER"
V3_AUDIO_FEATURES_TYPE = "ECHOMIMIC_V3_AUDIO_FEATURES"
DEFAULT_V3_FOLDER = "EchoMimicV3"
_FOLDER_TOOLTIP = (
    "Folder inside ComfyUI/models/echomimic in the official V3 layout (default EchoMimicV3): "
    "transformer/ (BadToBest/EchoMimicV3), Wan2.1-Fun-V1.1-1.3B-InP/, chinese-wav2vec2-base/."
)
_DOWNLOAD_TOOLTIP = (
    "Download the missing official files into the folder on first use (progress bar and Cancel; "
    "HF_ENDPOINT and HF_TOKEN apply). Off: a missing file is an error naming it."
)


def v3_folder_choices() -> list[str]:
    names = {DEFAULT_V3_FOLDER}
    for base in models_base_paths():
        if os.path.isdir(base):
            names.update(
                entry.name
                for entry in os.scandir(base)
                if entry.is_dir() and not entry.name.startswith(".") and entry.name != "mediapipe"
            )
    return sorted(names, key=lambda name: (name != DEFAULT_V3_FOLDER, name.lower()))


def _files(*roles: str) -> list[Any]:
    from ..echomimic.v3.files import required_files

    return [item for item in required_files() if item.role in roles or item.role.split(":")[0] in roles]


def _v3_folder(weights_folder: str, download: bool, *roles: str) -> str:
    """The V3 folder with the files of ``roles`` present (downloaded when asked), or one line naming them; a
    file in place that cannot be what its name says (an HTML page, truncated) is one line before any loads."""
    from pathlib import Path

    from ..echomimic.v3.files import check_files_in_place, download_command, refuse_v1_v2_folder

    folder = resolve_weights_folder(weights_folder)
    refuse_v1_v2_folder(folder)
    wanted = _files(*roles)
    check_files_in_place(
        folder,
        wanted,
        fix=(
            "run the node again to fetch it (download_missing is on)"
            if download
            else "switch on download_missing to fetch it again"
        )
        + f", or run {download_command(folder)}",
    )
    if download:
        download_missing_files(folder, [item for item in wanted if item.found_path(Path(folder)) is None])
    missing = [item for item in wanted if item.found_path(Path(folder)) is None]
    if missing:
        names = ", ".join(f"{item.relative_path} ({item.repo_id})" for item in missing[:3])
        raise EchoMimicNodeError(
            f"{len(missing)} V3 file(s) are missing from {folder}: {names}. Switch on "
            "download_missing, or download them into that folder."
        )
    return folder


@dataclass
class LoadedFlash:
    """What flows through an ECHOMIMIC_V3_MODEL socket."""

    transformer: FlashTransformer
    patcher: Any
    dtype: torch.dtype


@dataclass
class LoadedV3AudioEncoder:
    encoder: V3AudioEncoder
    patcher: Any


@dataclass
class V3Speech:
    """What flows through an ECHOMIMIC_V3_AUDIO_FEATURES socket: the speech, ready for the sampler, which
    encodes it for exactly the frames its chunk plan makes (wav2vec2's features depend on that count)."""

    speech_16k: np.ndarray  # (N,) float32, mono 16 kHz
    duration: float  # seconds, as the official code measures it
    fps: float
    encoder: LoadedV3AudioEncoder
    waveform: torch.Tensor  # the AUDIO as given, for the trimmed output
    sample_rate: int


class EchoMimicV3ModelLoader:
    DESCRIPTION = (
        "Loads the EchoMimic V3 flash transformer (Wan2.1-Fun-1.3B-InP with audio cross-attention) "
        "from BadToBest/EchoMimicV3, managed by ComfyUI's model management."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "weights_folder": (v3_folder_choices(), tooltip(_FOLDER_TOOLTIP, default=DEFAULT_V3_FOLDER)),
                "precision": (
                    list(PRECISIONS),
                    tooltip("auto: bf16 on GPUs that have it (as released), else fp16; fp32 on CPU.", default="auto"),
                ),
                "download_missing": ("BOOLEAN", tooltip(_DOWNLOAD_TOOLTIP, default=True)),
            }
        }

    RETURN_TYPES = (V3_MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The V3 flash transformer, for the EchoMimic V3 Sampler.",)
    FUNCTION = "load"
    CATEGORY = LOADERS_CATEGORY

    @user_errors
    def load(self, weights_folder: str, precision: str, download_missing: bool = True) -> tuple[LoadedFlash]:
        import comfy.model_management as model_management

        from ..echomimic.dtypes import v3_dtype
        from ..echomimic.v3.transformer import load_flash_transformer

        dtype = v3_dtype(precision, model_management.get_torch_device())  # a bad name fails before any download
        folder = _v3_folder(weights_folder, download_missing, "transformer", "transformer_config")
        transformer = load_flash_transformer(
            role_path(folder, "transformer"),
            role_path(folder, "transformer_config"),
            device=model_management.unet_offload_device(),
            dtype=dtype,
        )
        return (LoadedFlash(transformer, make_patcher({"transformer": transformer}, dtype), dtype),)


class EchoMimicV3AudioEncoderLoader:
    DESCRIPTION = "Loads chinese-wav2vec2-base, the audio encoder of EchoMimic V3 (float32, as officially)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "weights_folder": (v3_folder_choices(), tooltip(_FOLDER_TOOLTIP, default=DEFAULT_V3_FOLDER)),
                "download_missing": ("BOOLEAN", tooltip(_DOWNLOAD_TOOLTIP, default=True)),
            }
        }

    RETURN_TYPES = (V3_AUDIO_ENCODER_TYPE,)
    RETURN_NAMES = ("audio_encoder",)
    OUTPUT_TOOLTIPS = ("wav2vec2, for EchoMimic V3 Audio Features.",)
    FUNCTION = "load"
    CATEGORY = LOADERS_CATEGORY

    @user_errors
    def load(self, weights_folder: str, download_missing: bool = True) -> tuple[LoadedV3AudioEncoder]:
        import comfy.model_management as model_management
        import torch

        from ..echomimic.v3.audio import load_audio_encoder

        folder = _v3_folder(weights_folder, download_missing, "wav2vec2")
        encoder = load_audio_encoder(
            os.path.join(folder, release.V3_WAV2VEC2_FOLDER), device=model_management.unet_offload_device()
        )
        return (LoadedV3AudioEncoder(encoder, make_patcher({"encoder": encoder.model}, torch.float32)),)


class EchoMimicV3AudioFeatures:
    DESCRIPTION = (
        "Prepares speech from any AUDIO (Load Audio, a text-to-speech node, a video's sound) for the "
        "EchoMimic V3 Sampler: mono 16 kHz as the official code reads it. The speech sets the length."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "audio": ("AUDIO", tooltip("Speech, any sample rate, mono or stereo (channels are averaged).")),
                "audio_encoder": (V3_AUDIO_ENCODER_TYPE, tooltip("From Load EchoMimic V3 Audio Encoder.")),
                "fps": (
                    "FLOAT",
                    tooltip(
                        "Frame rate of the video (V3 was trained at 25).", default=25.0, min=1.0, max=120.0, step=1.0
                    ),
                ),
            }
        }

    RETURN_TYPES = (V3_AUDIO_FEATURES_TYPE,)
    RETURN_NAMES = ("audio_features",)
    OUTPUT_TOOLTIPS = ("The speech, for the EchoMimic V3 Sampler (it encodes it for exactly its frames).",)
    FUNCTION = "prepare"
    CATEGORY = V3_CATEGORY

    @user_errors
    def prepare(self, audio: ComfyAudio, audio_encoder: LoadedV3AudioEncoder, fps: float) -> tuple[V3Speech]:
        from ..echomimic.v3.audio import speech_16k
        from ..echomimic.v3.pipeline import speech_duration
        from .audio_nodes import audio_waveform

        waveform, sample_rate = audio_waveform(audio)
        speech = speech_16k(waveform[0].cpu().numpy(), sample_rate)
        # The official duration is the file's (moviepy / ffmpeg, in centiseconds); from the original samples.
        duration = speech_duration(int(waveform.shape[-1]), sample_rate)
        if not speech.size or duration * float(fps) < 1:
            raise EchoMimicNodeError("The audio is shorter than one video frame; give a clip with speech.")
        return (V3Speech(speech, duration, float(fps), audio_encoder, waveform, sample_rate),)


class EchoMimicV3Sampler:
    DESCRIPTION = (
        "Generates an EchoMimic V3 flash video: the portrait animated by the speech, following the "
        "prompt; any length, made chunk after chunk. Progress per step and chunk, Cancel, live "
        "previews."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        from ..echomimic.v3.pipeline import DEFAULT_CHUNK_OVERLAP, OFFICIAL_CHUNK_FRAMES, OFFICIAL_SEED
        from ..echomimic.v3.teacache import DEFAULT_THRESHOLD, MODES

        return {
            "required": {
                "model": (V3_MODEL_TYPE, tooltip("From Load EchoMimic V3 Model.")),
                "reference_image": ("IMAGE", tooltip("The portrait (the first image of the batch).")),
                "audio_features": (V3_AUDIO_FEATURES_TYPE, tooltip("From EchoMimic V3 Audio Features.")),
                "positive": (
                    "CONDITIONING",
                    tooltip(
                        "The prompt: CLIP Text Encode with Load CLIP (type wan, umt5_xxl), or EchoMimic V3 Text Encode."
                    ),
                ),
                "clip_vision_output": (
                    "CLIP_VISION_OUTPUT",
                    tooltip(
                        "The portrait's CLIP tokens: CLIP Vision Encode (crop none) with Load CLIP Vision "
                        "(clip_vision_h), or EchoMimic V3 CLIP Vision Encode."
                    ),
                ),
                "vae": ("VAE", tooltip("The Wan 2.1 VAE: Load VAE with wan_2.1_vae, or Load EchoMimic V3 VAE.")),
                "width": (
                    "INT",
                    tooltip(
                        "Video width, a multiple of 16; 0 = from the picture (at most 768x768 in area, as officially).",
                        default=0,
                        min=0,
                        max=2048,
                        step=16,
                    ),
                ),
                "height": (
                    "INT",
                    tooltip(
                        "Video height, a multiple of 16; 0 = from the picture.", default=0, min=0, max=2048, step=16
                    ),
                ),
                "length": ("INT", tooltip("Frames to make; 0 = the whole speech.", default=0, min=0, max=1_000_000)),
                "steps": (
                    "INT",
                    tooltip("Flow-matching UniPC steps (flash is distilled for 8).", default=8, min=1, max=200),
                ),
                "audio_cfg": (
                    "FLOAT",
                    tooltip(
                        "Audio guidance scale (official 3); 1 = none, half the work.",
                        default=3.0,
                        min=0.0,
                        max=20.0,
                        step=0.1,
                    ),
                ),
                "seed": (
                    "INT",
                    tooltip(
                        "Seed of the noise (official 43); chunk k uses seed + k.",
                        default=OFFICIAL_SEED,
                        min=0,
                        max=release.SEED_MAX,
                        control_after_generate=True,
                    ),
                ),
                "teacache": (
                    "BOOLEAN",
                    tooltip(
                        "Skip transformer blocks at steps whose timestep embedding barely changed (official: on).",
                        default=True,
                    ),
                ),
                "teacache_threshold": (
                    "FLOAT",
                    tooltip(
                        "Higher = faster, rougher (official 0.1).",
                        default=DEFAULT_THRESHOLD,
                        min=0.0,
                        max=1.0,
                        step=0.01,
                    ),
                ),
                "chunk_frames": (
                    "INT",
                    tooltip(
                        "Frames per model chunk for long speech, 1 + 4k (official 81).",
                        default=OFFICIAL_CHUNK_FRAMES,
                        min=5,
                        max=1001,
                        step=4,
                    ),
                ),
                "chunk_overlap": (
                    "INT",
                    tooltip(
                        "Frames each chunk takes over from the previous one and cross-fades, 1 + 4k.",
                        default=DEFAULT_CHUNK_OVERLAP,
                        min=1,
                        max=997,
                        step=4,
                    ),
                ),
            },
            "optional": {
                "negative": (
                    "CONDITIONING",
                    tooltip(
                        "Accepted so Wan graphs connect as usual; V3 flash has no text "
                        "guidance, so it changes nothing (as in the official code)."
                    ),
                ),
                "teacache_mode": (
                    list(MODES),
                    tooltip(
                        "official: as infer_flash.py (cached steps lose the audio guidance); per-step: keeps it.",
                        default=MODES[0],
                    ),
                ),
                "color_match": (
                    "BOOLEAN",
                    tooltip(
                        "Match every frame's colours to the first (the official post-processing, 8-bit).", default=True
                    ),
                ),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT", "AUDIO")
    RETURN_NAMES = ("images", "fps", "audio")
    OUTPUT_TOOLTIPS = ("The video frames.", "Their frame rate.", "The speech trimmed to the frames (for Create Video).")
    FUNCTION = "sample"
    CATEGORY = V3_CATEGORY

    @user_errors
    def sample(
        self,
        model: LoadedFlash,
        reference_image: torch.Tensor,
        audio_features: V3Speech,
        positive: Any,
        clip_vision_output: Any,
        vae: Any,
        width: int,
        height: int,
        length: int,
        steps: int,
        audio_cfg: float,
        seed: int,
        teacache: bool,
        teacache_threshold: float,
        chunk_frames: int,
        chunk_overlap: int,
        negative: Any = None,
        teacache_mode: str = "official",
        color_match: bool = True,
    ) -> tuple[Any, ...]:
        import comfy.model_management as model_management
        import comfy.utils
        import numpy as np
        import torch

        from ..echomimic.audio import trim_audio_to_frames
        from ..echomimic.v3 import pipeline as flash
        from ..echomimic.v3.color import OfficialFrameWriter
        from .face_nodes import first_image_numpy
        from .v3_adapters import clip_tokens_from_output, flash_vae, prompt_embeds_from_conditioning

        del negative  # flash guides over the audio only (README)
        if not isinstance(audio_features, V3Speech):
            raise EchoMimicNodeError("Connect audio_features from EchoMimic V3 Audio Features.")
        finite_inputs(reference_image=reference_image)
        settings = flash.FlashSettings(
            steps=int(steps),
            audio_cfg=float(audio_cfg),
            seed=int(seed),
            fps=audio_features.fps,
            teacache=bool(teacache),
            teacache_threshold=float(teacache_threshold),
            teacache_mode=str(teacache_mode),
            chunk_frames=int(chunk_frames),
            chunk_overlap=int(chunk_overlap),
        ).validated()
        image = (first_image_numpy(reference_image) * 255.0).round().astype(np.uint8)
        if int(width) and int(height):
            out_h, out_w = int(height), int(width)
            flash.check_size(out_w, out_h)
        elif int(width) or int(height):
            raise EchoMimicNodeError("Set both width and height, or both to 0 (the size then follows the picture).")
        else:
            out_h, out_w = flash.official_size(image.shape[1], image.shape[0])
        reference = flash.resize_reference(image, out_w, out_h)
        num_frames = flash.frame_count(
            audio_features.duration, settings.fps, settings.chunk_frames, int(length) or None
        )
        chunks = flash.plan_chunks(num_frames, settings.chunk_frames, settings.chunk_overlap)
        prompt = prompt_embeds_from_conditioning(positive)
        clip_tokens = clip_tokens_from_output(clip_vision_output)
        wan_vae = flash_vae(vae)

        load_patched_models(audio_features.encoder.patcher)
        with torch.no_grad():
            features = flash.speech_features(
                audio_features.encoder.encoder, audio_features.speech_16k, num_frames, settings
            )
        bar = comfy.utils.ProgressBar(len(chunks) * (settings.steps + 1))
        previewer = _wan_previewer(model_management.get_torch_device())
        load_patched_models(model.patcher)
        frames: list[Any] = []
        post = OfficialFrameWriter(color_transfer=bool(color_match))

        def on_frames(chunk: torch.Tensor) -> None:
            frames.append(torch.from_numpy(post(chunk.numpy())))

        def progress(info: Any) -> None:
            bar.update_absolute(int(info.done), int(info.total))

        flash.generate_flash(
            model.transformer,
            wan_vae,
            reference,
            clip_tokens,
            prompt,
            features,
            num_frames,
            settings,
            on_frames=on_frames,
            progress=progress,
            cancelled=model_management.processing_interrupted,
            on_latents=None
            if previewer is None
            else lambda latents: bar.update_absolute(bar.current, bar.total, previewer(latents)),
        )
        video = torch.cat(frames).float() / 255.0
        trimmed = trim_audio_to_frames(
            audio_features.waveform, audio_features.sample_rate, int(video.shape[0]), settings.fps
        )
        return (video, settings.fps, {"waveform": trimmed, "sample_rate": audio_features.sample_rate})


def _wan_previewer(device: torch.device) -> Any:
    """latents (1, 16, F_lat, h, w) -> ComfyUI preview of the middle latent frame, or None (previews off)."""
    from .previews import _preview_settings

    method, _ = _preview_settings()
    if method in ("none", "off", ""):
        return None
    try:
        import comfy.latent_formats
        import latent_preview

        previewer = latent_preview.get_previewer(device, comfy.latent_formats.Wan21())
    except Exception:  # noqa: BLE001 - no previewer in this ComfyUI: no previews
        return None
    if previewer is None:
        return None

    def preview(latents: torch.Tensor) -> Any:
        # The normalised latents are what a KSampler's x0 is for ComfyUI's Wan21 format: the middle latent frame.
        return previewer.decode_latent_to_preview_image("JPEG", latents[:, :, latents.shape[2] // 2].float())

    return preview


class EchoMimicV3TextEncode:
    DESCRIPTION = (
        "Encodes a prompt with the official umT5 file of the V3 folder (for users without ComfyUI's "
        "Wan text encoder). Loaded, used and freed; each prompt's embedding is cached on disk."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text": ("STRING", tooltip("What the video shows.", default="A person is speaking.", multiline=True)),
                "weights_folder": (v3_folder_choices(), tooltip(_FOLDER_TOOLTIP, default=DEFAULT_V3_FOLDER)),
                "download_missing": ("BOOLEAN", tooltip(_DOWNLOAD_TOOLTIP, default=True)),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("The prompt's umT5 embedding, for the sampler's positive input.",)
    FUNCTION = "encode"
    CATEGORY = V3_CATEGORY

    @user_errors
    def encode(self, text: str, weights_folder: str, download_missing: bool = True) -> tuple[Any]:
        import comfy.model_management as model_management

        from ..echomimic.dtypes import umt5_dtype, v3_dtype
        from ..echomimic.v3.text_encoder import encode_prompt

        folder = _v3_folder(weights_folder, download_missing, "text_encoder", "tokenizer")
        device = model_management.get_torch_device()
        embeds = encode_prompt(
            str(text),
            os.path.join(folder, release.V3_TOKENIZER_FOLDER),
            role_path(folder, "text_encoder"),
            device=device,
            dtype=umt5_dtype(v3_dtype("auto", device)),
            cache_dir=os.path.join(folder, release.V3_PROMPT_CACHE_FOLDER),
        )
        return ([[embeds.float().cpu(), {"pooled_output": None}]],)


class EchoMimicV3ClipVisionEncode:
    DESCRIPTION = (
        "The portrait's CLIP tokens with the official CLIP-H file and preprocessing (the reference as "
        "the sampler sizes it, bicubic to 224, no crop)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE", tooltip("The portrait given to the sampler.")),
                "weights_folder": (v3_folder_choices(), tooltip(_FOLDER_TOOLTIP, default=DEFAULT_V3_FOLDER)),
                "width": (
                    "INT",
                    tooltip("The sampler's width (0 = from the picture).", default=0, min=0, max=2048, step=16),
                ),
                "height": (
                    "INT",
                    tooltip("The sampler's height (0 = from the picture).", default=0, min=0, max=2048, step=16),
                ),
                "download_missing": ("BOOLEAN", tooltip(_DOWNLOAD_TOOLTIP, default=True)),
            }
        }

    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    RETURN_NAMES = ("clip_vision_output",)
    OUTPUT_TOOLTIPS = ("The portrait's CLIP tokens, for the sampler.",)
    FUNCTION = "encode"
    CATEGORY = V3_CATEGORY

    @user_errors
    def encode(
        self, image: torch.Tensor, weights_folder: str, width: int, height: int, download_missing: bool = True
    ) -> tuple[Any]:
        import comfy.model_management as model_management
        import numpy as np

        from ..echomimic.v3 import pipeline as flash
        from ..echomimic.v3.files import clip_num_heads
        from ..echomimic.v3.image_encoder import load_clip_vision
        from .face_nodes import first_image_numpy
        from .v3_adapters import ClipVisionTokens

        finite_inputs(image=image)
        folder = _v3_folder(weights_folder, download_missing, "image_encoder")
        picture = (first_image_numpy(image) * 255.0).round().astype(np.uint8)
        out_h, out_w = (
            (int(height), int(width))
            if int(width) and int(height)
            else flash.official_size(picture.shape[1], picture.shape[0])
        )
        reference = flash.resize_reference(picture, out_w, out_h)
        clip = load_clip_vision(
            role_path(folder, "image_encoder"),
            device=model_management.get_torch_device(),
            num_heads=clip_num_heads(folder),
        )
        tokens = clip.encode(flash.clip_input(reference)).float().cpu()
        del clip
        return (ClipVisionTokens(tokens),)


class EchoMimicV3VAELoader:
    DESCRIPTION = (
        "The Wan 2.1 VAE from the official Wan2.1_VAE.pth of the V3 folder (for users without "
        "ComfyUI's wan_2.1_vae); for the EchoMimic V3 Sampler."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "weights_folder": (v3_folder_choices(), tooltip(_FOLDER_TOOLTIP, default=DEFAULT_V3_FOLDER)),
                "download_missing": ("BOOLEAN", tooltip(_DOWNLOAD_TOOLTIP, default=True)),
            }
        }

    RETURN_TYPES = ("VAE",)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The official Wan 2.1 VAE; connect it to the EchoMimic V3 Sampler only.",)
    FUNCTION = "load"
    CATEGORY = LOADERS_CATEGORY

    @user_errors
    def load(self, weights_folder: str, download_missing: bool = True) -> tuple[Any]:
        import comfy.model_management as model_management
        import torch

        from ..echomimic.v3.vae import load_wan_vae
        from .v3_adapters import OwnWanVae

        folder = _v3_folder(weights_folder, download_missing, "vae")
        vae = load_wan_vae(role_path(folder, "vae"), device=model_management.get_torch_device(), dtype=torch.float32)
        return (OwnWanVae(vae),)


def wan_file_choices(kind: str) -> list[str]:
    """The files of ComfyUI's ``kind`` folders, the Comfy-Org file always listed first (downloaded on use)."""
    import folder_paths

    default = release.COMFY_WAN_FILES[kind]
    names: set[str] = set()
    for folder in folder_paths.get_folder_paths(kind):
        if os.path.isdir(folder):
            names.update(
                entry.name
                for entry in os.scandir(folder)
                if entry.name.endswith((".safetensors", ".pth", ".pt", ".bin"))
            )
    return [default, *sorted(names - {default})]


def ensure_wan_file(kind: str, name: str, download: bool) -> str:
    """The path of ``name`` in ComfyUI's ``kind`` folders; the Comfy-Org file is downloaded into the first one
    when missing (progress bar and Cancel; a partial file never counts)."""
    import folder_paths

    from ..echomimic.weights_download import RequiredFile

    if not name or os.path.basename(name) != name:
        raise EchoMimicNodeError(f"{name!r} is not a file name in models/{kind}.")
    from pathlib import Path

    from ..echomimic.weights import release_file_problem

    folders = folder_paths.get_folder_paths(kind)
    for folder in folders:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            if (problem := release_file_problem(Path(path))) is not None:
                raise EchoMimicNodeError(
                    f"{path} is {problem}. Delete it"
                    + (
                        " and switch on download_missing to fetch it again."
                        if name == release.COMFY_WAN_FILES[kind]
                        else f", or put the real file into models/{kind}."
                    )
                )
            return path
    if name != release.COMFY_WAN_FILES[kind] or not download:
        raise EchoMimicNodeError(
            f"{name} is not in models/{kind}. Switch on download_missing to fetch "
            f"{release.COMFY_WAN_FILES[kind]} from {release.COMFY_WAN_REPO}, or put the file "
            f"into {folders[0]}."
        )
    item = RequiredFile(
        role=kind,
        relative_path=name,
        alternatives=(),
        repo_id=release.COMFY_WAN_REPO,
        repo_filename=f"split_files/{kind}/{name}",
    )
    download_missing_files(folders[0], [item])
    return os.path.join(folders[0], name)


class EchoMimicV3WanFiles:
    DESCRIPTION = (
        "ComfyUI's own Wan 2.1 files for EchoMimic V3: the umT5 text encoder, CLIP-H and the Wan VAE "
        "from models/text_encoders, models/clip_vision and models/vae, downloaded there on first use "
        "from Comfy-Org/Wan_2.1_ComfyUI_repackaged (so other Wan workflows reuse them). Loaded by "
        "ComfyUI's own loaders, as Load CLIP (type wan), Load CLIP Vision and Load VAE do."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text_encoder": (
                    wan_file_choices("text_encoders"),
                    tooltip(
                        "umT5-XXL in ComfyUI's format (fp8_scaled or fp16), in models/text_encoders.",
                        default=release.COMFY_WAN_FILES["text_encoders"],
                    ),
                ),
                "clip_vision": (
                    wan_file_choices("clip_vision"),
                    tooltip(
                        "CLIP-H (clip_vision_h), in models/clip_vision.", default=release.COMFY_WAN_FILES["clip_vision"]
                    ),
                ),
                "vae": (
                    wan_file_choices("vae"),
                    tooltip("The Wan 2.1 VAE, in models/vae.", default=release.COMFY_WAN_FILES["vae"]),
                ),
                "download_missing": (
                    "BOOLEAN",
                    tooltip("Download the Comfy-Org files that are missing (progress bar and Cancel).", default=True),
                ),
            }
        }

    RETURN_TYPES = ("CLIP", "CLIP_VISION", "VAE")
    RETURN_NAMES = ("clip", "clip_vision", "vae")
    OUTPUT_TOOLTIPS = (
        "For CLIP Text Encode (the prompt).",
        "For CLIP Vision Encode (crop none).",
        "For the EchoMimic V3 Sampler.",
    )
    FUNCTION = "load"
    CATEGORY = LOADERS_CATEGORY

    @user_errors
    def load(self, text_encoder: str, clip_vision: str, vae: str, download_missing: bool = True) -> tuple[Any, ...]:
        paths = {
            kind: ensure_wan_file(kind, name, download_missing)
            for kind, name in (("text_encoders", text_encoder), ("clip_vision", clip_vision), ("vae", vae))
        }
        import comfy.clip_vision
        import comfy.sd
        import comfy.utils
        import folder_paths

        clip = comfy.sd.load_clip(
            ckpt_paths=[paths["text_encoders"]],
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
            clip_type=comfy.sd.CLIPType.WAN,
        )
        vision = comfy.clip_vision.load(paths["clip_vision"])
        wan_vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(paths["vae"]))
        return (clip, vision, wan_vae)


NODE_CLASS_MAPPINGS = {
    "EchoMimicV3ModelLoader": EchoMimicV3ModelLoader,
    "EchoMimicV3AudioEncoderLoader": EchoMimicV3AudioEncoderLoader,
    "EchoMimicV3AudioFeatures": EchoMimicV3AudioFeatures,
    "EchoMimicV3Sampler": EchoMimicV3Sampler,
    "EchoMimicV3TextEncode": EchoMimicV3TextEncode,
    "EchoMimicV3ClipVisionEncode": EchoMimicV3ClipVisionEncode,
    "EchoMimicV3VAELoader": EchoMimicV3VAELoader,
    "EchoMimicV3WanFiles": EchoMimicV3WanFiles,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EchoMimicV3ModelLoader": "Load EchoMimic V3 Model",
    "EchoMimicV3AudioEncoderLoader": "Load EchoMimic V3 Audio Encoder (wav2vec2)",
    "EchoMimicV3AudioFeatures": "EchoMimic V3 Audio Features",
    "EchoMimicV3Sampler": "EchoMimic V3 Sampler",
    "EchoMimicV3TextEncode": "EchoMimic V3 Text Encode (umT5)",
    "EchoMimicV3ClipVisionEncode": "EchoMimic V3 CLIP Vision Encode",
    "EchoMimicV3VAELoader": "Load EchoMimic V3 VAE",
    "EchoMimicV3WanFiles": "Load Wan 2.1 Files for EchoMimic V3",
}
