"""EchoMimic V2 hand poses: the sequence + JSON, the official drawing, MediaPipe extraction, alignment to
the reference person, and a safe reader for the official demo pose folders.

Importing this package only imports numpy; mediapipe and cv2 are imported when used.
"""

from .align import BodyAnchor, align_hand_poses, align_to_reference, find_bodies, reference_anchor
from .draw import DEFAULT_REF_W, draw_hand_poses
from .extract import extract_hand_poses
from .official import hand_poses_from_keypoint_records, import_official_pose_folder, read_official_pose_file
from .prepare import hand_pose_images
from .sequence import HandPoseSequence

__all__ = [
    "DEFAULT_REF_W",
    "BodyAnchor",
    "HandPoseSequence",
    "align_hand_poses",
    "align_to_reference",
    "draw_hand_poses",
    "extract_hand_poses",
    "find_bodies",
    "hand_pose_images",
    "hand_poses_from_keypoint_records",
    "import_official_pose_folder",
    "read_official_pose_file",
    "reference_anchor",
]
