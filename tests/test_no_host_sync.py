"""No host-device synchronisation inside a denoising-UNet forward (issue 13).

On a GPU, every op that needs a device value on the host (``bool(t.any())``, boolean-mask indexing,
``.item()``, ``nonzero``) stalls the CPU until the queue drains; a few dozen per UNet call keep the GPU
idle between kernels. These tests run a full forward of the tiny ``unet_forward`` parity case under a
dispatch mode that fails on any such op, so one can never come back unnoticed. They run on the CPU
(where a sync is free but the op is the same); with CUDA present they also run on the GPU under
``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from echomimic.models.loading import load_echomimic
from tests.parity_cases import find_case, make_weights_folder

# Ops whose result the host must read (or whose output size depends on device values).
SYNCING_OPS = {"nonzero", "is_nonzero", "_local_scalar_dense", "item", "masked_select", "equal"}
INDEXING_OPS = {"index", "index_put", "index_put_", "_index_put_impl_"}


class HostSyncError(AssertionError):
    pass


class FailOnHostSync(TorchDispatchMode):
    """Raises :class:`HostSyncError` on any op that forces a device-to-host synchronisation."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            raise HostSyncError(f"host sync: aten::{name}")
        if name in INDEXING_OPS:
            indices = args[1] if len(args) > 1 else (kwargs or {}).get("indices", ())
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ()):
                raise HostSyncError(f"host sync: boolean-mask aten::{name}")
        return func(*args, **(kwargs or {}))


def _unet_case():
    case_dir = find_case(lambda case: case.get("case") == "unet_forward")
    assert case_dir is not None, "the unet_forward parity case is missing: set ECHOMIMIC_PARITY_CASES"
    return case_dir, json.loads((case_dir / "case.json").read_text())


@pytest.fixture(scope="module")
def unet_inputs(tmp_path_factory):
    from safetensors.torch import load_file

    case_dir, case = _unet_case()
    models = load_echomimic(make_weights_folder(case_dir, case, tmp_path_factory.mktemp("w")), "audio")
    return models, load_file(str(case_dir / "inputs.safetensors"))


def _forwards(models, inputs, device: torch.device, use_cfg: bool, under) -> None:
    """Reference UNet once (outside), then two denoising forwards (the second hits the per-video
    reference key/value cache), each inside the context manager ``under()``."""
    reference_unet = models.reference_unet.to(device)
    denoising_unet = models.denoising_unet.to(device)
    tensors = {name: value.to(device) for name, value in inputs.items()}
    with torch.inference_mode():
        features = reference_unet(tensors["ref_latents"], tensors["ref_timestep"])
        located = models.face_locator.to(device)(tensors["face_mask"])
        noisy, audio = tensors["noisy_latents"], tensors["audio_cond"]
        if use_cfg:
            noisy, audio = torch.cat([noisy, noisy]), torch.cat([torch.zeros_like(audio), audio])
            located = torch.cat([torch.zeros_like(located), located])
        for _ in range(2):
            with under():
                out = denoising_unet(
                    noisy,
                    tensors["timestep"],
                    audio_tokens=audio,
                    reference_features=features,
                    conditioning=located,
                    unconditional_items=1 if use_cfg else 0,
                )
        # Landmark variants without audio: every row's audio is zero.
        with under():
            denoising_unet(
                noisy,
                tensors["timestep"],
                audio_tokens=None,
                reference_features=features,
                conditioning=located,
                unconditional_items=1 if use_cfg else 0,
            )
    assert out.shape == noisy.shape


@pytest.mark.parametrize("use_cfg", [True, False], ids=["cfg", "no_cfg"])
def test_denoising_forward_has_no_host_sync(unet_inputs, use_cfg):
    """Catches a host sync (mask indexing, bool(tensor), .item(), nonzero) creeping back into the
    denoising UNet's forward, with and without classifier-free guidance."""
    models, inputs = unet_inputs
    _forwards(models, inputs, torch.device("cpu"), use_cfg, FailOnHostSync)


def test_detector_catches_syncs():
    """Catches a detector that no longer sees syncs (the test above would then pass vacuously)."""
    values = torch.tensor([1.0, -1.0, 2.0])
    for sync in (
        lambda: values[values > 0],
        lambda: bool((values > 0).any()),
        lambda: values.sum().item(),
        lambda: values.nonzero(),
        lambda: values.masked_select(values > 0),
    ):
        with pytest.raises(HostSyncError), FailOnHostSync():
            sync()
    with FailOnHostSync():
        values[1:]  # slicing is fine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA sync debug mode needs a GPU")
@pytest.mark.parametrize("use_cfg", [True, False], ids=["cfg", "no_cfg"])
def test_denoising_forward_has_no_cuda_sync(unet_inputs, use_cfg):
    """Catches any CUDA synchronisation in the forward on a real GPU (``set_sync_debug_mode('error')``)."""
    import contextlib

    @contextlib.contextmanager
    def cuda_sync_errors():
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            with FailOnHostSync():
                yield
        finally:
            torch.cuda.set_sync_debug_mode("default")

    models, inputs = unet_inputs
    _forwards(models, inputs, torch.device("cuda"), use_cfg, cuda_sync_errors)
