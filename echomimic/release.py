"""The official releases, as data: one source of truth for every file name, repository and checksum.

Torch-free, so the command line can check and download files before anything heavy loads. The loader,
the downloader, ``check``, the nodes, the tests and the benchmark all read these tables.

- EchoMimic V1: Hugging Face ``BadToBest/EchoMimic`` (face; audio, landmark and both accelerated).
- EchoMimic V2: Hugging Face ``BadToBest/EchoMimicV2`` (semi-body; audio + hand poses, and accelerated).
- The SD1.5 VAE: ``stabilityai/sd-vae-ft-mse``, in ``sd-vae-ft-mse/`` of the weights folder.
- MediaPipe Tasks models: Google's pinned ``float16/1`` URLs with their sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import UnknownVariantError

ECHOMIMIC_V1_REPO = "BadToBest/EchoMimic"
ECHOMIMIC_V2_REPO = "BadToBest/EchoMimicV2"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
VAE_FOLDER = "sd-vae-ft-mse"
VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
VAE_WEIGHT_ALTERNATIVES = ("diffusion_pytorch_model.bin",)

WHISPER_ORIGINAL_URL = (
    "https://openaipublic.azureedge.net/main/whisper/models/"
    "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9/tiny.pt"
)

# The networks of one variant, in loading order. V2 calls its conditioning net "pose_encoder"; it is the
# same network as V1's face locator (3 input channels), so both fill the "face_locator" role.
ROLES = ("reference_unet", "denoising_unet", "motion_module", "face_locator")

# What drives a variant's conditioning net (Variant.conditioning); a Literal so the type checker sees a typo.
ConditioningKind = Literal["face_mask", "landmarks", "hand_poses"]


@dataclass(frozen=True)
class Variant:
    """One downloadable model variant.

    Attributes:
        name: the id used by the CLI (``--mode``), the library and the loader node's mapping.
        version: "v1" or "v2".
        conditioning: what drives the conditioning net: "face_mask" (V1 audio), "landmarks" (drawn face
            landmarks, V1) or "hand_poses" (drawn hand poses, V2).
        accelerated: the distilled 6-step weights.
        repo_id: the Hugging Face repository of its files.
        stems: role -> release file name without suffix (``.pth``; a ``.safetensors`` twin is accepted).
        whisper_file: the Whisper-tiny file inside the repository.
        label: the loader node's combo value (stable: saved in users' workflows).
    """

    name: str
    version: str
    conditioning: ConditioningKind
    accelerated: bool
    repo_id: str
    stems: dict[str, str]
    whisper_file: str
    label: str

    @property
    def repo_url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"

    @property
    def default_steps(self) -> int:
        return 6 if self.accelerated else 30

    @property
    def default_cfg(self) -> float:
        return 1.0 if self.accelerated else 2.5


def _stems(reference: str, denoising: str, motion: str, conditioning: str) -> dict[str, str]:
    return dict(zip(ROLES, (reference, denoising, motion, conditioning), strict=True))


_V1_WHISPER = "audio_processor/whisper_tiny.pt"
_V2_WHISPER = "audio_processor/tiny.pt"

VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant(
            "audio",
            "v1",
            "face_mask",
            False,
            ECHOMIMIC_V1_REPO,
            _stems("reference_unet", "denoising_unet", "motion_module", "face_locator"),
            _V1_WHISPER,
            "V1 audio",
        ),
        Variant(
            "audio_acc",
            "v1",
            "face_mask",
            True,
            ECHOMIMIC_V1_REPO,
            _stems("reference_unet", "denoising_unet_acc", "motion_module_acc", "face_locator"),
            _V1_WHISPER,
            "V1 audio accelerated",
        ),
        Variant(
            "pose",
            "v1",
            "landmarks",
            False,
            ECHOMIMIC_V1_REPO,
            _stems("reference_unet_pose", "denoising_unet_pose", "motion_module_pose", "face_locator_pose"),
            _V1_WHISPER,
            "V1 landmarks",
        ),
        Variant(
            "pose_acc",
            "v1",
            "landmarks",
            True,
            ECHOMIMIC_V1_REPO,
            _stems("reference_unet_pose", "denoising_unet_pose_acc", "motion_module_pose_acc", "face_locator_pose"),
            _V1_WHISPER,
            "V1 landmarks accelerated",
        ),
        Variant(
            "v2",
            "v2",
            "hand_poses",
            False,
            ECHOMIMIC_V2_REPO,
            _stems("reference_unet", "denoising_unet", "motion_module", "pose_encoder"),
            _V2_WHISPER,
            "V2 semi-body",
        ),
        Variant(
            "v2_acc",
            "v2",
            "hand_poses",
            True,
            ECHOMIMIC_V2_REPO,
            _stems("reference_unet", "denoising_unet_acc", "motion_module_acc", "pose_encoder"),
            _V2_WHISPER,
            "V2 semi-body accelerated",
        ),
    )
}
VARIANT_NAMES = tuple(VARIANTS)
V1_VARIANT_NAMES = tuple(name for name, v in VARIANTS.items() if v.version == "v1")
V2_VARIANT_NAMES = tuple(name for name, v in VARIANTS.items() if v.version == "v2")


def variant(name: str) -> Variant:
    """The variant called ``name``; an :class:`UnknownVariantError` (a ``KeyError``) lists the known names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownVariantError(
            f"Unknown EchoMimic variant {name!r}; choose one of {', '.join(VARIANT_NAMES)}."
        ) from None


# Official defaults shared by every front-end.
LATENT_SCALE = 0.18215  # SD1.5 VAE latent scaling
DEFAULT_SIZE = {"v1": (512, 512), "v2": (768, 768)}  # (width, height)
DEFAULT_FPS = 24.0
DEFAULT_CONTEXT_FRAMES = 12
DEFAULT_CONTEXT_OVERLAP = 3
# The motion modules' span: temporal_position_encoding_max_len of every shipped config (V1 and V2); a
# context window longer than this has no position encoding.
MOTION_MODULE_SPAN = 32
# The deep-feature cache (pipeline.deep_cache): skip connections recomputed on cached steps, default and most
# (the full-size UNet has 12; 2 = the last two up layers and the first down layer, at the latent resolution).
DEEP_CACHE_DEFAULT_DEPTH = 2
DEEP_CACHE_MAX_DEPTH = 12
# V2's hand poses are drawn at this width, then resized (the official scripts' ref_w at 768x768).
POSE_REF_W = 800
SEED_MAX = 2**64 - 1  # torch generators take 0..2**64-1; ComfyUI's seed widget has the same maximum
DEFAULT_SEED = {"v1": 420, "v2": 3407, "v3": 43}  # V3: run_flash.sh
# The command line's weights folder per release: V1 and V2 name different weights alike, so never one folder.
DEFAULT_WEIGHTS_FOLDER = {"v1": "pretrained_weights", "v2": "pretrained_weights_v2", "v3": "pretrained_weights_v3"}
PRECISIONS = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}  # option -> torch dtype name
# The highest frame rate of a run the nodes can set up (the audio-features nodes' fps maximum): with only the
# speech known, at most this many frames per second of it can be shown.
MAX_FPS = 120.0
# Landmark / hand-pose sequences shorter than the audio (echomimic.pipeline.length): default first.
LENGTH_POLICIES = ("loop", "ping-pong", "hold", "stop")
DEFAULT_LENGTH_POLICY = LENGTH_POLICIES[0]


@dataclass(frozen=True)
class MediaPipeModel:
    """A MediaPipe Tasks model file, downloaded on first use and checked against its sha256."""

    name: str  # file name in the models folder
    task: str  # URL path below the base: <task>/<model>/float16/1/<name>
    sha256: str
    size: int
    what: str

    @property
    def url_path(self) -> str:
        return f"{self.task}/float16/1/{self.name}"


MEDIAPIPE_BASE_URL = "https://storage.googleapis.com/mediapipe-models"
MEDIAPIPE_BASE_URL_ENV = "ECHOMIMIC_MEDIAPIPE_BASE_URL"
MEDIAPIPE_FOLDER = "mediapipe"

FACE_LANDMARKER = MediaPipeModel(
    "face_landmarker.task",
    "face_landmarker/face_landmarker",
    "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    3_758_596,
    "MediaPipe face landmarker",
)
FACE_DETECTOR = MediaPipeModel(
    "blaze_face_short_range.tflite",
    "face_detector/blaze_face_short_range",
    "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
    229_746,
    "MediaPipe face detector",
)
HAND_LANDMARKER = MediaPipeModel(
    "hand_landmarker.task",
    "hand_landmarker/hand_landmarker",
    "fbc2a30080c3c557093b5ddfc334698132eb341044ccee322ccf8bcf3607cde1",
    7_819_105,
    "MediaPipe hand landmarker",
)
POSE_LANDMARKER = MediaPipeModel(
    "pose_landmarker_full.task",
    "pose_landmarker/pose_landmarker_full",
    "5134a3aad27a58b93da0088d431f366da362b44e3ccfbe3462b3827a839011b1",
    9_398_198,
    "MediaPipe pose landmarker",
)
MEDIAPIPE_MODELS = {model.name: model for model in (FACE_LANDMARKER, FACE_DETECTOR, HAND_LANDMARKER, POSE_LANDMARKER)}


def mediapipe_models_for(
    variant_name: str, *, face_crop: bool = True, extract: bool = True, align: bool = True
) -> tuple[MediaPipeModel, ...]:
    """The MediaPipe files a run of ``variant_name`` needs (Tasks API), from what it will detect.

    face_crop: the V1 face is found (to crop, or to make the mask); extract: landmarks (V1) or hands (V2) come
    from a driving video; align: V2 hand poses are moved onto the portrait's shoulders. With saved motion and
    nothing to detect, nothing is needed: the run works offline.
    """
    conditioning = variant(variant_name).conditioning
    if conditioning == "hand_poses":
        wanted = ((HAND_LANDMARKER, extract), (POSE_LANDMARKER, align))
    else:
        wanted = ((FACE_DETECTOR, face_crop), (FACE_LANDMARKER, conditioning == "landmarks" and extract))
    return tuple(model for model, needed in wanted if needed)


# ---- EchoMimic V3 flash: three repositories, one folder in the layout of the official run_flash.sh ----------
ECHOMIMIC_V3_REPO = "BadToBest/EchoMimicV3"
WAN21_FUN_INP_REPO = "alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP"
WAV2VEC2_REPO = "TencentGameMate/chinese-wav2vec2-base"
V3_BASE_FOLDER = "Wan2.1-Fun-V1.1-1.3B-InP"
V3_WAV2VEC2_FOLDER = "chinese-wav2vec2-base"
V3_TOKENIZER_FOLDER = f"{V3_BASE_FOLDER}/google/umt5-xxl"
V3_PROMPT_CACHE_FOLDER = ".prompt-cache"  # inside the V3 folder: umT5 embeddings of prompts already seen
V3_VARIANT_NAMES = ("v3_flash",)
V3_LABELS = {"v3_flash": "V3 flash"}


@dataclass(frozen=True)
class HubFile:
    """One file of a release: its role, its path in the weights folder, and where it comes from."""

    role: str
    relative_path: str
    repo_id: str
    repo_filename: str
    size: int | None = None  # bytes of the full-size release file, where known (the weights; not the JSON files)


def _base(name: str, role: str, size: int | None = None) -> HubFile:
    return HubFile(role, f"{V3_BASE_FOLDER}/{name}", WAN21_FUN_INP_REPO, name, size)


# The sizes are those of the release files (../shared/parity/manifests/echomimic_v3_flash.json, reported_file_bytes).
V3_FLASH_FILES: tuple[HubFile, ...] = (
    HubFile(
        "transformer",
        "transformer/diffusion_pytorch_model.safetensors",
        ECHOMIMIC_V3_REPO,
        "echomimicv3-flash-pro/transformer/diffusion_pytorch_model.safetensors",
        3_727_671_120,
    ),
    _base("config.json", "transformer_config"),
    _base("Wan2.1_VAE.pth", "vae", 507_609_880),
    _base("models_t5_umt5-xxl-enc-bf16.pth", "text_encoder", 11_361_920_418),
    _base("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "image_encoder", 4_772_359_047),
    *(
        HubFile(f"tokenizer:{name}", f"{V3_TOKENIZER_FOLDER}/{name}", WAN21_FUN_INP_REPO, f"google/umt5-xxl/{name}")
        for name in ("tokenizer.json", "tokenizer_config.json")
    ),  # the fast tokenizer
    *(
        HubFile(f"wav2vec2:{name}", f"{V3_WAV2VEC2_FOLDER}/{name}", WAV2VEC2_REPO, name)
        for name in ("config.json", "preprocessor_config.json")
    ),
    HubFile(
        "wav2vec2:pytorch_model.bin",
        f"{V3_WAV2VEC2_FOLDER}/pytorch_model.bin",
        WAV2VEC2_REPO,
        "pytorch_model.bin",
        380_261_837,
    ),
)
DEFAULT_V3_FPS = 25.0  # run_flash.sh; the model was trained at 25 fps
# ComfyUI's own Wan 2.1 files (the Comfy-Org repackaged release other Wan workflows use): folder type -> file.
COMFY_WAN_REPO = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
COMFY_WAN_FILES = {
    "text_encoders": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "clip_vision": "clip_vision_h.safetensors",
    "vae": "wan_2.1_vae.safetensors",
}
