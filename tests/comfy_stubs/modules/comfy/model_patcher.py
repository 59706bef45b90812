"""Stand-in for `comfy.model_patcher.ModelPatcher`: holds a module and moves it between devices."""

from __future__ import annotations

import torch


class ModelPatcher:
    def __init__(
        self, model: torch.nn.Module, load_device, offload_device, size: int = 0, weight_inplace_update: bool = False
    ) -> None:
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size
        if getattr(model, "device", None) is None:
            model.device = offload_device

    def model_size(self) -> int:
        return sum(t.nelement() * t.element_size() for t in self.model.state_dict().values())

    def model_dtype(self):
        if hasattr(self.model, "get_dtype"):
            return self.model.get_dtype()
        return None

    def patch_model(self, device_to=None, **_kwargs) -> torch.nn.Module:
        if device_to is not None:
            self.model.to(device_to)
            self.model.device = device_to
        return self.model

    def unpatch_model(self, device_to=None, **_kwargs) -> None:
        if device_to is not None:
            self.model.to(device_to)
            self.model.device = device_to
