"""Facial landmarks: extraction (MediaPipe), official-look drawing, part-aware alignment, part
selection and the face mask / crop of the audio-driven mode.

Importing this package only imports numpy; mediapipe and cv2 are imported when used.
"""

from .align import align_landmarks
from .draw import DEFAULT_DRAWN_PARTS, draw_landmarks
from .extract import extract_landmarks
from .face_crop import FaceCrop, face_mask_and_crop
from .parts import PART_NAMES, merge_parts, select_parts
from .sequence import LandmarkSequence

__all__ = [
    "DEFAULT_DRAWN_PARTS",
    "PART_NAMES",
    "FaceCrop",
    "LandmarkSequence",
    "align_landmarks",
    "draw_landmarks",
    "extract_landmarks",
    "face_mask_and_crop",
    "merge_parts",
    "select_parts",
]
