"""The official post-processing of V3 videos: every frame's colours moved to the first frame's (LAB mean/std).

As infer_flash.py's ``save_videos_grid(color_transfer_post_process=True)``: OpenCV RGB -> LAB of uint8
frames, per-channel mean and std rounded to 2 decimals, ``(x - mean_s) * (std_t / std_s) + mean_t`` clipped
to [0, 255], ``convertScaleAbs`` (round, saturate), LAB -> RGB.
"""

from __future__ import annotations

import numpy as np


def _lab_stats(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    mean, std = cv2.meanStdDev(lab)
    return np.around(mean, 2).reshape(-1), np.around(std, 2).reshape(-1)


class ColorTransfer:
    """Holds the first frame's LAB statistics; ``transfer(frame)`` maps a (H, W, 3) uint8 RGB frame to them."""

    def __init__(self, first_frame: np.ndarray) -> None:
        import cv2

        self.mean, self.std = _lab_stats(cv2.cvtColor(np.ascontiguousarray(first_frame), cv2.COLOR_RGB2LAB))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        lab = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2LAB)
        mean, std = _lab_stats(lab)
        with np.errstate(divide="ignore", invalid="ignore"):  # a flat channel (std 0): as numpy gives it
            moved = (lab - mean) * (self.std / std) + self.mean
        moved = np.clip(np.nan_to_num(moved, nan=0.0, posinf=255.0, neginf=0.0), 0, 255)
        return cv2.cvtColor(cv2.convertScaleAbs(moved), cv2.COLOR_LAB2RGB)


class OfficialFrameWriter:
    """Float chunks (n, H, W, 3) in [0, 1] -> uint8 chunks as infer_flash.py saves them (truncated, then
    colour-transferred to the video's first frame)."""

    def __init__(self, color_transfer: bool = True) -> None:
        self.color_transfer = color_transfer
        self._transfer: ColorTransfer | None = None

    def __call__(self, chunk) -> np.ndarray:
        frames = (np.asarray(chunk, dtype=np.float32) * 255).astype(np.uint8)
        if not self.color_transfer:
            return frames
        out = np.empty_like(frames)
        for i, frame in enumerate(frames):
            if self._transfer is None:
                self._transfer = ColorTransfer(frame)
                out[i] = frame
            else:
                out[i] = self._transfer(frame)
        return out
