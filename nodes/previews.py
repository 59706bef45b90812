"""Live previews for the sampler node, through ComfyUI's progress-bar preview (like the core KSampler).

Follows ComfyUI's preview setting (`--preview-method`): none -> no previews; auto/latent2rgb -> the
linear latent-to-RGB picture; taesd -> ComfyUI's own TAESD previewer when its decoder file is installed
(ComfyUI falls back to latent2rgb otherwise). If ComfyUI's previewer cannot be used, the library's
latent2rgb (the same factors) is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


DEFAULT_PREVIEW_SIZE = 512

PreviewFn = Callable[[Any], Any]


def _preview_settings() -> tuple[str, int]:
    """(ComfyUI's preview method value, e.g. 'none' / 'auto' / 'latent2rgb' / 'taesd'; max preview size)."""
    try:
        from comfy.cli_args import args
    except ImportError:
        return "none", DEFAULT_PREVIEW_SIZE
    method = getattr(args, "preview_method", None)
    method = getattr(method, "value", method)
    return str(method or "none"), int(getattr(args, "preview_size", DEFAULT_PREVIEW_SIZE) or DEFAULT_PREVIEW_SIZE)


def step_previewer(device: torch.device) -> PreviewFn | None:
    """A function video latents [1, 4, F, h, w] -> ComfyUI preview ("JPEG", PIL image, max size) of the
    middle frame, or None when previews are off."""
    method, max_size = _preview_settings()
    if method in ("none", "off", ""):
        return None
    comfy_previewer = None
    try:
        import comfy.latent_formats
        import latent_preview

        comfy_previewer = latent_preview.get_previewer(device, comfy.latent_formats.SD15())
    except Exception as error:  # an older/newer ComfyUI without these helpers: use our own latent2rgb
        logging.debug("EchoMimic previews: ComfyUI's previewer unavailable (%s); using latent2rgb.", error)

    from PIL import Image

    from ..echomimic.preview import preview_frame_indices, preview_image

    def make_preview(latents: torch.Tensor) -> Any:
        if comfy_previewer is not None:
            middle = preview_frame_indices(int(latents.shape[2]))[0]
            return comfy_previewer.decode_latent_to_preview_image("JPEG", latents[:, :, middle].detach().clone())
        return ("JPEG", Image.fromarray(preview_image(latents)), max_size)

    return make_preview
