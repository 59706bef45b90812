"""Optional ``torch.compile`` of the denoising UNet's blocks (off by default; a loader option).

Only the frame-wise pieces with plain tensor signatures are compiled: resnets, attention layers,
feed-forwards and motion modules. The transformer blocks' per-video reference cache and the row
splits stay in eager Python, so compiling never changes which work runs. Modules are compiled in
place (``nn.Module.compile``): parameter names and the ``state_dict`` are unchanged.
"""

from __future__ import annotations

from torch import nn

from .attention import Attention, FeedForward
from .motion_module import MotionModule
from .resnet import ResnetBlock

COMPILED_TYPES = (ResnetBlock, Attention, FeedForward, MotionModule)


def compile_unet_blocks(unet: nn.Module, *, backend: str = "inductor", mode: str | None = None) -> int:
    """Compile every resnet, attention, feed-forward and motion module of ``unet`` in place.

    Attention layers inside a motion module are compiled with it, not on their own.
    The first call of each shape is slow (compilation); later calls reuse it. Returns how many modules
    were compiled. ``backend``/``mode`` go to ``torch.compile`` ("eager" checks the wiring without a
    compiler).
    """
    compiled = 0
    inside_motion: set[int] = set()
    for module in unet.modules():
        if isinstance(module, MotionModule):
            inside_motion.update(id(child) for child in module.modules() if child is not module)
    for module in unet.modules():
        if isinstance(module, COMPILED_TYPES) and id(module) not in inside_motion:
            module.compile(backend=backend, mode=mode, dynamic=None)
            compiled += 1
    return compiled
