"""Stand-in for `comfy.utils.ProgressBar` with ComfyUI's hook mechanism (tests set PROGRESS_BAR_HOOK)."""

from __future__ import annotations

PROGRESS_BAR_HOOK = None


def set_progress_bar_global_hook(function) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    def __init__(self, total: int, node_id=None) -> None:
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)
