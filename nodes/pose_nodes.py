"""Hand-pose nodes (EchoMimic V2): extract hand poses from frames, align them to the reference person, draw
them for the sampler, import an official demo pose folder. Saving/loading pose JSON: see file_nodes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..echomimic.release import DEFAULT_SIZE
from ..echomimic.release import POSE_REF_W as DEFAULT_REF_W
from .common import (
    DRAW_BOUND_INPUTS,
    HAND_POSES_TYPE,
    HANDS_CATEGORY,
    EchoMimicNodeError,
    driving_frames_to_draw,
    ensure_mediapipe_files,
    frames_progress,
    tooltip,
    user_errors,
)

if TYPE_CHECKING:
    import torch

    from ..echomimic.poses import HandPoseSequence
    from .comfy_types import ComfyAudio


DEFAULT_V2_SIZE = DEFAULT_SIZE["v2"][0]  # release is torch-free: reading the node definitions stays light


def _as_frames(images: torch.Tensor) -> torch.Tensor:
    """A ComfyUI IMAGE as a float CPU tensor [F, H, W, 3] in 0..1."""
    import torch

    frames = torch.as_tensor(images)
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    return frames[..., :3].float().clamp(0, 1).cpu()


def _pose_models_dir(with_body: bool) -> str:
    """The MediaPipe folder, with the hand (and pose) Tasks files downloaded there on first use."""
    from ..echomimic.release import HAND_LANDMARKER, POSE_LANDMARKER

    return ensure_mediapipe_files(HAND_LANDMARKER, *((POSE_LANDMARKER,) if with_body else ()))


class EchoMimicExtractHandPoses:
    DESCRIPTION = (
        "Finds both hands (21 points each, MediaPipe) in every frame of a driving video, and the shoulders for "
        "aligning them to your portrait. Frames without hands get no hand drawn (as in the official data); "
        "the report lists them."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", tooltip("Frames of a half-body driving video (Get Video Components).")),
                "find_body": (
                    "BOOLEAN",
                    tooltip(
                        "Also find the shoulders (MediaPipe pose landmarker); Align Hand Poses needs them.",
                        default=True,
                    ),
                ),
            }
        }

    RETURN_TYPES = (HAND_POSES_TYPE, "IMAGE", "STRING")
    RETURN_NAMES = ("hand_poses", "preview", "report")
    OUTPUT_TOOLTIPS = (
        "The hand pose sequence, one entry per frame.",
        "The frames with the hands drawn over them (official look).",
        "How many frames had no hand, and which.",
    )
    FUNCTION = "extract"
    CATEGORY = HANDS_CATEGORY

    @user_errors
    def extract(self, images: torch.Tensor, find_body: bool) -> tuple[HandPoseSequence, torch.Tensor, str]:
        import torch

        from ..echomimic.poses import draw_hand_poses, extract_hand_poses

        frames = _as_frames(images)
        count, height, width = (int(size) for size in frames.shape[:3])
        steps = count * (2 if find_body else 1)
        poses = extract_hand_poses(
            frames.numpy(),
            models_dir=_pose_models_dir(bool(find_body)),
            with_body=bool(find_body),
            progress=frames_progress(steps),
        )
        drawn = torch.from_numpy(draw_hand_poses(poses, width, height, ref_w=min(width, height))).float() / 255.0
        lit = drawn.amax(dim=-1, keepdim=True) > 0
        preview = torch.where(lit, drawn, frames * 0.6)  # dim the frame so the hands stand out
        return (poses, preview, hand_report(poses))


def hand_report(poses: HandPoseSequence) -> str:
    """One line: frames, frames without any hand (the first few listed), frames without a body."""
    missing = poses.frames_without_hands
    text = f"{poses.num_frames} frames, {poses.num_frames - len(missing)} with hands"
    if missing:
        shown = ", ".join(str(index) for index in missing[:20]) + (", ..." if len(missing) > 20 else "")
        text += f"; no hand in {len(missing)} frame(s): {shown}"
    return text + "."


class EchoMimicAlignHandPoses:
    DESCRIPTION = (
        "Moves and scales the hand poses so that the driving person's shoulders land on the portrait's shoulders. "
        "Without it the hands keep their place in the driving video and the body distorts when the two people "
        "stand differently."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "hand_poses": (
                    HAND_POSES_TYPE,
                    tooltip(
                        "Hand poses with shoulders (Extract Hand Poses with find_body "
                        "on, or an imported official pose folder)."
                    ),
                ),
                "reference_image": ("IMAGE", tooltip("The half-body portrait to animate (its first image is used).")),
                "align": (
                    "BOOLEAN",
                    tooltip("Align to the portrait's body (off: pass the poses through unchanged).", default=True),
                ),
            }
        }

    RETURN_TYPES = (HAND_POSES_TYPE,)
    RETURN_NAMES = ("hand_poses",)
    OUTPUT_TOOLTIPS = ("The hand poses in the portrait's frame; draw them at the sampler's width and height.",)
    FUNCTION = "align"
    CATEGORY = HANDS_CATEGORY

    @user_errors
    def align(
        self, hand_poses: HandPoseSequence, reference_image: torch.Tensor, align: bool
    ) -> tuple[HandPoseSequence]:
        from ..echomimic.poses import HandPoseSequence, align_to_reference

        if not isinstance(hand_poses, HandPoseSequence):
            raise EchoMimicNodeError(
                "hand_poses must come from Extract Hand Poses, Load Hand Poses or Import Official Poses."
            )
        hand_poses.check_has_hands()
        if not align:
            return (hand_poses,)
        frames = _as_frames(reference_image)[:1]
        return (align_to_reference(hand_poses, frames.numpy(), models_dir=_pose_models_dir(True)),)


class EchoMimicDrawHandPoses:
    DESCRIPTION = (
        "Draws hand poses exactly as the official EchoMimic V2 scripts do (hands only, official colours and line "
        "widths): the sampler's hand_pose_images."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "hand_poses": (HAND_POSES_TYPE, tooltip("Hand poses to draw (aligned to the portrait).")),
                "width": (
                    "INT",
                    tooltip("Image width; use the sampler's width.", default=DEFAULT_V2_SIZE, min=64, max=2048, step=8),
                ),
                "height": (
                    "INT",
                    tooltip(
                        "Image height; use the sampler's height.", default=DEFAULT_V2_SIZE, min=64, max=2048, step=8
                    ),
                ),
                "ref_w": (
                    "INT",
                    tooltip(
                        "Resolution the lines are drawn at before resizing (the official scripts: 800). Keep 800: the "
                        "V2 weights were trained on that line thickness.",
                        default=DEFAULT_REF_W,
                        min=64,
                        max=4096,
                    ),
                ),
            },
            "optional": dict(DRAW_BOUND_INPUTS),
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("hand_pose_images",)
    OUTPUT_TOOLTIPS = (
        "One hand-pose image per frame (the first max_frames, or those the audio covers, when given), for the "
        "sampler's hand_pose_images input.",
    )
    FUNCTION = "draw"
    CATEGORY = HANDS_CATEGORY

    @user_errors
    def draw(
        self,
        hand_poses: HandPoseSequence,
        width: int,
        height: int,
        ref_w: int,
        max_frames: int = 0,
        audio: ComfyAudio | None = None,
    ) -> tuple[Any]:
        import numpy as np
        import torch

        from ..echomimic.poses import HandPoseSequence, draw_hand_poses

        if not isinstance(hand_poses, HandPoseSequence):
            raise EchoMimicNodeError(
                "hand_poses must come from Extract Hand Poses, Load Hand Poses or Import Official Poses."
            )
        hand_poses.check_has_hands()
        total = hand_poses.num_frames
        count = driving_frames_to_draw(
            "EchoMimic Draw Hand Poses", "The hand pose sequence", total, width, height, max_frames, audio
        )
        if count < total:
            hand_poses = hand_poses.frames(np.arange(count))
        frames = draw_hand_poses(hand_poses, int(width), int(height), ref_w=int(ref_w), progress=frames_progress(count))
        return (torch.from_numpy(frames).float() / 255.0,)


class EchoMimicImportOfficialPoses:
    DESCRIPTION = (
        "Imports an official EchoMimic V2 demo pose folder (assets/halfbody_demo/pose/<name>: 0.npy, 1.npy, ...) "
        "safely: only numpy arrays and numbers are read, nothing in the files is run."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "folder": (
                    "STRING",
                    tooltip(
                        "Path of the pose folder on the ComfyUI machine, e.g. "
                        ".../echomimic_v2/assets/halfbody_demo/pose/01.",
                        default="",
                    ),
                )
            }
        }

    RETURN_TYPES = (HAND_POSES_TYPE, "STRING")
    RETURN_NAMES = ("hand_poses", "report")
    OUTPUT_TOOLTIPS = (
        "The demo gesture as a hand pose sequence (768x768, with shoulders for alignment).",
        "How many frames, and which have no hand.",
    )
    FUNCTION = "import_folder"
    CATEGORY = HANDS_CATEGORY

    @user_errors
    def import_folder(self, folder: str) -> tuple[Any, str]:
        from ..echomimic.poses import import_official_pose_folder

        if not str(folder).strip():
            raise EchoMimicNodeError("Give the path of an official pose folder (it holds 0.npy, 1.npy, ...).")
        poses = import_official_pose_folder(str(folder).strip())
        poses.check_has_hands()
        return (poses, hand_report(poses))


NODE_CLASS_MAPPINGS = {
    "EchoMimicExtractHandPoses": EchoMimicExtractHandPoses,
    "EchoMimicAlignHandPoses": EchoMimicAlignHandPoses,
    "EchoMimicDrawHandPoses": EchoMimicDrawHandPoses,
    "EchoMimicImportOfficialPoses": EchoMimicImportOfficialPoses,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EchoMimicExtractHandPoses": "EchoMimic Extract Hand Poses (V2)",
    "EchoMimicAlignHandPoses": "EchoMimic Align Hand Poses to Portrait (V2)",
    "EchoMimicDrawHandPoses": "EchoMimic Draw Hand Poses (V2)",
    "EchoMimicImportOfficialPoses": "EchoMimic Import Official Poses (V2)",
}
