"""From a driving video (or a saved pose sequence) to the V2 pose-encoder input, in one call.

The command line and other front-ends use this; the nodes do the same steps as separate nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..landmarks.sequence import frame_list
from .align import align_to_reference
from .draw import DEFAULT_REF_W, draw_hand_poses
from .extract import extract_hand_poses
from .sequence import HandPoseSequence

if TYPE_CHECKING:
    import torch


def hand_pose_images(
    reference_image: np.ndarray,
    width: int,
    height: int,
    *,
    driving_frames: np.ndarray | torch.Tensor | None = None,
    poses: HandPoseSequence | None = None,
    align: bool = True,
    models_dir: str | Path | None = None,
    ref_w: int = DEFAULT_REF_W,
    note: Callable[[str], None] | None = None,
    draw_frames: int | None = None,
) -> tuple[np.ndarray, HandPoseSequence]:
    """Hand-pose images for the V2 pipeline, and the (aligned) poses they were drawn from.

    reference_image: [H', W', 3] float 0..1, the half-body portrait (any size with the video's aspect ratio).
    width, height: the video size. driving_frames: [F, H, W, 3] float 0..1 frames to extract hands from;
    or poses: a sequence (e.g. HandPoseSequence.load). align: move the poses onto the portrait's body.
    note: receives one-line remarks (frames without hands, frames whose hands are all outside the picture).
    draw_frames: draw only the first this many frames (those a video of at most this length uses: it shows
        frame i at video frame i); None draws all. The poses returned are all F frames either way.
    Returns ([min(F, draw_frames), height, width, 3] float32 0..1, poses).
    """
    if (driving_frames is None) == (poses is None):
        raise ValueError("give exactly one of driving_frames and poses")
    if driving_frames is not None:
        poses = extract_hand_poses(driving_frames, models_dir=models_dir, with_body=align)
    assert poses is not None
    poses.check_has_hands()
    missing = poses.frames_without_hands
    if missing and note is not None:
        note(
            f"no hand found in {len(missing)} of {poses.num_frames} frames ({frame_list(missing)}); nothing is "
            "drawn there"
        )
    if align:
        poses = align_to_reference(poses, reference_image, models_dir=models_dir)
    used = poses
    if draw_frames is not None and draw_frames < poses.num_frames:
        used = poses.frames(np.arange(max(1, int(draw_frames))))
    blank = used.check_drawable("The hand poses" + (" (aligned to the portrait)" if align else ""))
    off_picture = sorted(set(blank) - set(used.frames_without_hands))
    if off_picture and note is not None:
        note(
            f"the hands of {len(off_picture)} of {used.num_frames} frames lie outside the picture "
            f"({frame_list(off_picture)}); nothing is drawn there"
        )
    frames = draw_hand_poses(used, width, height, ref_w=ref_w).astype(np.float32) / 255.0
    return frames, poses
