"""Face mask and crop: a portrait IMAGE -> the face-centred crop EchoMimic expects + its face MASK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import COMPOSE_CATEGORY, CROP_INFO_TYPE, ensure_mediapipe_files, tooltip, user_errors

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..echomimic.compose import CropInfo


def first_image_numpy(image: torch.Tensor) -> np.ndarray:
    """The first image of a ComfyUI IMAGE batch [B, H, W, C] as float32 numpy [H, W, 3] in 0..1."""
    import numpy as np
    import torch

    tensor = torch.as_tensor(image)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    return np.ascontiguousarray(tensor[0, ..., :3].float().clamp(0, 1).cpu().numpy())


class EchoMimicFaceMaskCrop:
    DESCRIPTION = (
        "Finds the face, crops the portrait around it like the official EchoMimic scripts and returns the face "
        "MASK the audio variants need. Any MASK from other nodes can be used instead of this one."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE", tooltip("The portrait (the first image of a batch is used).")),
                "crop": (
                    "BOOLEAN",
                    tooltip(
                        "Crop a square around the face (official). Off: keep the whole image "
                        "and only compute the mask.",
                        default=True,
                    ),
                ),
                "width": (
                    "INT",
                    tooltip(
                        "Width of the cropped image; use the sampler's width.", default=512, min=64, max=2048, step=8
                    ),
                ),
                "height": (
                    "INT",
                    tooltip(
                        "Height of the cropped image; use the sampler's height.", default=512, min=64, max=2048, step=8
                    ),
                ),
                "mask_dilation": (
                    "FLOAT",
                    tooltip(
                        "How much the face box grows for the mask (official 0.1).",
                        default=0.1,
                        min=0.0,
                        max=2.0,
                        step=0.01,
                    ),
                ),
                "crop_dilation": (
                    "FLOAT",
                    tooltip(
                        "How much the face box grows for the crop (official 0.5).",
                        default=0.5,
                        min=0.0,
                        max=4.0,
                        step=0.01,
                    ),
                ),
            },
            "optional": {
                "mask": (
                    "MASK",
                    tooltip(
                        "Optional: your own face mask (white over the face, same size as the image) "
                        "instead of the detected one; also the fallback when no face is detected."
                    ),
                )
            },
        }

    # New outputs go at the end, so links of saved workflows keep their slots.
    RETURN_TYPES = ("IMAGE", "MASK", CROP_INFO_TYPE)
    RETURN_NAMES = ("image", "face_mask", "crop_info")
    OUTPUT_TOOLTIPS = (
        "The cropped portrait (width x height).",
        "1 inside the dilated face box, 0 elsewhere.",
        "Where the crop came from in the portrait; connect it to EchoMimic Paste Back to put the "
        "animated face back into the full picture.",
    )
    FUNCTION = "crop_face"
    CATEGORY = COMPOSE_CATEGORY

    @user_errors
    def crop_face(
        self,
        image: torch.Tensor,
        crop: bool,
        width: int,
        height: int,
        mask_dilation: float,
        crop_dilation: float,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, CropInfo]:
        import torch

        from ..echomimic.landmarks import face_mask_and_crop
        from ..echomimic.release import FACE_DETECTOR

        user_mask = None
        if mask is not None:
            mask_tensor = torch.as_tensor(mask).float()
            while mask_tensor.ndim > 2:
                mask_tensor = mask_tensor[0]
            user_mask = mask_tensor.cpu().numpy()
        result = face_mask_and_crop(
            first_image_numpy(image),
            crop=bool(crop),
            size=(int(width), int(height)),
            mask_dilation=float(mask_dilation),
            crop_dilation=float(crop_dilation),
            mask=user_mask,
            models_dir=ensure_mediapipe_files(FACE_DETECTOR),
        )
        cropped = torch.from_numpy(result.image).float().unsqueeze(0)
        mask = torch.from_numpy(result.mask).float().unsqueeze(0)
        return (cropped, mask, result.crop_info)


NODE_CLASS_MAPPINGS = {"EchoMimicFaceMaskCrop": EchoMimicFaceMaskCrop}
NODE_DISPLAY_NAME_MAPPINGS = {"EchoMimicFaceMaskCrop": "EchoMimic Face Mask and Crop"}
