"""Which MediaPipe API runs the face (and hand/pose) models, and where their model files are.

Two ways exist:
- "legacy": `mediapipe.solutions` (face_mesh, face_detection, hands, pose). Its models ship inside
  mediapipe wheels up to 0.10.21 and run offline; removed in later releases. Nothing is downloaded.
- "tasks": the Tasks API (`FaceLandmarker`, `FaceDetector`, ...), the only way in mediapipe >= 0.10.30. It
  needs a model file (release.MEDIAPIPE_MODELS), looked for in `models_dir` and `models_dir/mediapipe`
  and downloaded into the latter on first use (echomimic.mediapipe_files.ensure_mediapipe_model).

"auto" picks legacy when the installed mediapipe has it, else tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..downloads import ProgressCallback
from ..errors import InputError
from ..mediapipe_files import ensure_mediapipe_model
from ..release import FACE_DETECTOR, FACE_LANDMARKER, MediaPipeModel

BACKEND_NAMES = ("auto", "legacy", "tasks")

# The Tasks files of the face models (pinned versions with their sha256, from release.py).
FACE_LANDMARKER_FILE = FACE_LANDMARKER
FACE_DETECTOR_FILE = FACE_DETECTOR


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


def choose_backend(
    model: MediaPipeModel,
    models_dir: str | Path | None,
    *,
    backend: str = "auto",
    legacy_available: bool | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> Backend:
    """Pick the MediaPipe API for `model`; for "tasks", find or download its file into models_dir/mediapipe.

    legacy_available: whether `mediapipe.solutions` can be used; None asks the installed mediapipe.
    download: fetch a missing Tasks file (False: a missing file is an error). The legacy API never downloads.
    progress: (bytes done, bytes expected) while downloading; may raise to cancel.
    Raises InputError for an unknown backend name or a legacy request that cannot run, and
    WeightsError naming the file, its URL and the folder when the Tasks file is missing and cannot be
    downloaded.
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
    reason = (
        "This mediapipe has no legacy 'mediapipe.solutions' API, so the Tasks API"
        if backend == "auto"
        else "The MediaPipe Tasks API"
    )
    path = ensure_mediapipe_model(model, models_dir, download=download, progress=progress, reason=reason)
    return Backend("tasks", path)
