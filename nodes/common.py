"""What every EchoMimic node shares: type names, stable combo values, the models folder, the error boundary.

Importing this module is cheap on purpose: no ComfyUI module, no heavy library. ComfyUI's own modules
(`folder_paths`, `comfy.*`) are imported inside functions, so the node definitions can also be read
outside a running ComfyUI (the workflow validator test does that).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..echomimic import release
from ..echomimic.errors import CancelledError, EchoMimicError
from ..echomimic.release import MEDIAPIPE_FOLDER

if TYPE_CHECKING:
    import torch

    from ..echomimic.release import MediaPipeModel
    from .comfy_types import ComfyAudio


CATEGORY = "EchoMimic"  # the sampler and the audio features; the rest in subcategories (ids unchanged)
LOADERS_CATEGORY = f"{CATEGORY}/loaders"
LANDMARKS_CATEGORY = f"{CATEGORY}/V1 landmarks"
HANDS_CATEGORY = f"{CATEGORY}/V2 hands"
COMPOSE_CATEGORY = f"{CATEGORY}/compose"

# Custom socket types passed between EchoMimic nodes (stable public names).
MODEL_TYPE = "ECHOMIMIC_MODEL"
AUDIO_ENCODER_TYPE = "ECHOMIMIC_AUDIO_ENCODER"
AUDIO_FEATURES_TYPE = "ECHOMIMIC_AUDIO_FEATURES"
LANDMARKS_TYPE = "ECHOMIMIC_LANDMARKS"
HAND_POSES_TYPE = "ECHOMIMIC_HAND_POSES"  # echomimic.poses.HandPoseSequence
CROP_INFO_TYPE = "ECHOMIMIC_CROP_INFO"  # echomimic.compose.CropInfo: where a face crop came from

# Stable combo values (saved in shared workflows; never rename) -> library variant ids.
# The labels live in release.py (one table); tests/test_nodes_import.py pins them as spelled in workflows.
VARIANTS: dict[str, str] = {spec.label: name for name, spec in release.VARIANTS.items()}
PRECISIONS: tuple[str, ...] = ("auto", *release.PRECISIONS)

# The `models/<MODELS_FOLDER_NAME>` folder type, movable with extra_model_paths.yaml.
MODELS_FOLDER_NAME = "echomimic"
# The Hugging Face repository BadToBest/EchoMimic downloaded into models/echomimic/EchoMimic.
DEFAULT_WEIGHTS_FOLDER = "EchoMimic"
# BadToBest/EchoMimicV2 goes into its own folder: its file names (reference_unet.pth, ...) clash with V1's.
DEFAULT_V2_WEIGHTS_FOLDER = "EchoMimicV2"
# Release -> the folder of models/echomimic it goes into (node words for the library's messages).
WEIGHTS_FOLDER_OF_RELEASE = {"v1": DEFAULT_WEIGHTS_FOLDER, "v2": DEFAULT_V2_WEIGHTS_FOLDER}
DOWNLOAD_HINT = (
    "Switch on the loader's download_missing, or download the Hugging Face repository into ComfyUI/models/echomimic: "
    "V1: https://huggingface.co/BadToBest/EchoMimic into models/echomimic/EchoMimic; V2: "
    "https://huggingface.co/BadToBest/EchoMimicV2 into models/echomimic/EchoMimicV2."
)


class EchoMimicNodeError(Exception):
    """Raised at the node boundary; ComfyUI shows its message in the error dialog."""


# ComfyUI names the error by module + class; a custom node's module is its file path turned into a dotted
# name (a temporary-looking path). Name it as users know it.
EchoMimicNodeError.__module__ = "EchoMimic"


def finite_inputs(**inputs: Any) -> None:
    """Refuse NaN or infinite values in IMAGE / MASK inputs (None is skipped): they would come out as NaN
    frames without a word."""
    import torch

    for name, value in inputs.items():
        if value is None:
            continue
        tensor = torch.as_tensor(value)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise EchoMimicNodeError(
                f"The {name} input holds NaN or infinite values; check the node that makes it "
                "(ComfyUI images are 0..1)."
            )


def register_models_folder() -> None:
    """Register `models/echomimic` with ComfyUI's folder_paths, without creating it.

    Appended (not default), so a path that extra_model_paths.yaml gave first keeps priority.
    """
    import folder_paths

    default_path = os.path.join(folder_paths.models_dir, MODELS_FOLDER_NAME)
    folder_paths.add_model_folder_path(MODELS_FOLDER_NAME, default_path)


def models_base_paths() -> list[str]:
    """Every folder registered for EchoMimic weights, in priority order."""
    import folder_paths

    try:
        return folder_paths.get_folder_paths(MODELS_FOLDER_NAME)
    except KeyError:  # registration skipped (e.g. the extension was imported outside ComfyUI)
        return [os.path.join(folder_paths.models_dir, MODELS_FOLDER_NAME)]


def weights_folder_choices() -> list[str]:
    """The subfolders of the registered EchoMimic folders, plus the default V1 and V2 names.

    The defaults are always listed, even before it is downloaded, so a shared workflow validates and
    the loader can say exactly which file is missing and where to get it.
    """
    names = {DEFAULT_WEIGHTS_FOLDER, DEFAULT_V2_WEIGHTS_FOLDER}
    for base in models_base_paths():
        if os.path.isdir(base):
            names.update(
                entry.name
                for entry in os.scandir(base)
                if entry.is_dir() and not entry.name.startswith(".") and entry.name != MEDIAPIPE_FOLDER
            )  # MediaPipe's files, not a weights folder
    defaults = (DEFAULT_WEIGHTS_FOLDER, DEFAULT_V2_WEIGHTS_FOLDER)
    return sorted(names, key=lambda name: (defaults.index(name) if name in defaults else 2, name.lower()))


def resolve_weights_folder(name: str) -> str:
    """The first registered folder that has `name`; if none has it, the path it is expected at."""
    if not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise EchoMimicNodeError(
            f"Weights folder {name!r} must be the name of a folder inside ComfyUI/models/{MODELS_FOLDER_NAME}. "
            + DOWNLOAD_HINT
        )
    from ..echomimic.weights import check_weights_folder

    candidates = [os.path.join(base, name) for base in models_base_paths()]
    for candidate in candidates:
        check_weights_folder(candidate, must_exist=False)  # a symlink loop or a file: one clear message
        if os.path.isdir(candidate):
            return candidate
    return candidates[0]


def mediapipe_models_dir() -> str:
    """Where MediaPipe Tasks model files are looked for (models/echomimic or its mediapipe/ subfolder) and
    downloaded to (its mediapipe/ subfolder): the first registered folder that has any, else the first one.

    Only needed with mediapipe releases after 0.10.21, which dropped the bundled legacy models.
    """
    bases = models_base_paths()
    for base in bases:
        for folder in (base, os.path.join(base, "mediapipe")):
            if os.path.isdir(folder) and any(name.endswith((".task", ".tflite")) for name in os.listdir(folder)):
                return base
    return bases[0]


def comfy_download_progress(what: str) -> Callable[[int, int], None]:
    """A download progress callback for ComfyUI: its progress bar (in KiB), and Cancel.

    Cancel raises CancelledError, which the download turns into removing its partial file and
    `user_errors` into ComfyUI's interrupt.
    """
    import comfy.model_management as model_management
    import comfy.utils

    bar: list[Any] = []

    def report(done: int, total: int) -> None:
        if model_management.processing_interrupted():
            raise CancelledError(f"Download of {what} cancelled.")
        if total:
            if not bar:
                bar.append(comfy.utils.ProgressBar(max(1, total // 1024)))
            bar[0].update_absolute(min(done, total) // 1024, max(1, total // 1024))

    return report


def comfy_download_tqdm(what: str) -> type:
    """A tqdm class for huggingface_hub downloads that also drives ComfyUI's progress bar and Cancel."""
    from tqdm.auto import tqdm

    report = comfy_download_progress(what)

    class ComfyDownloadTqdm(tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            report(int(self.n), int(self.total or 0))
            return shown

    return ComfyDownloadTqdm


def ensure_mediapipe_files(*models: MediaPipeModel, download: bool = True) -> str:
    """The MediaPipe models folder for `models` (release.MediaPipeModel), each downloaded there on first use.

    With a mediapipe that still has the legacy API (bundled models) nothing is downloaded. Missing Tasks
    files go to `models/echomimic/mediapipe/` (the first registered echomimic folder, extra_model_paths.yaml
    included), with ComfyUI's progress bar and Cancel.
    """
    from ..echomimic.landmarks.backends import legacy_solutions_available
    from ..echomimic.mediapipe_files import ensure_mediapipe_model, ensure_mediapipe_models

    models_dir = mediapipe_models_dir()
    if not models or legacy_solutions_available():
        return models_dir
    if not download:
        for model in models:
            ensure_mediapipe_model(model, models_dir, download=False)
    ensure_mediapipe_models(models, models_dir, progress_for=lambda model: comfy_download_progress(model.name))
    return models_dir


def torch_dtype_for(precision: str, device: torch.device) -> torch.dtype:
    """torch dtype for a precision combo value; "auto" = what the device runs well, fp32 on CPU."""
    import torch

    from ..echomimic.dtypes import torch_dtype

    if precision != "auto":
        return torch_dtype(precision)  # an unknown name is its one-line InputError
    if torch.device(device).type == "cpu":
        return torch.float32
    import comfy.model_management as model_management

    if model_management.should_use_fp16(device, prioritize_performance=True):
        return torch.float16
    if model_management.should_use_bf16(device, prioritize_performance=True):
        return torch.bfloat16
    return torch.float32


def frames_progress(total: int) -> Callable[[int, int], None]:
    """A library progress callback (done, total) that updates ComfyUI's bar and honours Cancel."""
    import comfy.model_management as model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def report(done: int, count: int) -> None:
        model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, count)

    return report


# The two optional inputs of the draw nodes (Draw Landmarks, Draw Hand Poses), appended last: old workflows
# (which lack them) draw every frame as before, within the memory bound of pipeline.length.frames_to_draw.
DRAW_BOUND_INPUTS: dict[str, Any] = {
    "max_frames": (
        "INT",
        {
            "tooltip": (
                "Draw at most this many frames (the first ones): set it to the sampler's length so a long "
                "motion file does not draw thousands of images (GBs of memory) the video never shows. "
                "0 = every frame (or, with audio connected, as many as that speech can cover)."
            ),
            "default": 0,
            "min": 0,
            "max": 100000,
        },
    ),
    "audio": (
        "AUDIO",
        {
            "tooltip": (
                "Optional: the speech the video is made from (what Audio Features gets). Only the frames it can "
                f"cover are drawn (a second of margin, at any frame rate up to {release.MAX_FPS:g} fps), not "
                "every frame of a long motion file."
            )
        },
    ),
}


def driving_frames_to_draw(
    node: str, what: str, num_frames: int, width: int, height: int, max_frames: int = 0, audio: ComfyAudio | None = None
) -> int:
    """How many leading frames of a ``num_frames`` sequence a draw node draws (pipeline.length.frames_to_draw
    with its ``max_frames`` and ``audio`` inputs); says in the console when that is fewer than all."""
    from ..echomimic.pipeline.length import frames_to_draw

    seconds = None
    if audio is not None:
        if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
            raise EchoMimicNodeError("audio must be an AUDIO output (Load Audio, Get Video Components, ...).")
        samples = int(getattr(audio["waveform"], "shape", (0,))[-1])
        rate = int(audio["sample_rate"])
        if samples <= 0 or rate <= 0:
            raise EchoMimicNodeError("The audio is empty (0 samples); connect the speech the video is made from.")
        seconds = samples / rate
    count = frames_to_draw(
        int(num_frames),
        int(width),
        int(height),
        audio_seconds=seconds,
        requested=int(max_frames),
        what=what,
        fix="set max_frames to the sampler's length, or connect the speech to audio, to draw only the frames "
        "the video uses",
    )
    if count < num_frames:
        print(f"{node}: drawing the first {count} of {num_frames} frames (all a video of that length can show).")
    return count


def raise_interrupted() -> None:
    """Raise ComfyUI's own interrupt exception, so the UI shows the run as cancelled, not failed."""
    import comfy.model_management as model_management

    model_management.throw_exception_if_processing_interrupted()  # resets the flag and raises
    raise model_management.InterruptProcessingException()


_Method = TypeVar("_Method", bound=Callable[..., Any])


def user_errors(method: _Method) -> _Method:
    """Turn library errors into a short message for ComfyUI's error dialog.

    `EchoMimicError` messages already say what went wrong and what to do; a cancelled library call
    becomes ComfyUI's interrupt; a missing optional dependency names the install command.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except CancelledError:
            raise_interrupted()
        except EchoMimicError as error:
            raise EchoMimicNodeError(str(error)) from error
        except ModuleNotFoundError as error:
            raise EchoMimicNodeError(
                f"The Python package {error.name!r} is missing. Install this extension's requirements into "
                "ComfyUI's Python: pip install -r custom_nodes/ComfyUI-EchoMimic/requirements.txt"
            ) from error

    return wrapper  # type: ignore[return-value]


def tooltip(text: str, **options: Any) -> dict[str, Any]:
    return {"tooltip": text, **options}
