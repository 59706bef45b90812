"""Context windows for sampling videos longer than the motion modules' span.

Windows are uniform and closed-loop (the last one wraps to the first frames). At denoising step ``i``
every window is rotated by ``i * shift`` frames so seams move between steps.
"""

from __future__ import annotations


def uniform_windows(num_frames: int, context_frames: int, context_overlap: int) -> list[list[int]]:
    """Base windows of ``context_frames`` frame indices, consecutive windows sharing ``context_overlap``."""
    if num_frames < 1:
        raise ValueError("num_frames must be at least 1")
    if context_frames < 1 or not 0 <= context_overlap < context_frames:
        raise ValueError("need context_frames >= 1 and 0 <= context_overlap < context_frames")
    if num_frames <= context_frames:
        return [list(range(num_frames))]
    stride = context_frames - context_overlap
    return [
        [index % num_frames for index in range(start, start + context_frames)] for start in range(0, num_frames, stride)
    ]


def windows_at_step(base_windows: list[list[int]], step: int, shift: int, num_frames: int) -> list[list[int]]:
    """The base windows rotated by ``step * shift`` frames."""
    offset = step * shift
    return [[(index + offset) % num_frames for index in window] for window in base_windows]
