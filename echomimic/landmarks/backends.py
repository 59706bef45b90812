"""Which MediaPipe API runs the face models, and where their model files are.

Two ways exist:
- "legacy": `mediapipe.solutions` (face_mesh, face_detection). Its models ship inside mediapipe
  wheels up to 0.10.21 and run offline; removed in later releases.
- "tasks": the Tasks API (`FaceLandmarker`, `FaceDetector`), the only way in mediapipe >= 0.10.30. It
  needs a model file in the models folder (`face_landmarker.task`, `blaze_face_short_range.tflite`).

"auto" picks legacy when the installed mediapipe has it, else tasks. A model file is looked for in
`models_dir` and in `models_dir/mediapipe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, WeightsError

BACKEND_NAMES = ("auto", "legacy", "tasks")


@dataclass(frozen=True)
class ModelFile:
    name: str
    url: str
    what: str


FACE_LANDMARKER_FILE = ModelFile(
    "face_landmarker.task",
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/latest/face_landmarker.task",
    "MediaPipe face landmarker",
)
FACE_DETECTOR_FILE = ModelFile(
    "blaze_face_short_range.tflite",
    "https://storage.googleapis.com/mediapipe-models/face_detector/blaze_face_short_range/float16/latest/blaze_face_short_range.tflite",
    "MediaPipe face detector",
)


@dataclass(frozen=True)
class Backend:
    name: str  # "legacy" or "tasks"
    model_path: Path | None  # the model file for "tasks"


def legacy_solutions_available() -> bool:
    """True when the installed mediapipe still has `mediapipe.solutions` (releases up to 0.10.21)."""
    try:
        from mediapipe.python.solutions import face_detection, face_mesh  # noqa: F401
    except ImportError:
        return False
    return True


def find_model_file(model: ModelFile, models_dir: str | Path | None) -> Path | None:
    if models_dir is None:
        return None
    folder = Path(models_dir)
    for candidate in (folder / model.name, folder / "mediapipe" / model.name):
        if candidate.is_file():
            return candidate
    return None


def missing_model_message(model: ModelFile, models_dir: str | Path | None, reason: str) -> str:
    where = (f"put it in {Path(models_dir)}" if models_dir is not None
             else "put it in your EchoMimic models folder and pass that folder as models_dir")
    return (f"{reason} needs the {model.what} file '{model.name}', which was not found. Download it from "
            f"{model.url} and {where}.")


def choose_backend(
    model: ModelFile,
    models_dir: str | Path | None,
    *,
    backend: str = "auto",
    legacy_available: bool | None = None,
) -> Backend:
    """Pick the MediaPipe API for `model`.

    legacy_available: whether `mediapipe.solutions` can be used; None asks the installed mediapipe.
    Raises InputError for an unknown backend name or a legacy request that cannot run, and
    WeightsError naming the file to download when the Tasks API needs a missing model file.
    """
    if backend not in BACKEND_NAMES:
        raise InputError(f"Unknown MediaPipe backend {backend!r}; choose one of {list(BACKEND_NAMES)}.")
    if legacy_available is None:
        legacy_available = legacy_solutions_available() if backend != "tasks" else False
    if backend in ("auto", "legacy") and legacy_available:
        return Backend("legacy", None)
    if backend == "legacy":
        raise InputError(
            "The installed mediapipe has no legacy 'mediapipe.solutions' API (removed after 0.10.21). "
            f"Use backend 'auto' or 'tasks' with '{model.name}' in the models folder, or install "
            "mediapipe==0.10.21."
        )
    path = find_model_file(model, models_dir)
    if path is None:
        reason = ("This mediapipe has no legacy 'mediapipe.solutions' API, so the Tasks API"
                  if backend == "auto" else "The MediaPipe Tasks API")
        raise WeightsError(missing_model_message(model, models_dir, reason))
    return Backend("tasks", path)
