"""The V3 flash transformer against the official fixtures of ../shared/parity_v3.

Every case folder of kind "forward" is discovered: both calls (audio and zeroed audio) and every captured
intermediate in expected.safetensors are compared within the case's per-tensor atol. The audio-window split is
checked against the audio cases' ai2v_first / ai2v_latter; the full-size module against the release manifest on
the meta device; bad files give one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from echomimic.errors import WeightsError
from echomimic.v3 import transformer as flash
from echomimic.v3.audio_windows import split_for_latent_frames
from tests.parity_cases import PARITY_V3_ROOT, SHARED_ROOT, discover_cases

MANIFEST = SHARED_ROOT / "parity" / "manifests" / "echomimic_v3_flash.json"
WEIGHTS = "models/transformer/diffusion_pytorch_model.safetensors"
CONFIG = "models/Wan2.1-Fun-V1.1-1.3B-InP/config.json"


def _cases(kind: str) -> list[Path]:
    return [c for c in discover_cases(PARITY_V3_ROOT) if json.loads((c / "case.json").read_text())["kind"] == kind]


FORWARD_CASES = _cases("forward")
AUDIO_CASES = _cases("audio")


def test_cases_are_discovered() -> None:
    """Catches a moved or empty fixture folder: the parity tests below would otherwise run on nothing."""
    assert FORWARD_CASES, f"no case of kind 'forward' under {PARITY_V3_ROOT}"
    assert AUDIO_CASES, f"no case of kind 'audio' under {PARITY_V3_ROOT}"


def _load(case_dir: Path) -> flash.FlashTransformer:
    return flash.load_flash_transformer(case_dir / WEIGHTS, case_dir / CONFIG, dtype=torch.float32)


def _capture(model: flash.FlashTransformer) -> dict[str, torch.Tensor]:
    """Forward hooks that record the intermediates under the fixture's names."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda module, args, output: captured.__setitem__(name, output)

    for name in ("patch_embedding", "text_embedding", "img_emb", "audio_injection", "head"):
        getattr(model, name).register_forward_hook(keep(name))
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda module, args, i=i: captured.__setitem__(f"block{i}.in", args[0]))
        block.register_forward_hook(keep(f"block{i}.out"))
        for part in ("self_attn", "cross_attn", "ffn"):
            getattr(block, part).register_forward_hook(keep(f"block{i}.{part}"))
    return captured


@pytest.mark.parametrize("case_dir", FORWARD_CASES, ids=lambda p: p.name)
def test_forward_parity(case_dir: Path) -> None:
    """Catches any departure from the official forward: RoPE split or pairing, q/k RMSNorm width, the 512-row
    text padding, the frame-local audio attention, modulation order, head or unpatchify layout. Every stored
    intermediate is compared, so a failure names the first wrong stage."""
    case = json.loads((case_dir / "case.json").read_text())
    atol = case["suggested_tolerance"]["per_tensor_atol"]
    inputs = load_file(case_dir / "inputs.safetensors")
    expected = load_file(case_dir / "expected.safetensors")
    model = _load(case_dir)
    captured = _capture(model)
    checked = set()
    for branch, audio in (("cond", inputs["audio_embeds"]), ("uncond", torch.zeros_like(inputs["audio_embeds"]))):
        captured.clear()
        with torch.no_grad():
            captured["out"] = model(
                inputs["x"], inputs["t"], inputs["prompt_embeds"], audio, inputs["y"], inputs["clip_fea"]
            )
            e, e0 = model.embed_time(inputs["t"])
            captured["time_embedding"], captured["time_projection"] = e, e0.flatten(1)
            captured["audio_first"], captured["audio_latter"] = split_for_latent_frames(audio)
        for key, want in expected.items():
            name = "out" if key == f"out_{branch}" else key.removeprefix(f"{branch}.")
            if name == key:
                continue
            got = captured[name].reshape(want.shape)
            diff = (got - want).abs().max().item()
            limit = atol[f"expected.safetensors:{key}"]
            assert diff <= limit, f"{case_dir.name}/{key}: max abs diff {diff:.3g} > {limit}"
            checked.add(key)
    assert checked == set(expected), set(expected) - checked
    # The pipeline's seq_len is exactly the token count (no padding).
    grid = inputs["x"].shape[2] * (inputs["x"].shape[3] // 2) * (inputs["x"].shape[4] // 2)
    assert int(inputs["seq_len"]) == grid


@pytest.mark.parametrize("case_dir", AUDIO_CASES, ids=lambda p: p.name)
def test_audio_window_split_matches_official(case_dir: Path) -> None:
    """Catches a wrong window gather per latent frame (which windows of which of its 4 frames, and in which
    order) against the official get_ai2v_audio outputs of every audio clip."""
    case = json.loads((case_dir / "case.json").read_text())
    for clip in case["clips"]:
        name = clip if isinstance(clip, str) else clip["name"]
        folder = case_dir / "expected" / name
        first, latter = split_for_latent_frames(torch.from_numpy(np.load(folder / "audio_embeds.npy")))
        assert torch.equal(first, torch.from_numpy(np.load(folder / "ai2v_first.npy")))
        assert torch.equal(latter, torch.from_numpy(np.load(folder / "ai2v_latter.npy")))


def test_rope_pairs_per_axis() -> None:
    """Catches a RoPE split other than the official (frame takes the remainder): 22/21/21 at head width 128,
    6/5/5 at 32, 8/6/6 at 40."""
    assert flash.rope_pairs(128) == (22, 21, 21)
    assert flash.rope_pairs(32) == (6, 5, 5)
    assert flash.rope_pairs(40) == (8, 6, 6)


def test_full_size_matches_manifest() -> None:
    """Catches a module tree that would not load the real release file: every key and shape of the full-size
    model, built on the meta device from the real config, equals the manifest."""
    entry = json.loads(MANIFEST.read_text())["files"]["transformer/diffusion_pytorch_model.safetensors"]
    shapes = {key: tuple(shape) for key, shape in entry["keys"].items()}
    config = flash.flash_config(entry["real_config"], shapes)
    assert (config.image_dim, config.audio_features, config.audio_intermediate, config.audio_tokens) == (
        1280,
        12 * 768,
        512,
        32,
    )
    with torch.device("meta"):
        model = flash.FlashTransformer(config)
    assert {key: tuple(t.shape) for key, t in model.state_dict().items()} == shapes


def test_loads_in_the_files_dtype_and_refuses_missing_keys(tmp_path: Path) -> None:
    """Catches a loader that silently casts (the release is bf16 or fp16; None keeps it) or that loads a file
    with keys missing (strict, one line naming the file and the keys)."""
    case_dir = FORWARD_CASES[0]
    model = flash.load_flash_transformer(case_dir / WEIGHTS, case_dir / CONFIG)
    assert model.dtype == torch.bfloat16
    state = load_file(case_dir / WEIGHTS)
    del state["blocks.0.cross_attn.k_audio.weight"]
    broken = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(state, broken)
    with pytest.raises(WeightsError) as error:
        flash.load_flash_transformer(broken, case_dir / CONFIG)
    message = str(error.value)
    assert "\n" not in message and str(broken) in message and "k_audio" in message


def test_wrong_config_is_one_line(tmp_path: Path) -> None:
    """Catches a raw JSON or KeyError for a missing, broken or text-to-video config.json."""
    case_dir = FORWARD_CASES[0]
    for text in (None, "{not json", json.dumps({"model_type": "t2v", "dim": 64})):
        config = tmp_path / "config.json"
        config.unlink(missing_ok=True)
        if text is not None:
            config.write_text(text)
        with pytest.raises(WeightsError) as error:
            flash.load_flash_transformer(case_dir / WEIGHTS, config)
        assert "\n" not in str(error.value) and "config.json" in str(error.value)
