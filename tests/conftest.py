"""Test-session settings that must be in place before torch loads."""

import os

# MKL picks CPU-specific FFT/GEMM code paths; the parity fixtures were made on another CPU, and the
# log-mel check (atol 1e-5) only holds with MKL's conditional-numerical-reproducibility mode.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")


def _mediapipe_from_shared_folder() -> None:
    """MediaPipe Tasks files reach the tests through the real download code (checksum, atomic rename), from
    ../shared/mediapipe as a file:// mirror, into a fresh folder per session: no test ever reaches Google.
    A run may set ECHOMIMIC_MEDIAPIPE_BASE_URL / ECHOMIMIC_MODELS_DIR itself; download tests set their own."""
    import atexit
    import shutil
    import tempfile

    from tests.parity_cases import MEDIAPIPE_ROOT

    os.environ.setdefault("ECHOMIMIC_MEDIAPIPE_BASE_URL", MEDIAPIPE_ROOT.as_uri())
    if "ECHOMIMIC_MODELS_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="echomimic-test-models-")
        atexit.register(shutil.rmtree, folder, True)
        os.environ["ECHOMIMIC_MODELS_DIR"] = folder


_mediapipe_from_shared_folder()
# Nor Hugging Face: a loader that downloads missing files on first use meets a closed loopback port.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
