"""Landmark nodes: extract face-mesh landmarks from frames, align them to the portrait, pick parts, draw them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import (
    DRAW_BOUND_INPUTS,
    LANDMARKS_CATEGORY,
    LANDMARKS_TYPE,
    EchoMimicNodeError,
    driving_frames_to_draw,
    ensure_mediapipe_files,
    frames_progress,
    tooltip,
    user_errors,
)

if TYPE_CHECKING:
    import torch

    from ..echomimic.landmarks import LandmarkSequence
    from .comfy_types import ComfyAudio

# Stable part names (= echomimic.landmarks.PART_NAMES), one toggle each; written out here so reading
# the node definitions never imports the landmark library.
PART_NAMES: tuple[str, ...] = ("eyebrows", "eyes", "pupils", "nose", "mouth")
_PART_TOOLTIPS = {
    "eyebrows": "Both eyebrow outlines.",
    "eyes": "Both eye outlines (lids): blinks and gaze direction of the lids.",
    "pupils": "The pupil centres (drawn as small squares): gaze.",
    "nose": "Nose bridge, tip and wings: head pose.",
    "mouth": "The lips. Leave off to let the audio drive the mouth.",
}


class EchoMimicExtractLandmarks:
    DESCRIPTION = (
        "Detects MediaPipe face-mesh landmarks (478 points) in every frame; frames without a face are filled from "
        "their neighbours."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", tooltip("Frames of a driving video (Get Video Components) or the portrait."))
            }
        }

    RETURN_TYPES = (LANDMARKS_TYPE, "IMAGE")
    RETURN_NAMES = ("landmarks", "preview")
    OUTPUT_TOOLTIPS = ("The landmark sequence, one entry per frame.", "The frames with the landmarks drawn over them.")
    FUNCTION = "extract"
    CATEGORY = LANDMARKS_CATEGORY

    @user_errors
    def extract(self, images: torch.Tensor) -> tuple[LandmarkSequence, torch.Tensor]:
        import torch

        from ..echomimic.landmarks import PART_NAMES as LIBRARY_PARTS
        from ..echomimic.landmarks import draw_landmarks, extract_landmarks
        from ..echomimic.release import FACE_LANDMARKER

        frames = torch.as_tensor(images)
        if frames.ndim == 3:
            frames = frames.unsqueeze(0)
        frames = frames[..., :3].float().clamp(0, 1).cpu()
        count, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
        sequence = extract_landmarks(
            frames.numpy(), models_dir=ensure_mediapipe_files(FACE_LANDMARKER), progress=frames_progress(count)
        )
        if sequence.filled_count:  # shown in ComfyUI's console: nothing is filled in silently
            print(f"EchoMimic Extract Landmarks: {sequence.missing_face_report()}")
        drawn = torch.from_numpy(draw_landmarks(sequence, width, height, parts=LIBRARY_PARTS))
        lit = drawn.amax(dim=-1, keepdim=True) > 0
        preview = torch.where(lit, drawn, frames * 0.6)  # dim the frame so the lines stand out
        return (sequence, preview)


class EchoMimicAlignLandmarks:
    DESCRIPTION = (
        "Motion sync: moves the driving landmarks onto the portrait's face, part by part, so the portrait keeps "
        "its own face shape while following the driver's motion."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "driving_landmarks": (LANDMARKS_TYPE, tooltip("Landmarks of the driving video.")),
                "reference_landmarks": (
                    LANDMARKS_TYPE,
                    tooltip("Landmarks of the (cropped) portrait; its first frame is used."),
                ),
                "neutral_frame": (
                    "INT",
                    tooltip(
                        "Driving frame with a neutral expression; motion is measured from it.",
                        default=0,
                        min=0,
                        max=100000,
                    ),
                ),
                "head_pose": (
                    "BOOLEAN",
                    tooltip(
                        "Follow the driver's head rotation and position (off: keep the portrait's pose).", default=True
                    ),
                ),
                "smoothing": (
                    "FLOAT",
                    tooltip(
                        "Temporal smoothing of the motion against jitter (0 = none).",
                        default=0.0,
                        min=0.0,
                        max=1.0,
                        step=0.05,
                    ),
                ),
            }
        }

    RETURN_TYPES = (LANDMARKS_TYPE,)
    RETURN_NAMES = ("landmarks",)
    OUTPUT_TOOLTIPS = ("The driving motion on the portrait's face, in the portrait's pixel space.",)
    FUNCTION = "align"
    CATEGORY = LANDMARKS_CATEGORY

    @user_errors
    def align(
        self,
        driving_landmarks: LandmarkSequence,
        reference_landmarks: LandmarkSequence,
        neutral_frame: int,
        head_pose: bool,
        smoothing: float,
    ) -> tuple[Any]:
        from ..echomimic.landmarks import align_landmarks

        aligned = align_landmarks(
            driving_landmarks,
            reference_landmarks,
            neutral_frame=int(neutral_frame),
            head_pose=bool(head_pose),
            smoothing=float(smoothing),
        )
        return (aligned,)


class EchoMimicSelectLandmarkParts:
    DESCRIPTION = (
        "Keeps only the chosen face parts. With base_landmarks connected, the chosen parts come from these "
        "landmarks and every other part from the base (e.g. eyes from a video, the rest from the still portrait)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        parts = {name: ("BOOLEAN", tooltip(_PART_TOOLTIPS[name], default=name != "mouth")) for name in PART_NAMES}
        return {
            "required": {
                "landmarks": (LANDMARKS_TYPE, tooltip("The landmarks to take the chosen parts from.")),
                **parts,
            },
            "optional": {
                "base_landmarks": (
                    LANDMARKS_TYPE,
                    tooltip(
                        "Optional: landmarks for every part not chosen (one frame is repeated), e.g. the "
                        "portrait's own. "
                        "Align the driving landmarks to the portrait first."
                    ),
                )
            },
        }

    RETURN_TYPES = (LANDMARKS_TYPE,)
    RETURN_NAMES = ("landmarks",)
    OUTPUT_TOOLTIPS = ("The landmarks with only the chosen parts (or the chosen parts merged into the base).",)
    FUNCTION = "select"
    CATEGORY = LANDMARKS_CATEGORY

    @user_errors
    def select(
        self,
        landmarks: LandmarkSequence,
        eyebrows: bool,
        eyes: bool,
        pupils: bool,
        nose: bool,
        mouth: bool,
        base_landmarks: LandmarkSequence | None = None,
    ) -> tuple[Any]:
        from ..echomimic.landmarks import merge_parts, select_parts

        flags = {"eyebrows": eyebrows, "eyes": eyes, "pupils": pupils, "nose": nose, "mouth": mouth}
        chosen = [name for name in PART_NAMES if flags[name]]
        if not chosen:
            raise EchoMimicNodeError("No face part is selected; switch on at least one part.")
        if base_landmarks is not None:
            return (merge_parts(base_landmarks, landmarks, chosen),)
        return (select_parts(landmarks, chosen),)


class EchoMimicDrawLandmarks:
    DESCRIPTION = (
        "Draws landmarks the way the official EchoMimic landmark weights were trained (the sampler's landmark images)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "landmarks": (
                    LANDMARKS_TYPE,
                    tooltip("Landmarks to draw; parts removed by Select Landmark Parts stay undrawn."),
                ),
                "width": (
                    "INT",
                    tooltip("Image width; use the sampler's width.", default=512, min=64, max=2048, step=8),
                ),
                "height": (
                    "INT",
                    tooltip("Image height; use the sampler's height.", default=512, min=64, max=2048, step=8),
                ),
                "draw_mouth": (
                    "BOOLEAN",
                    tooltip(
                        "Also draw the lips. The official landmark weights were trained without them (the audio drives "
                        "the mouth); switch on only to let the landmarks drive the mouth.",
                        default=False,
                    ),
                ),
            },
            "optional": dict(DRAW_BOUND_INPUTS),
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("landmark_images",)
    OUTPUT_TOOLTIPS = (
        "One landmark image per frame (the first max_frames, or those the audio covers, when given), for the "
        "sampler's landmark_images input.",
    )
    FUNCTION = "draw"
    CATEGORY = LANDMARKS_CATEGORY

    @user_errors
    def draw(
        self,
        landmarks: LandmarkSequence,
        width: int,
        height: int,
        draw_mouth: bool,
        max_frames: int = 0,
        audio: ComfyAudio | None = None,
    ) -> tuple[Any]:
        import torch

        from ..echomimic.landmarks import LandmarkSequence, draw_landmarks

        if not isinstance(landmarks, LandmarkSequence):
            raise EchoMimicNodeError(
                "landmarks must come from Extract, Align, Select Landmark Parts or Load Landmarks."
            )
        parts = [name for name in PART_NAMES if name != "mouth"] + (["mouth"] if draw_mouth else [])
        count = driving_frames_to_draw(
            "EchoMimic Draw Landmarks", "The landmark sequence", landmarks.num_frames, width, height, max_frames, audio
        )
        landmarks = landmarks.first(count)
        frames = draw_landmarks(landmarks, int(width), int(height), parts=parts, progress=frames_progress(count))
        return (torch.from_numpy(frames).float(),)


NODE_CLASS_MAPPINGS = {
    "EchoMimicExtractLandmarks": EchoMimicExtractLandmarks,
    "EchoMimicAlignLandmarks": EchoMimicAlignLandmarks,
    "EchoMimicSelectLandmarkParts": EchoMimicSelectLandmarkParts,
    "EchoMimicDrawLandmarks": EchoMimicDrawLandmarks,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EchoMimicExtractLandmarks": "EchoMimic Extract Landmarks",
    "EchoMimicAlignLandmarks": "EchoMimic Align Landmarks (Motion Sync)",
    "EchoMimicSelectLandmarkParts": "EchoMimic Select Landmark Parts",
    "EchoMimicDrawLandmarks": "EchoMimic Draw Landmarks",
}
