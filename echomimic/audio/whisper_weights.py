"""Load a Whisper-tiny audio encoder from the OpenAI or the Hugging Face weight layout.

Accepted:
- the official OpenAI checkpoint (``whisper_tiny.pt`` / ``tiny.pt``): ``{"dims", "model_state_dict"}``,
  read with ``torch.load(weights_only=True)``; the text decoder is ignored;
- a Hugging Face folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``), as written
  by ``WhisperModel`` / ``WhisperForConditionalGeneration`` (whisper-tiny is 39 M parameters, so it is
  never sharded);
- a single ``.safetensors`` file in either naming scheme.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..errors import WeightsError
from ..weights import load_pickle_weights, read_safetensors
from .whisper_encoder import EncoderDims, WhisperEncoder

# EchoMimic V1's UNet reads 384-wide tokens built from 5 hidden states (embedding + 4 blocks).
ECHOMIMIC_WIDTH = 384
ECHOMIMIC_LAYERS = 4

_HF_PREFIXES = ("model.encoder.", "encoder.", "")
_OPENAI_PREFIXES = ("encoder.", "")

# Hugging Face per-layer names -> OpenAI per-block names.
_HF_LAYER_RENAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
_HF_TOP_RENAMES = {
    "conv1": "conv1",
    "conv2": "conv2",
    "embed_positions": "positional_embedding",
    "layer_norm": "ln_post",
}
_HF_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")


def _strip_prefix(
    state: dict[str, torch.Tensor], prefixes: tuple[str, ...], marker: str
) -> dict[str, torch.Tensor] | None:
    """Encoder-only keys without their prefix, using the first prefix under which ``marker`` exists."""
    for prefix in prefixes:
        if any(key.startswith(prefix + marker) for key in state):
            return {
                key[len(prefix) :]: value
                for key, value in state.items()
                if key.startswith(prefix) and not key[len(prefix) :].startswith(("decoder.", "model."))
            }
    return None


def _hf_to_openai(encoder_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    for key, value in encoder_state.items():
        layer = _HF_LAYER_KEY.match(key)
        if layer:
            index, module, kind = layer.groups()
            if module not in _HF_LAYER_RENAMES:
                raise WeightsError(
                    f"Unexpected Hugging Face whisper encoder key {key!r}; is this a whisper checkpoint?"
                )
            renamed[f"blocks.{index}.{_HF_LAYER_RENAMES[module]}.{kind}"] = value
            continue
        module, _, kind = key.rpartition(".")
        if module in _HF_TOP_RENAMES:
            name = _HF_TOP_RENAMES[module]
            renamed[name if name == "positional_embedding" else f"{name}.{kind}"] = value
    return renamed


def _to_openai_encoder_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Encoder weights in OpenAI naming, whichever layout ``state`` uses."""
    openai = _strip_prefix(state, _OPENAI_PREFIXES, "blocks.0.")
    if openai is not None:
        return openai
    hf = _strip_prefix(state, _HF_PREFIXES, "layers.0.self_attn.")
    if hf is not None and any(key.startswith("embed_positions") for key in hf):
        return _hf_to_openai(hf)
    sample = ", ".join(sorted(state)[:4])
    raise WeightsError(
        f"{source} holds no Whisper audio encoder (first keys: {sample or 'none'}). "
        "Select the official whisper_tiny.pt or a Hugging Face whisper-tiny folder / model.safetensors."
    )


def _dims_from_state(state: dict[str, torch.Tensor], n_heads: int | None) -> EncoderDims:
    try:
        width, n_mels, _ = state["conv1.weight"].shape
        n_ctx = state["positional_embedding"].shape[0]
    except (KeyError, ValueError) as error:
        raise WeightsError(f"The Whisper encoder weights lack or misshape {error}; the file is incomplete.") from error
    n_layers = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    # Every released Whisper uses 64-wide heads; configs override this when present.
    return EncoderDims(
        n_mels=int(n_mels), n_ctx=int(n_ctx), width=int(width), n_heads=int(n_heads or width // 64), n_layers=n_layers
    )


def _config_heads(config_path: Path) -> int | None:
    """``encoder_attention_heads`` of a Hugging Face ``config.json`` (None when absent); an unreadable or
    non-JSON file is one :class:`WeightsError` line."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: bad JSON or not UTF-8 text
        raise WeightsError(f"{config_path} is not valid JSON ({error}); re-download the model folder.") from None
    return config.get("encoder_attention_heads") if isinstance(config, dict) else None


def _read_hf_folder(folder: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    heads = None
    config_path = folder / "config.json"
    if config_path.is_file():
        heads = _config_heads(config_path)
    single = folder / "model.safetensors"
    legacy = folder / "pytorch_model.bin"
    if single.is_file():
        return read_safetensors(single), heads
    if legacy.is_file():
        loaded = load_pickle_weights(legacy)
        if isinstance(loaded, dict):
            return loaded, heads
    raise WeightsError(
        f"{folder} has no model.safetensors or pytorch_model.bin. Point to the official whisper_tiny.pt "
        "or to a complete Hugging Face whisper-tiny folder."
    )


def read_whisper_encoder_state(path: str | Path) -> tuple[dict[str, torch.Tensor], EncoderDims]:
    """Encoder tensors (OpenAI naming, as stored) and dimensions from any supported file or folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"Whisper weights not found at {path}. Download whisper_tiny.pt (EchoMimic release) there.")
    heads: int | None = None
    if path.is_dir():
        state, heads = _read_hf_folder(path)
        source = f"The folder {path}"
    elif path.suffix == ".safetensors":
        state = read_safetensors(path)
        sibling_config = path.with_name("config.json")
        if sibling_config.is_file():
            heads = _config_heads(sibling_config)
        source = str(path.name)
    elif path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        loaded = load_pickle_weights(path)
        if isinstance(loaded, dict) and isinstance(loaded.get("model_state_dict"), dict):
            state = loaded["model_state_dict"]
            dims = loaded.get("dims")
            if isinstance(dims, dict):
                heads = dims.get("n_audio_head")
        elif isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
            state = loaded["state_dict"]
        elif isinstance(loaded, dict):
            state = loaded
        else:
            raise WeightsError(f"{path.name} does not hold a state dict; select the official whisper_tiny.pt.")
        source = str(path.name)
    else:
        raise WeightsError(
            f"Unknown Whisper weight format {path.suffix or '(no extension)'} for {path.name}. "
            "Use the official whisper_tiny.pt, a .safetensors file or a Hugging Face whisper-tiny folder."
        )
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    encoder_state = _to_openai_encoder_state(tensors, source)
    return encoder_state, _dims_from_state(encoder_state, heads)


def load_whisper_encoder(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> WhisperEncoder:
    """Build the Whisper-tiny audio encoder from OpenAI or Hugging Face weights.

    Args:
        path: ``whisper_tiny.pt`` (OpenAI format), a Hugging Face whisper folder, or a
            ``.safetensors`` file (either naming).
        device, dtype: where the encoder runs. fp16 checkpoints are upcast exactly to fp32.

    Returns:
        An eval-mode :class:`WhisperEncoder` whose forward maps [B, 80, 3000] log-mel to
        [B, 1500, 5, 384] hidden states.
    """
    state, dims = read_whisper_encoder_state(path)
    if dims.width != ECHOMIMIC_WIDTH or dims.n_layers != ECHOMIMIC_LAYERS:
        raise WeightsError(
            f"{Path(path).name} is a Whisper encoder {dims.width} wide with {dims.n_layers} layers; "
            f"EchoMimic needs whisper-tiny ({ECHOMIMIC_WIDTH} wide, {ECHOMIMIC_LAYERS} layers). "
            "Select whisper_tiny.pt from the EchoMimic release."
        )
    if dims.width % dims.n_heads:
        raise WeightsError(f"Whisper config has {dims.n_heads} heads, which do not divide width {dims.width}.")
    encoder = WhisperEncoder(dims)
    if "ln_post.weight" not in state:  # encoder-only exports may omit the unused final norm
        state = {
            **state,
            "ln_post.weight": encoder.ln_post.weight.detach(),
            "ln_post.bias": encoder.ln_post.bias.detach(),
        }
    try:
        missing, unexpected = encoder.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise WeightsError(f"{Path(path).name} does not fit the Whisper-tiny encoder: {error}") from error
    if missing or unexpected:
        raise WeightsError(
            f"{Path(path).name} does not fit the Whisper encoder (missing {missing[:4]}, unexpected {unexpected[:4]}). "
            "The file is incomplete or not a Whisper checkpoint."
        )
    return encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
