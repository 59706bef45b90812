"""The work the UNet skips (issue 13) gives the numbers the full computation gives.

- the zero-audio rows' cross-attention is replaced by a constant: it must equal the attention run on
  all-zero tokens, bit for bit;
- the reference tokens' key/value projections are computed once per video and reused: appending them
  must equal projecting ``cat([frame tokens, reference tokens])``, and a cached call must equal the first;
- the unconditional rows are split by slicing (``unconditional_items``): equal to the older boolean form.
"""

from __future__ import annotations

import json

import pytest
import torch

from echomimic.models.attention import Attention
from echomimic.models.loading import load_echomimic
from echomimic.models.transformer import ReferenceFeatures, TransformerBlock
from tests.parity_cases import find_case, make_weights_folder


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from safetensors.torch import load_file

    case_dir = find_case(lambda spec: spec.get("case") == "unet_forward")
    assert case_dir is not None, "the unet_forward parity case is missing: set ECHOMIMIC_PARITY_CASES"
    spec = json.loads((case_dir / "case.json").read_text())
    models = load_echomimic(make_weights_folder(case_dir, spec, tmp_path_factory.mktemp("w")), "audio")
    return models, load_file(str(case_dir / "inputs.safetensors"))


def _random_attention(context_dim: int) -> Attention:
    generator = torch.Generator().manual_seed(3)
    attention = Attention(32, 4, context_dim=context_dim)
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return attention


@pytest.mark.parametrize("tokens", [1, 50])
def test_zero_context_output_is_the_full_attention_on_zero_tokens(case, tokens):
    """Catches a wrong constant for the unconditional rows' audio cross-attention (e.g. a to_v bias
    ignored, or the scale applied twice): it must equal running the attention on zero tokens exactly."""
    models, _ = case
    blocks = [m for m in models.denoising_unet.modules() if isinstance(m, TransformerBlock) and m.attn2 is not None]
    assert blocks
    for attention in [block.attn2 for block in blocks] + [_random_attention(384)]:
        queries = torch.randn(3, 16, attention.to_q.in_features)
        zeros = torch.zeros(3, tokens, attention.to_k.in_features)
        with torch.no_grad():
            full = attention(queries, context=zeros)
            constant = attention.zero_context_output(torch.float32, torch.device("cpu"))
        assert torch.equal(full, constant.expand_as(full))


def test_appended_reference_keys_equal_the_concatenated_context():
    """Catches reference keys/values appended in the wrong order, head layout or batch broadcast."""
    attention = _random_attention(32)
    frames, reference = torch.randn(5, 16, 32), torch.randn(1, 16, 32)
    with torch.no_grad():
        full = attention(frames, context=torch.cat([frames, reference.expand(5, -1, -1)], dim=1))
        appended = attention(frames, extra_key_value=attention.key_value(reference))
    torch.testing.assert_close(appended, full, rtol=0, atol=2e-5)


def _forward(models, inputs, features, **kwargs):
    noisy, audio, located = inputs["noisy_latents"], inputs["audio_cond"], None
    located = models.face_locator(inputs["face_mask"])
    return models.denoising_unet(
        torch.cat([noisy, noisy]),
        inputs["timestep"],
        audio_tokens=torch.cat([torch.zeros_like(audio), audio]),
        reference_features=features,
        conditioning=torch.cat([torch.zeros_like(located), located]),
        **kwargs,
    )


def test_cached_reference_projections_and_sliced_rows_give_the_same_prediction(case):
    """Catches a stale or wrongly keyed per-video reference key/value cache, and a difference between the
    sliced unconditional rows (with the zero-audio constant) and the older boolean-flag path."""
    models, inputs = case
    calls = []
    hooks = [
        m.attn1.to_k.register_forward_hook(lambda *_: calls.append(1))
        for m in models.denoising_unet.modules()
        if isinstance(m, TransformerBlock)
    ]
    blocks = len(hooks)
    try:
        with torch.inference_mode():
            features = models.reference_unet(inputs["ref_latents"], inputs["ref_timestep"])
            assert isinstance(features, ReferenceFeatures)
            plain = dict(features)  # no cache: projects the reference tokens at every call
            legacy = _forward(models, inputs, plain, unconditional_items=1)
            first_calls = len(calls)
            first = _forward(models, inputs, features, unconditional_items=1)
            assert len(features.projections) == blocks
            calls.clear()
            second = _forward(models, inputs, features, unconditional_items=1)
    finally:
        for hook in hooks:
            hook.remove()
    # Uncached: per block, to_k on the plain rows, on the reference rows and on the reference tokens;
    # cached: the reference tokens' projection is skipped.
    assert first_calls == 3 * blocks and len(calls) == 2 * blocks
    assert torch.equal(first, second)
    torch.testing.assert_close(first, legacy, rtol=0, atol=1e-5)


def test_compiled_blocks_keep_names_and_numbers(case, tmp_path):
    """Catches the compile option renaming parameters (old checkpoints/state dicts would stop loading)
    or changing the prediction; the eager backend checks the wiring without a C++ compiler."""
    from echomimic.models.compile import compile_unet_blocks

    _, inputs = case
    case_dir = find_case(lambda spec: spec.get("case") == "unet_forward")
    spec = json.loads((case_dir / "case.json").read_text())
    models = load_echomimic(make_weights_folder(case_dir, spec, tmp_path), "audio")
    keys = list(models.denoising_unet.state_dict())
    with torch.inference_mode():
        features = models.reference_unet.features_then_release(inputs["ref_latents"], inputs["ref_timestep"])
        expected = _forward(models, inputs, features, unconditional_items=1)
        assert compile_unet_blocks(models.denoising_unet, backend="eager") > 0
        actual = _forward(models, inputs, features, unconditional_items=1)
    assert list(models.denoising_unet.state_dict()) == keys
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_half_precision_forward_stays_in_the_model_dtype(tmp_path):
    """Catches float32 round trips inside a bf16 denoising forward (an upcast upsample, reference
    features or audio tokens left in float32): on a GPU they double memory traffic."""
    from safetensors.torch import load_file
    from torch.utils._python_dispatch import TorchDispatchMode

    class Float32Outputs(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.numel() > 64:
                self.ops.add(str(func))
            return out

    case_dir = find_case(lambda spec: spec.get("case") == "unet_forward")
    spec = json.loads((case_dir / "case.json").read_text())
    models = load_echomimic(make_weights_folder(case_dir, spec, tmp_path), "audio", dtype=torch.bfloat16)
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    with torch.inference_mode():
        features = models.reference_unet(inputs["ref_latents"], inputs["ref_timestep"])
        assert {value.dtype for value in features.values()} == {torch.bfloat16}
        located = models.face_locator(inputs["face_mask"].bfloat16())
        noisy, audio = inputs["noisy_latents"].bfloat16(), inputs["audio_cond"].bfloat16()
        noisy, audio = torch.cat([noisy, noisy]), torch.cat([torch.zeros_like(audio), audio])
        located = torch.cat([torch.zeros_like(located), located])
        recorder = Float32Outputs()
        with recorder:
            out = models.denoising_unet(
                noisy,
                inputs["timestep"],
                audio_tokens=audio,
                reference_features=features,
                conditioning=located,
                unconditional_items=1,
            )
    assert out.dtype == torch.bfloat16
    assert not recorder.ops, f"float32 tensors inside a bf16 forward: {sorted(recorder.ops)}"
