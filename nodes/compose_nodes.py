"""Paste Back: generated face crops + the crop info + the original picture -> full-size frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# echomimic.compose is light (no torch at import): its combo values (stable, saved in workflows) and defaults.
from ..echomimic.compose import BLEND_REGIONS, DEFAULT_COLOR_BAND, DEFAULT_FEATHER, DEFAULT_MASK_MARGIN
from .common import (
    COMPOSE_CATEGORY,
    CROP_INFO_TYPE,
    EchoMimicNodeError,
    finite_inputs,
    raise_interrupted,
    tooltip,
    user_errors,
)

if TYPE_CHECKING:
    import torch

    from ..echomimic.compose import CropInfo


class EchoMimicPasteBack:
    DESCRIPTION = (
        "Puts the animated face crop back into the full-size original picture: each frame is resized back to "
        "where the crop came from and blended in with a soft edge, optionally colour-matched to the picture "
        "around the border. The output frames have the original picture's size."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", tooltip("The generated frames (the EchoMimic Sampler's images).")),
                "crop_info": (CROP_INFO_TYPE, tooltip("From EchoMimic Face Mask and Crop: where the crop came from.")),
                "original_image": ("IMAGE", tooltip("The full picture that went into EchoMimic Face Mask and Crop.")),
                "feather": (
                    "INT",
                    tooltip(
                        "Width in picture pixels of the soft edge where the crop meets the "
                        "untouched picture; 0 = hard edge.",
                        default=DEFAULT_FEATHER,
                        min=0,
                        max=512,
                    ),
                ),
                "blend_region": (
                    list(BLEND_REGIONS),
                    tooltip(
                        "whole crop: replace the whole cropped square. face mask: replace only the face mask grown by "
                        "mask_margin (the rest of the picture stays still); connect face_mask.",
                        default="whole crop",
                    ),
                ),
                "mask_margin": (
                    "INT",
                    tooltip(
                        "face mask region only: how many picture pixels the face mask grows by "
                        "(hair, chin and neck move too).",
                        default=DEFAULT_MASK_MARGIN,
                        min=0,
                        max=1024,
                    ),
                ),
                "color_match": (
                    "BOOLEAN",
                    tooltip(
                        "Match each frame's colour (mean and spread per channel) to the "
                        "picture in a band along the crop border, so lighting does not "
                        "jump at the edge.",
                        default=False,
                    ),
                ),
                "color_band": (
                    "INT",
                    tooltip(
                        "color_match only: width in picture pixels of the border band.",
                        default=DEFAULT_COLOR_BAND,
                        min=1,
                        max=256,
                    ),
                ),
            },
            "optional": {
                "face_mask": (
                    "MASK",
                    tooltip(
                        "For blend_region 'face mask': the face_mask of EchoMimic Face Mask "
                        "and Crop (or any mask of the crop)."
                    ),
                )
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The frames at the original picture's size.",)
    FUNCTION = "paste_back"
    CATEGORY = COMPOSE_CATEGORY

    @user_errors
    def paste_back(
        self,
        images: torch.Tensor,
        crop_info: CropInfo,
        original_image: torch.Tensor,
        feather: int,
        blend_region: str,
        mask_margin: int,
        color_match: bool,
        color_band: int,
        face_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor]:
        import comfy.model_management as model_management
        import comfy.utils
        import torch

        from ..echomimic.compose import CropInfo, iter_paste_back

        if not isinstance(crop_info, CropInfo):  # e.g. a dict, or one made by another copy of the library
            fields = crop_info if isinstance(crop_info, dict) else getattr(crop_info, "__dict__", {})
            if not {"box", "original_size", "crop_size"} <= set(fields):
                raise EchoMimicNodeError("crop_info must come from EchoMimic Face Mask and Crop.")
            crop_info = CropInfo.from_dict(fields)
        finite_inputs(images=images, original_image=original_image, face_mask=face_mask)
        frames = torch.as_tensor(images)
        frames = frames[None] if frames.ndim == 3 else frames
        total = int(frames.shape[0])
        width, height = crop_info.original_size
        out = torch.empty((total, height, width, 3), dtype=torch.float32)
        progress = comfy.utils.ProgressBar(total)
        done = 0
        for part in iter_paste_back(
            frames,
            crop_info,
            original_image,
            feather=int(feather),
            region=blend_region,
            face_mask=face_mask,
            mask_margin=int(mask_margin),
            color_match=bool(color_match),
            color_band=int(color_band),
        ):
            if model_management.processing_interrupted():
                raise_interrupted()
            out[done : done + part.shape[0]] = part
            done += int(part.shape[0])
            progress.update_absolute(done, total)
        return (out,)


NODE_CLASS_MAPPINGS = {"EchoMimicPasteBack": EchoMimicPasteBack}
NODE_DISPLAY_NAME_MAPPINGS = {"EchoMimicPasteBack": "EchoMimic Paste Back"}
