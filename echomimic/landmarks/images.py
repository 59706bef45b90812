"""Checking and converting ComfyUI-style images ([F, H, W, 3] float 0..1) for MediaPipe."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def as_image_batch(images: Any, *, what: str = "images") -> np.ndarray:
    """A float32 [F, H, W, 3] array from a numpy array or torch tensor ([H, W, 3] counts as one frame)."""
    if hasattr(images, "detach"):  # torch tensor, without importing torch here
        images = images.detach().to("cpu").float().numpy()
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise InputError(
            f"The {what} must be an image batch [frames, height, width, 3], got shape {tuple(array.shape)}."
        )
    if array.shape[0] == 0:
        raise InputError(f"The {what} batch is empty; give at least one image.")
    if array.shape[-1] != 3:
        raise InputError(
            f"The {what} must be RGB with 3 channels, got {array.shape[-1]} "
            "(convert grayscale or RGBA images to RGB first)."
        )
    if array.shape[1] < 2 or array.shape[2] < 2:
        raise InputError(f"The {what} are too small ({array.shape[2]}x{array.shape[1]} pixels).")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(
            f"The {what} must be floats in 0..1 (ComfyUI IMAGE), got {array.dtype}; divide 8-bit images by 255."
        )
    return array.astype(np.float32, copy=False)


def to_uint8_rgb(frame: np.ndarray) -> np.ndarray:
    """[H, W, 3] float 0..1 -> contiguous [H, W, 3] uint8 (what MediaPipe takes)."""
    return np.ascontiguousarray(np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8))
