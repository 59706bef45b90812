"""Paste generated face crops back into the full-size original picture.

The face crop (:func:`echomimic.landmarks.face_mask_and_crop`) cuts a box out of the original image and
resizes it to the sampler's size. :class:`CropInfo` remembers that box; :func:`paste_back` undoes it for
every generated frame: the frame is resized back to the box, optionally colour-matched to the original
in a band along the box border, and blended in with a feathered mask (the whole box, or only the face
mask grown by a margin). Pixels outside the blend mask are the original's, bit for bit.

Frames are processed ``chunk`` at a time (:func:`iter_paste_back` yields them), so the working memory
does not grow with the video length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import torch

Box = tuple[int, int, int, int]
BLEND_REGIONS = ("whole crop", "face mask")
DEFAULT_FEATHER = 24
DEFAULT_MASK_MARGIN = 32
DEFAULT_COLOR_BAND = 16
DEFAULT_CHUNK = 16


@dataclass(frozen=True)
class CropInfo:
    """Where a crop came from.

    box: (x0, y0, x1, y1) in the original image's pixels, x1/y1 exclusive; it may extend past the
        image (a padded crop): those parts are dropped when pasting back.
    original_size: (width, height) of the original image.
    crop_size: (width, height) the box was resized to (the crop image's size).
    """

    box: Box
    original_size: tuple[int, int]
    crop_size: tuple[int, int]

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"The crop box {self.box} is empty; crop the picture again.")
        if min(self.original_size) <= 0 or min(self.crop_size) <= 0:
            raise InputError(f"Crop sizes must be positive, got original {self.original_size}, crop {self.crop_size}.")
        if x1 <= 0 or y1 <= 0 or x0 >= self.original_size[0] or y0 >= self.original_size[1]:
            raise InputError(
                f"The crop box {self.box} lies outside the {self.original_size[0]}x"
                f"{self.original_size[1]} picture; crop the picture again."
            )

    @property
    def box_size(self) -> tuple[int, int]:
        """(width, height) of the box in original pixels."""
        return self.box[2] - self.box[0], self.box[3] - self.box[1]

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): crop pixels per original pixel (the resize the crop applied)."""
        return self.crop_size[0] / self.box_size[0], self.crop_size[1] / self.box_size[1]

    def to_crop(self, x: float, y: float) -> tuple[float, float]:
        """A point in original pixel coordinates -> the same point in crop pixel coordinates."""
        sx, sy = self.scale
        return (x - self.box[0]) * sx, (y - self.box[1]) * sy

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """A point in crop pixel coordinates -> the same point in original pixel coordinates."""
        sx, sy = self.scale
        return x / sx + self.box[0], y / sy + self.box[1]

    def visible_box(self) -> Box:
        """The part of the box inside the original image (x0, y0, x1, y1)."""
        width, height = self.original_size
        x0, y0, x1, y1 = self.box
        return max(0, x0), max(0, y0), min(width, x1), min(height, y1)

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "original_size": list(self.original_size), "crop_size": list(self.crop_size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CropInfo:
        try:
            return cls(
                tuple(int(v) for v in data["box"]),  # type: ignore[arg-type]
                tuple(int(v) for v in data["original_size"]),  # type: ignore[arg-type]
                tuple(int(v) for v in data["crop_size"]),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"Not a crop info ({error}); it needs box, original_size and crop_size.") from None


def whole_image_crop_info(width: int, height: int, crop_size: tuple[int, int] | None = None) -> CropInfo:
    """The crop info of an image that was not cropped (only resized to ``crop_size``)."""
    return CropInfo((0, 0, int(width), int(height)), (int(width), int(height)), crop_size or (int(width), int(height)))


def _edge_ramp(length: int, feather: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """[length] weights: 1 inside, falling linearly to ~0 over ``feather`` pixels at each faded end."""
    import torch

    position = torch.arange(length, dtype=torch.float32) + 0.5
    ramp = torch.ones(length)
    if feather > 0:
        if fade_start:
            ramp = torch.minimum(ramp, position / feather)
        if fade_end:
            ramp = torch.minimum(ramp, (length - position) / feather)
    return ramp.clamp(0.0, 1.0)


def box_blend_mask(info: CropInfo, feather: int) -> torch.Tensor:
    """[bh, bw] blend weights over the box: 1 inside, feathered to 0 over ``feather`` pixels at every box side
    that lies inside the picture (a side on the picture's border has nothing to blend with)."""
    width, height = info.original_size
    x0, y0, x1, y1 = info.box
    bw, bh = info.box_size
    ramp_x = _edge_ramp(bw, feather, x0 > 0, x1 < width)
    ramp_y = _edge_ramp(bh, feather, y0 > 0, y1 < height)
    return ramp_y[:, None] * ramp_x[None, :]


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """[H, W] -> [H, W] max over a (2 radius + 1)^2 square."""
    import torch.nn.functional as F

    if radius <= 0:
        return mask
    return F.max_pool2d(mask[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]


def _soften(mask: torch.Tensor, feather: int) -> torch.Tensor:
    """[H, W] -> [H, W]: two box blurs of width ``feather`` (a smooth ramp about ``feather`` pixels wide)."""
    import torch.nn.functional as F

    radius = max(0, feather // 2)
    if radius == 0:
        return mask
    out = mask[None, None]
    for _ in range(2):
        out = F.avg_pool2d(F.pad(out, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)
    return out[0, 0]


def _resize_hw(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N, C, h, w] -> [N, C, height, width], bilinear (antialiased when shrinking); unchanged when equal."""
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == (height, width):
        return images
    shrink = height < images.shape[-2] or width < images.shape[-1]
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)


def face_blend_mask(info: CropInfo, face_mask: torch.Tensor, margin: int, feather: int) -> torch.Tensor:
    """[bh, bw] weights from a crop-space face mask [h, w] (0..1): resized to the box, grown by ``margin``
    original pixels (fully generated there), fading out over the next ``feather`` pixels, and kept inside
    the feathered box."""
    import torch

    mask = torch.as_tensor(face_mask).float()
    while mask.ndim > 2:
        mask = mask[0]
    if float(mask.max()) <= 0.0:
        raise InputError("The face mask is empty (all 0); connect the face mask of the crop, or blend the whole crop.")
    bw, bh = info.box_size
    mask = _resize_hw(mask[None, None], bh, bw)[0, 0]
    mask = (mask > 0.5).float()
    # Grown by half the feather more, so the soft edge starts where the margin ends.
    grown = _soften(_dilate(mask, int(margin) + int(feather) // 2), int(feather))
    return grown * box_blend_mask(info, feather)


def _color_match(generated: torch.Tensor, original: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """Shift/scale each channel of ``generated`` [N, 3, h, w] so its mean/std in ``band`` [h, w] (bool)
    equal the ``original`` [1 or N, 3, h, w] ones there (per frame)."""
    eps = 1e-4
    gen = generated[..., band]  # [N, 3, K]
    ref = original[..., band]
    gen_mean, gen_std = gen.mean(-1), gen.std(-1, unbiased=False)
    ref_mean, ref_std = ref.mean(-1), ref.std(-1, unbiased=False)
    gain = (ref_std + eps) / (gen_std + eps)
    return ((generated - gen_mean[..., None, None]) * gain[..., None, None] + ref_mean[..., None, None]).clamp(0, 1)


def _border_band(info: CropInfo, width: int) -> torch.Tensor:
    """[vh, vw] bool over the visible box: True within ``width`` pixels of a box side inside the picture."""
    import torch

    vx0, vy0, vx1, vy1 = info.visible_box()
    full_w, full_h = info.original_size
    ys = torch.arange(vy0, vy1)[:, None]
    xs = torch.arange(vx0, vx1)[None, :]
    x0, y0, x1, y1 = info.box
    band = torch.zeros((vy1 - vy0, vx1 - vx0), dtype=torch.bool)
    if x0 > 0:
        band |= xs < x0 + width
    if x1 < full_w:
        band |= xs >= x1 - width
    if y0 > 0:
        band |= ys < y0 + width
    if y1 < full_h:
        band |= ys >= y1 - width
    if not bool(band.any()):  # the box is the whole picture: use its outer ring
        band |= (xs < x0 + width) | (xs >= x1 - width) | (ys < y0 + width) | (ys >= y1 - width)
    return band


def _as_frames(images: Any, what: str) -> torch.Tensor:
    """[F, H, W, C] or [H, W, C] float 0..1 -> [F, H, W, 3] float32 (CPU)."""
    import torch

    tensor = torch.as_tensor(images)
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4 or tensor.shape[-1] < 3 or tensor.shape[0] == 0:
        raise InputError(f"The {what} must be RGB images [frames, height, width, 3], got shape {tuple(tensor.shape)}.")
    return tensor[..., :3].float().cpu()


def iter_paste_back(
    frames: Any,
    info: CropInfo,
    original: Any,
    *,
    feather: int = DEFAULT_FEATHER,
    region: str = "whole crop",
    face_mask: Any = None,
    mask_margin: int = DEFAULT_MASK_MARGIN,
    color_match: bool = False,
    color_band: int = DEFAULT_COLOR_BAND,
    chunk: int = DEFAULT_CHUNK,
) -> Iterator[torch.Tensor]:
    """Yield full-size frames [n <= chunk, H, W, 3] float32 0..1, in order (see :func:`paste_back`)."""
    frames = _as_frames(frames, "generated frames")
    originals = _as_frames(original, "original image")
    width, height = info.original_size
    if tuple(originals.shape[1:3]) != (height, width):
        raise InputError(
            f"The original image is {originals.shape[2]}x{originals.shape[1]} but the crop was cut from "
            f"a {width}x{height} picture; connect the picture that went into the face crop."
        )
    if originals.shape[0] not in (1, frames.shape[0]):
        raise InputError(
            f"Give one original image (or one per frame), not {originals.shape[0]} for {frames.shape[0]} frames."
        )
    if region not in BLEND_REGIONS:
        raise InputError(f"Unknown blend region {region!r}; choose one of {list(BLEND_REGIONS)}.")
    if feather < 0 or mask_margin < 0 or color_band < 1 or chunk < 1:
        raise InputError("feather and mask_margin must not be negative; color_band and chunk must be at least 1.")

    bw, bh = info.box_size
    x0, y0 = info.box[:2]
    vx0, vy0, vx1, vy1 = info.visible_box()
    # The visible part of the box, in box coordinates.
    inner = (slice(vy0 - y0, vy1 - y0), slice(vx0 - x0, vx1 - x0))
    if region == "face mask":
        if face_mask is None:
            raise InputError(
                "Blending only the face needs the face mask: connect the crop's face mask, or blend the whole crop."
            )
        weights = face_blend_mask(info, face_mask, mask_margin, feather)
    else:
        weights = box_blend_mask(info, feather)
    weights = weights[inner][None, None]  # [1, 1, vh, vw]
    band = _border_band(info, int(color_band)) if color_match else None

    for start in range(0, frames.shape[0], chunk):
        part = frames[start : start + chunk]
        n = part.shape[0]
        base = originals if originals.shape[0] == 1 else originals[start : start + n]
        out = base.expand(n, -1, -1, -1).clone()
        region_original = base[:, vy0:vy1, vx0:vx1].permute(0, 3, 1, 2)  # [1 or n, 3, vh, vw]
        pasted = _resize_hw(part.permute(0, 3, 1, 2), bh, bw)[:, :, inner[0], inner[1]].clamp(0, 1)
        if band is not None:
            pasted = _color_match(pasted, region_original, band)
        blended = region_original + weights * (pasted - region_original)
        out[:, vy0:vy1, vx0:vx1] = blended.permute(0, 2, 3, 1)
        yield out
        del out, pasted, blended


def paste_back(frames: Any, info: CropInfo, original: Any, **options: Any) -> torch.Tensor:
    """Generated crops [F, h, w, 3] 0..1 -> full-size frames [F, H, W, 3] float32 0..1.

    original: the picture the crop was cut from, [H, W, 3] or [1 or F, H, W, 3] 0..1.
    options: feather (pixels), region ("whole crop" | "face mask"), face_mask (crop-space [h, w], for
    region "face mask"), mask_margin (pixels the face mask grows by), color_match, color_band (pixels),
    chunk (frames per step). The output holds every frame; stream :func:`iter_paste_back` to avoid that.
    """
    import torch

    parts = iter_paste_back(frames, info, original, **options)
    first = next(parts)
    total = int(_as_frames(frames, "generated frames").shape[0])
    out = torch.empty((total, *first.shape[1:]), dtype=torch.float32)
    out[: first.shape[0]] = first
    position = first.shape[0]
    for part in parts:
        out[position : position + part.shape[0]] = part
        position += part.shape[0]
    return out


__all__ = [
    "BLEND_REGIONS",
    "CropInfo",
    "box_blend_mask",
    "face_blend_mask",
    "iter_paste_back",
    "paste_back",
    "whole_image_crop_info",
]
