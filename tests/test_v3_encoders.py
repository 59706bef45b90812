"""V3 encoders (Wan VAE, umT5, CLIP visual tower) against the official fixtures of ../shared/parity_v3.

Every case folder of kind "vae" or "text_clip" is discovered; every expected file is compared within its
case.json suggested_tolerance. Plus: full-size meta-device builds equal the release manifest after the key maps,
the tokenizer / cache glue of encode_prompt, and bad files fail with one line naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from echomimic.errors import WeightsError
from echomimic.v3 import image_encoder, text_encoder, vae
from tests.parity_cases import PARITY_V3_ROOT, SHARED_ROOT, discover_cases

MODELS = "models/Wan2.1-Fun-V1.1-1.3B-InP"
VAE_FILE = "Wan2.1_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
MANIFEST = SHARED_ROOT / "parity" / "manifests" / "echomimic_v3_flash.json"


def _cases(kind: str) -> list[Path]:
    return [c for c in discover_cases(PARITY_V3_ROOT) if json.loads((c / "case.json").read_text())["kind"] == kind]


VAE_CASES = _cases("vae")
TEXT_CLIP_CASES = _cases("text_clip")


def test_cases_are_discovered() -> None:
    """Catches a moved or empty fixture folder: the parity tests below would otherwise run on nothing."""
    assert VAE_CASES, f"no case of kind 'vae' under {PARITY_V3_ROOT}"
    assert TEXT_CLIP_CASES, f"no case of kind 'text_clip' under {PARITY_V3_ROOT}"


class Checker:
    """Compares arrays with expected/<name> within the case's per-file atol and records what was checked."""

    def __init__(self, case_dir: Path) -> None:
        self.case_dir = case_dir
        self.case = json.loads((case_dir / "case.json").read_text())
        self.atol = self.case["suggested_tolerance"]["per_file_atol"]
        self.checked: set[str] = set()

    def __call__(self, name: str, actual: torch.Tensor | np.ndarray) -> None:
        expected = np.load(self.case_dir / "expected" / name)
        actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
        actual = actual.reshape(expected.shape) if actual.size == expected.size else actual
        assert actual.shape == expected.shape, f"{name}: shape {actual.shape} vs {expected.shape}"
        diff = float(np.abs(actual.astype(np.float64) - expected).max())
        assert diff <= self.atol[name], f"{self.case_dir.name}/{name}: max abs diff {diff:.3g} > {self.atol[name]}"
        self.checked.add(name)

    def assert_all_checked(self) -> None:
        assert self.checked == set(self.case["expected"]), set(self.case["expected"]) - self.checked


@pytest.mark.parametrize("case_dir", VAE_CASES, ids=lambda p: p.name)
def test_vae_parity(case_dir: Path) -> None:
    """Catches a wrong VAE config or key map, a wrong latent normalisation (0.97 off) or a decode that is not
    causal / one latent frame at a time; decode_chunks must equal decode() exactly."""
    check = Checker(case_dir)
    model = vae.load_wan_vae(case_dir / MODELS / VAE_FILE, dtype=torch.float32)
    video = torch.from_numpy(np.load(case_dir / "inputs" / "video.npy"))
    clip_uint8 = np.load(case_dir / "inputs" / "clip_uint8.npy")
    assert np.array_equal(video.numpy(), (torch.from_numpy(clip_uint8).float() / 255 * 2 - 1).permute(3, 0, 1, 2)[None])
    mu, logvar = model.encode_raw(video)
    check("mu_raw.npy", mu)
    check("logvar.npy", logvar)
    latents = model.encode(video)
    check("latents.npy", latents)
    check("latents_frame0_only.npy", model.encode(video[:, :, :1]))
    decoded = model.decode(latents)
    check("decoded.npy", decoded)
    check("video.npy", (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 3, 0))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    check("noise_latents.npy", noise)
    noise_decoded = model.decode(noise)
    check("noise_decoded.npy", noise_decoded)
    for per_chunk in (1, 2):
        pieces = list(model.decode_chunks(noise, latent_frames_per_chunk=per_chunk))
        assert len(pieces) == -(-noise.shape[2] // per_chunk)
        assert torch.equal(torch.cat(pieces, 2), noise_decoded), per_chunk
    check.assert_all_checked()


def _reference_input(case_dir: Path, item: dict, name: str) -> torch.Tensor:
    """The pipeline's reference tensor: PIL LANCZOS to the case's W x H, to [-1, 1], (3, H, W)."""
    from PIL import Image

    image = Image.open(case_dir / "inputs" / name).convert("RGB").resize((item["width"], item["height"]), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1) * 2 - 1


@pytest.mark.parametrize("case_dir", TEXT_CLIP_CASES, ids=lambda p: p.name)
def test_text_clip_parity(case_dir: Path) -> None:
    """Catches a wrong umT5 key map / config / mask (3.4 off without it), a wrong trim, and a wrong CLIP
    preprocessing (bilinear 0.65, no Normalize 4.2) or output layer (all blocks 0.64)."""
    check = Checker(case_dir)
    tiny = json.loads((case_dir / "config" / "tiny_dims.json").read_text())
    t5 = text_encoder.load_umt5_encoder(case_dir / MODELS / T5_FILE, dtype=torch.float32)
    token_ids = json.loads((case_dir / "inputs" / "prompt_token_ids.json").read_text())
    for name, ids in token_ids.items():
        ids = ids["ids"] if isinstance(ids, dict) else ids
        check(f"t5/{name}_full512.npy", t5.encode_ids_full(ids))
        trimmed = t5.encode_ids(ids)
        assert trimmed.shape[:2] == (1, len(ids))
        check(f"t5/{name}.npy", trimmed[0])
    clip = image_encoder.load_clip_vision(
        case_dir / MODELS / CLIP_FILE, dtype=torch.float32, num_heads=tiny["clip"]["vision_heads"]
    )
    for key, item in check.case["items"].items():
        if not key.startswith("image:"):
            continue
        name = key.removeprefix("image:")
        stem = Path(name).stem
        reference = _reference_input(case_dir, item, name)
        check(f"clip/{stem}_input.npy", reference)
        reference = torch.from_numpy(np.load(case_dir / "expected" / "clip" / f"{stem}_input.npy"))[None]
        check(f"clip/{stem}_pixels224.npy", clip.preprocess(reference))
        states = clip.hidden_states(reference)
        check(f"clip/{stem}_pre_norm.npy", states[0])
        for i, state in enumerate(states[1:-1]):
            name_i = f"clip/{stem}_block{i}.npy"
            if name_i in check.atol:
                check(name_i, state)
        out = clip.encode(reference)
        assert out.shape == (1, 257, tiny["clip"]["vision_dim"])
        check(f"clip/{stem}_out.npy", out)
    check.assert_all_checked()


# ---- full-size builds against the manifest ----------------------------------------------------------------


def _manifest_file(name: str) -> dict:
    return json.loads(MANIFEST.read_text())["files"][name]


def _meta_state_dict(keys: dict) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in keys.items()}


def _shapes(state_dict) -> dict[str, tuple]:
    return {key: tuple(t.shape) for key, t in state_dict.items()}


def test_full_size_vae_matches_manifest() -> None:
    """Catches a config derived wrongly at full size (base width 96) or keys the converter leaves unmapped."""
    entry = _manifest_file(VAE_FILE)
    original = _meta_state_dict(entry["keys"])
    config = vae.vae_config_from_state_dict(original)
    assert config["base_dim"] == entry["real_config"]["dim"] and config["z_dim"] == entry["real_config"]["z_dim"]
    with torch.device("meta"):
        model = vae.build_wan_vae(config)
    assert _shapes(vae.convert_vae_state_dict(original)) == _shapes(model.state_dict())


def test_full_size_umt5_matches_manifest() -> None:
    """Catches a wrong T5 key map or a config (heads, widths, layers) misread from the full-size shapes."""
    entry = _manifest_file(T5_FILE)
    original = _meta_state_dict(entry["keys"])
    config = text_encoder.t5_config_from_state_dict(original)
    real = entry["real_config"]
    assert (config.num_heads, config.num_layers, config.d_ff) == (
        real["num_heads"],
        real["num_layers"],
        real["dim_ffn"],
    )
    with torch.device("meta"):
        model = text_encoder.build_umt5_encoder(config)
    assert _shapes(text_encoder.convert_t5_state_dict(original)) == _shapes(model.state_dict())


def test_full_size_clip_matches_manifest() -> None:
    """Catches a wrong CLIP key map (fused qkv), a wrong head count at full size (16) or ignored keys that are
    not exactly textual.*, log_scale and visual.head."""
    entry = _manifest_file(CLIP_FILE)
    original = _meta_state_dict(entry["keys"])
    config = image_encoder.clip_vision_config_from_state_dict(original)
    real = entry["real_config"]
    assert (config.num_attention_heads, config.num_hidden_layers, config.hidden_size) == (
        real["vision_heads"],
        real["vision_layers"],
        real["vision_dim"],
    )
    with torch.device("meta"):
        model = image_encoder.build_clip_vision(config)
    converted = image_encoder.convert_clip_state_dict(original)
    own = {k.removeprefix("vision_model."): v for k, v in _shapes(model.state_dict()).items()}
    assert _shapes(converted) == own
    ignored = {k for k in original if image_encoder.is_ignored_clip_key(k)}
    assert ignored == {k for k in original if not k.startswith("visual.")} | {"visual.head"}


# ---- encode_prompt: tokenizer glue and cache ----------------------------------------------------------------


def _tiny_tokenizer_folder(folder: Path) -> Path:
    """A tiny umT5-like tokenizer (Unigram, pad 0, EOS 1 appended) saved as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in "a b c talk".split()]
    raw = Tokenizer(models.Unigram(vocab, unk_id=2))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)
    return folder


def test_encode_prompt_tokenizes_caches_and_keys_on_file(tmp_path: Path, monkeypatch) -> None:
    """Catches a tokenisation without the EOS, a cache that is not reused, or a cache not keyed on the
    encoder file (a replaced file must be re-encoded)."""
    case_dir = TEXT_CLIP_CASES[0]
    weights = tmp_path / T5_FILE
    weights.write_bytes((case_dir / MODELS / T5_FILE).read_bytes())
    tokenizer = _tiny_tokenizer_folder(tmp_path / "umt5-xxl")
    assert text_encoder.tokenize_prompt(text_encoder.load_tokenizer(tokenizer), "a talk") == [3, 6, 1]
    cache = tmp_path / "cache"
    first = text_encoder.encode_prompt("a talk", tokenizer, weights, dtype=torch.float32, cache_dir=cache)
    direct = text_encoder.load_umt5_encoder(weights, dtype=torch.float32).encode_ids([3, 6, 1])
    assert torch.equal(first, direct)
    assert len(list(cache.glob("*.safetensors"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder was loaded although the embedding is cached")

    monkeypatch.setattr(text_encoder, "load_umt5_encoder", refuse)
    assert torch.equal(
        text_encoder.encode_prompt("a talk", tokenizer, weights, dtype=torch.float32, cache_dir=cache), first
    )
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="encoder was loaded"):
        text_encoder.encode_prompt("a talk", tokenizer, weights, dtype=torch.float32, cache_dir=cache)


# ---- bad files ----------------------------------------------------------------------------------------------


def _loaders():
    return {
        VAE_FILE: vae.load_wan_vae,
        T5_FILE: text_encoder.load_umt5_encoder,
        CLIP_FILE: image_encoder.load_clip_vision,
    }


@pytest.mark.parametrize("file_name", [VAE_FILE, T5_FILE, CLIP_FILE])
def test_truncated_file_is_one_line_naming_it(tmp_path: Path, file_name: str) -> None:
    """Catches a traceback or an unnamed file for a partly downloaded weight file."""
    case_dir = (VAE_CASES if file_name == VAE_FILE else TEXT_CLIP_CASES)[0]
    data = (case_dir / MODELS / file_name).read_bytes()
    bad = tmp_path / file_name
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as error:
        _loaders()[file_name](bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("file_name", "other"), [(VAE_FILE, T5_FILE), (T5_FILE, CLIP_FILE), (CLIP_FILE, VAE_FILE)])
def test_wrong_kind_of_file_is_one_line_naming_it(tmp_path: Path, file_name: str, other: str) -> None:
    """Catches a loader that accepts (or crashes on) another model's weight file."""
    source = (VAE_CASES if other == VAE_FILE else TEXT_CLIP_CASES)[0] / MODELS / other
    bad = tmp_path / file_name
    bad.write_bytes(source.read_bytes())
    with pytest.raises(WeightsError) as error:
        _loaders()[file_name](bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
