"""Flow-matching UniPC for V3 flash: diffusers' ``UniPCMultistepScheduler`` with the official sigma table.

The official ``FlowUniPCMultistepScheduler`` is diffusers' UniPC (bh2, order 2, x0-prediction, lower order at
the end) on flow sigmas. The step math is diffusers' own; only the table differs in the last bits, so it is
set here exactly as the official ``set_timesteps(steps, shift)`` makes it:

- ``s = linspace(sigma_max, 0, steps + 1)[:-1]`` in float64, where ``sigma_max`` is the float32 of
  ``1 - 1/1000`` read back as a Python float (0.9990000128746033, not 0.999);
- ``s = shift * s / (1 + (shift - 1) * s)``;
- timesteps ``(s * 1000)`` truncated to int64, sigmas float32 ``[s..., 0]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

NUM_TRAIN_TIMESTEPS = 1000
SIGMA_MAX = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))


def flow_sigmas(steps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps int64 (steps,), sigmas float32 (steps + 1,)) of the official table."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    s = np.linspace(SIGMA_MAX, 0.0, steps + 1)[:-1]
    s = shift * s / (1 + (shift - 1) * s)
    timesteps = (s * NUM_TRAIN_TIMESTEPS).astype(np.int64)
    sigmas = np.concatenate([s, [0.0]]).astype(np.float32)
    return timesteps, sigmas


def make_flow_unipc(steps: int, shift: float, device: torch.device | str = "cpu"):
    """A diffusers UniPC scheduler set up for ``steps`` flow steps with ``shift`` (official: 8 steps, shift 5).

    Call ``.step(velocity, t, latents).prev_sample`` once per timestep in ``.timesteps``.
    """
    import torch
    from diffusers import UniPCMultistepScheduler

    scheduler: Any = UniPCMultistepScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        solver_order=2,
        prediction_type="flow_prediction",
        predict_x0=True,
        solver_type="bh2",
        lower_order_final=True,
        final_sigmas_type="zero",
        use_flow_sigmas=True,
        flow_shift=shift,
    )
    scheduler.set_timesteps(steps, device=device)
    timesteps, sigmas = flow_sigmas(steps, shift)
    scheduler.sigmas = torch.from_numpy(sigmas)
    scheduler.timesteps = torch.from_numpy(timesteps).to(device)
    return scheduler
