"""Face box, face-locator mask and face crop of the reference image (audio-driven mode).

Follows the official infer_audio2vid.py, with MediaPipe's face detector in place of facenet MTCNN:
- face box: MediaPipe short-range face detection (legacy `solutions.face_detection` model 0, or the
  Tasks `FaceDetector` with 'blaze_face_short_range.tflite'); the largest face; corners rounded to
  whole pixels (x0, y0, x1, y1) = round(xmin * W), round(ymin * H), round((xmin + w) * W), ...
- mask: 1 inside the box grown by int(mask_dilation * box size) on each side, clipped to the image
  (the official code lets a negative start wrap around; clipping is what it means);
- crop: the box grown by int(crop_dilation * box size), clipped, then the official crop_and_pad
  (a centred square of the shorter side), resized as 8-bit with cv2.resize (bilinear) to `size`
  (bit-exact with the official for images loaded from 8-bit files); the mask gets
  the same crop and resize (as 0/255 uint8 like the official, then /255, so edge pixels may fall
  between 0 and 1).
- a caller's own mask replaces the computed one; when no face is found its bounding box serves as
  the face box for the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..mediapipe_runner import MediaPipeRunner
from .backends import FACE_DETECTOR_FILE, choose_backend
from .images import as_image_batch, to_uint8_rgb

if TYPE_CHECKING:
    from ..compose import CropInfo

Box = tuple[int, int, int, int]


@dataclass(eq=False)
class FaceCrop:
    """image: [S_h, S_w, 3] float32 0..1 (the crop resized to `size`, or the original image when not cropping).
    mask: [S_h, S_w] float32 0..1 aligned with `image` (1 on the face).
    box: face box (x0, y0, x1, y1) in source pixels.
    crop_box: the square (x0, y0, x1, y1) cut from the source, None when not cropping.
    source_size: (width, height) of the source image.
    """

    image: np.ndarray
    mask: np.ndarray
    box: Box
    crop_box: Box | None = None
    source_size: tuple[int, int] | None = None

    @property
    def crop_info(self) -> CropInfo:
        """Where `image` came from in the source (the whole source when not cropping), for pasting back."""
        from ..compose import CropInfo, whole_image_crop_info

        out_size = (int(self.image.shape[1]), int(self.image.shape[0]))
        source = self.source_size or out_size
        if self.crop_box is None:
            return whole_image_crop_info(source[0], source[1], out_size)
        return CropInfo(self.crop_box, source, out_size)


def detect_face_box(
    image: np.ndarray,
    *,
    models_dir: str | Path | None = None,
    backend: str = "auto",
    legacy_available: bool | None = None,
    min_confidence: float = 0.5,
) -> Box | None:
    """Largest face box (x0, y0, x1, y1) in pixels of image [H, W, 3] float 0..1, or None."""
    chosen = choose_backend(FACE_DETECTOR_FILE, models_dir, backend=backend, legacy_available=legacy_available)
    frame = to_uint8_rgb(image)
    height, width = frame.shape[:2]
    boxes: list[tuple[float, float, float, float]] = []

    def legacy() -> Any:
        from mediapipe.python.solutions import face_detection

        return face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)

    def tasks(base_options: Any) -> Any:
        from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions

        return FaceDetector.create_from_options(
            FaceDetectorOptions(base_options=base_options, min_detection_confidence=min_confidence)
        )

    with MediaPipeRunner(chosen, legacy=legacy, tasks=tasks) as detector:
        result = detector.run(frame)
    if detector.legacy:
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            boxes.append(
                (rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height)
            )
    else:
        for detection in result.detections:
            b = detection.bounding_box
            boxes.append((b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height))
    if not boxes:
        return None
    x0, y0, x1, y1 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    return tuple(int(v) for v in np.round([x0, y0, x1, y1]))  # type: ignore[return-value]


def grow_box(box: Box, ratio: float, width: int, height: int) -> Box:
    """`box` grown by int(ratio * its width/height) on each side, clipped to the image."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = int((x1 - x0) * ratio), int((y1 - y0) * ratio)
    return max(0, x0 - pad_x), max(0, y0 - pad_y), min(width, x1 + pad_x), min(height, y1 + pad_y)


def square_crop_box(rect: Box, width: int, height: int) -> Box:
    """The official crop_and_pad square: the shorter side of `rect`, centred on it, kept in the image."""
    x0, y0 = max(0, rect[0]), max(0, rect[1])
    x1, y1 = min(width, rect[2]), min(height, rect[3])
    side = min(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    sx0, sy0 = max(0, cx - side // 2), max(0, cy - side // 2)
    sx1, sy1 = min(width, sx0 + side), min(height, sy0 + side)
    side = min(sx1 - sx0, sy1 - sy0)
    return sx0, sy0, sx0 + side, sy0 + side


def _mask_box(mask: np.ndarray) -> Box | None:
    rows, cols = np.nonzero(mask > 0.5)
    if rows.size == 0:
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def face_mask_and_crop(
    image: np.ndarray | Any,
    *,
    crop: bool = True,
    size: tuple[int, int] = (512, 512),
    mask_dilation: float = 0.1,
    crop_dilation: float = 0.5,
    mask: np.ndarray | Any | None = None,
    models_dir: str | Path | None = None,
    backend: str = "auto",
    legacy_available: bool | None = None,
) -> FaceCrop:
    """Face-locator mask and (optionally) the face crop of a reference image.

    image: [H, W, 3] float 0..1 RGB (a [1, H, W, 3] batch is accepted).
    size: (width, height) of the crop.
    mask: optional [H, W] float 0..1 mask to use instead of the face box one.
    Raises InputError when no face is found and no mask is given (suggesting to pass a mask).
    """
    frame = as_image_batch(image, what="reference image")
    if frame.shape[0] != 1:
        raise InputError(f"Give one reference image, not {frame.shape[0]}.")
    frame = frame[0]
    height, width = frame.shape[:2]
    out_width, out_height = (int(v) for v in size)
    if out_width <= 0 or out_height <= 0:
        raise InputError(f"The crop size must be positive, got {out_width}x{out_height}.")
    if mask_dilation < 0 or crop_dilation < 0:
        raise InputError("mask_dilation and crop_dilation must not be negative.")
    user_mask = None
    if mask is not None:
        if hasattr(mask, "detach"):
            mask = mask.detach().to("cpu").float().numpy()
        user_mask = np.asarray(mask, dtype=np.float32)
        user_mask = user_mask.reshape(user_mask.shape[-2:]) if user_mask.size == height * width else user_mask
        if user_mask.shape != (height, width):
            raise InputError(
                f"The face mask is {tuple(np.shape(mask))} but the image is {height}x{width}; "
                "give a mask of the image's height and width."
            )
        if not crop:  # nothing to detect
            return FaceCrop(
                frame.copy(),
                user_mask.copy(),
                _mask_box(user_mask) or (0, 0, width, height),
                source_size=(width, height),
            )

    box = detect_face_box(frame, models_dir=models_dir, backend=backend, legacy_available=legacy_available)
    if box is None and user_mask is not None:
        box = _mask_box(user_mask)
    if box is None:
        raise InputError(
            "No face was found in the reference image. Pass your own face mask (white over the face), "
            "or use a clearer, roughly frontal portrait where the face is large enough."
        )
    if user_mask is not None:
        mask_u8 = np.rint(np.clip(user_mask, 0, 1) * 255).astype(np.uint8)
    else:
        mask_u8 = np.zeros((height, width), dtype=np.uint8)
        mx0, my0, mx1, my1 = grow_box(box, mask_dilation, width, height)
        mask_u8[my0:my1, mx0:mx1] = 255
    if not crop:
        return FaceCrop(frame.copy(), mask_u8.astype(np.float32) / 255.0, box, source_size=(width, height))

    import cv2

    crop_box = square_crop_box(grow_box(box, crop_dilation, width, height), width, height)
    cx0, cy0, cx1, cy1 = crop_box
    if cx1 <= cx0 or cy1 <= cy0:
        raise InputError("The face box is empty; pass your own face mask or a larger image.")
    # Resized as 8-bit like the official (lossless for images loaded from 8-bit files).
    image_crop = cv2.resize(to_uint8_rgb(frame[cy0:cy1, cx0:cx1]), (out_width, out_height))
    mask_crop = cv2.resize(np.ascontiguousarray(mask_u8[cy0:cy1, cx0:cx1]), (out_width, out_height))
    return FaceCrop(
        image_crop.astype(np.float32) / 255.0,
        mask_crop.astype(np.float32) / 255.0,
        box,
        crop_box,
        source_size=(width, height),
    )
