"""The umT5-xxl text encoder: transformers' UMT5EncoderModel loaded from Wan's ``models_t5_umt5-xxl-enc-bf16.pth``.

Key map (official Wan T5 names -> Hugging Face UMT5 names), one rule per tensor kind; ``token_embedding`` feeds
both of HF's tied ``shared`` and ``encoder.embed_tokens``::

    token_embedding.weight               -> shared.weight, encoder.embed_tokens.weight
    blocks.{i}.norm1.weight              -> encoder.block.{i}.layer.0.layer_norm.weight
    blocks.{i}.attn.{q,k,v,o}.weight     -> encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight
    blocks.{i}.pos_embedding.embedding.weight -> encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight
    blocks.{i}.norm2.weight              -> encoder.block.{i}.layer.1.layer_norm.weight
    blocks.{i}.ffn.gate.0.weight         -> encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight  (GELU-tanh branch)
    blocks.{i}.ffn.fc1.weight            -> encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight  (linear branch)
    blocks.{i}.ffn.fc2.weight            -> encoder.block.{i}.layer.1.DenseReluDense.wo.weight
    norm.weight                          -> encoder.final_layer_norm.weight

Both implementations: RMS layer norm (eps 1e-6), attention without 1/sqrt(d) scaling, a relative position bias
in every layer (32 bidirectional buckets, max distance 128), gated FFN ``wo(wi_1(x) * gelu_tanh(wi_0(x)))``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, WeightsError

if TYPE_CHECKING:
    import torch

# Official pipeline constants (WanFunInpaintAudioPipeline._get_t5_prompt_embeds, config.yaml).
TEXT_LENGTH = 512
# umT5 architecture constants that the weights' shapes do not show.
NUM_BUCKETS = 32
MAX_DISTANCE = 128
LAYER_NORM_EPS = 1e-6
FEED_FORWARD = "gated-gelu"  # transformers: gated, gelu_new (= GELU tanh approximation)
PAD_ID = 0
_HINT = "Use models_t5_umt5-xxl-enc-bf16.pth of the Wan2.1-Fun release."

_BLOCK_RULES = (
    (r"norm1\.weight", "layer.0.layer_norm.weight"),
    (r"attn\.([qkvo])\.weight", r"layer.0.SelfAttention.\1.weight"),
    (r"pos_embedding\.embedding\.weight", "layer.0.SelfAttention.relative_attention_bias.weight"),
    (r"norm2\.weight", "layer.1.layer_norm.weight"),
    (r"ffn\.gate\.0\.weight", "layer.1.DenseReluDense.wi_0.weight"),
    (r"ffn\.fc1\.weight", "layer.1.DenseReluDense.wi_1.weight"),
    (r"ffn\.fc2\.weight", "layer.1.DenseReluDense.wo.weight"),
)


def map_t5_key(key: str) -> list[str]:
    """The HF UMT5EncoderModel name(s) of one official key; [] for a key that has none."""
    if key == "token_embedding.weight":
        return ["shared.weight", "encoder.embed_tokens.weight"]
    if key == "norm.weight":
        return ["encoder.final_layer_norm.weight"]
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if match:
        for pattern, replacement in _BLOCK_RULES:
            if re.fullmatch(pattern, match.group(2)):
                return [f"encoder.block.{match.group(1)}." + re.sub(pattern, replacement, match.group(2))]
    return []


def convert_t5_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Wan T5 state dict -> UMT5EncoderModel state dict; unknown keys are kept (strict check names them)."""
    converted = {}
    for key, tensor in state_dict.items():
        for name in map_t5_key(key) or [key]:
            converted[name] = tensor
    return converted


def t5_config_from_state_dict(state_dict: dict[str, torch.Tensor]):
    """UMT5Config from the official state dict's shapes plus the documented umT5 constants."""
    from transformers import UMT5Config

    try:
        vocab, dim = state_dict["token_embedding.weight"].shape
        dim_attn = state_dict["blocks.0.attn.q.weight"].shape[0]
        dim_ffn = state_dict["blocks.0.ffn.fc1.weight"].shape[0]
        num_buckets, num_heads = state_dict["blocks.0.pos_embedding.embedding.weight"].shape
    except KeyError as error:
        raise WeightsError(f"not a umT5 encoder state dict (no {error.args[0]})") from None
    num_layers = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
    if num_buckets != NUM_BUCKETS:
        raise WeightsError(f"umT5 with {num_buckets} position buckets, expected {NUM_BUCKETS}")
    return UMT5Config(
        vocab_size=int(vocab),
        d_model=int(dim),
        d_kv=int(dim_attn) // int(num_heads),
        d_ff=int(dim_ffn),
        num_layers=num_layers,
        num_heads=int(num_heads),
        relative_attention_num_buckets=NUM_BUCKETS,
        relative_attention_max_distance=MAX_DISTANCE,
        feed_forward_proj=FEED_FORWARD,
        dropout_rate=0.0,
        layer_norm_epsilon=LAYER_NORM_EPS,
        pad_token_id=PAD_ID,
        is_encoder_decoder=False,
        use_cache=False,
    )


def build_umt5_encoder(config):
    """A UMT5EncoderModel of ``config`` (build under ``torch.device('meta')`` to size it)."""
    from transformers import UMT5EncoderModel

    return UMT5EncoderModel(config)


class UMT5TextEncoder:
    """Token ids -> prompt embeddings as the official pipeline computes them."""

    def __init__(self, model) -> None:
        self.model = model.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_ids_full(self, ids: list[int]) -> torch.Tensor:
        """Ids (with the EOS) -> (1, 512, dim): padded with 0 to 512, attention mask 1 on the real tokens."""
        import torch

        if not 0 < len(ids) <= TEXT_LENGTH:
            raise InputError(f"A prompt must have 1 to {TEXT_LENGTH} tokens, got {len(ids)}.")
        padded = torch.zeros(1, TEXT_LENGTH, dtype=torch.long)
        padded[0, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask = torch.zeros(1, TEXT_LENGTH, dtype=torch.long)
        mask[0, : len(ids)] = 1
        with torch.no_grad():
            return self.model(input_ids=padded.to(self.device), attention_mask=mask.to(self.device))[0]

    def encode_ids(self, ids: list[int]) -> torch.Tensor:
        """Ids -> (1, n, dim): the official prompt embedding row, trimmed to the n real tokens."""
        return self.encode_ids_full(ids)[:, : len(ids)]


def load_umt5_encoder(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> UMT5TextEncoder:
    """umT5 encoder from the official Wan ``.pth`` (or a .safetensors of the same keys), strict; ``dtype`` None
    keeps the file's dtype (the release is bfloat16)."""
    import torch

    from ..weights import check_state_dict, read_state_dict

    path = Path(path)
    original = read_state_dict(path)
    try:
        config = t5_config_from_state_dict(original)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}. {_HINT}") from None
    file_dtype = original["token_embedding.weight"].dtype
    with torch.device("meta"):
        model = build_umt5_encoder(config)
    converted = convert_t5_state_dict(original)
    check_state_dict(model, converted, str(path), hint=_HINT)
    model.load_state_dict(converted, strict=True, assign=True)
    model.tie_weights()
    return UMT5TextEncoder(model.to(device=device, dtype=dtype or file_dtype))


def tokenize_prompt(tokenizer, prompt: str) -> list[int]:
    """The official tokenisation: add_special_tokens (EOS), truncation to 512, no cleaning of the text."""
    ids = tokenizer(prompt, max_length=TEXT_LENGTH, truncation=True, add_special_tokens=True)["input_ids"]
    return [int(i) for i in ids]


def encoder_file_identity(path: str | Path) -> str:
    """A cheap identity of a weight file: resolved path, size and mtime (changes when the file is replaced)."""
    path = Path(path).resolve()
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def prompt_cache_path(cache_dir: Path, prompt: str, encoder_path: str | Path, dtype_name: str) -> Path:
    """Where the embedding of ``prompt`` by this encoder file (in this dtype) is cached."""
    key = json.dumps([prompt, encoder_file_identity(encoder_path), dtype_name])
    return Path(cache_dir) / f"umt5_{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"


def encode_prompt(
    prompt: str,
    tokenizer_folder: str | Path,
    encoder_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """Prompt -> (1, n, dim) embeddings: tokenizer of ``tokenizer_folder`` (google/umt5-xxl), umT5 loaded, used
    and freed. With ``cache_dir`` the result is stored as safetensors keyed by prompt + encoder file identity
    (+ dtype) and reused without loading the encoder."""
    import gc

    from safetensors.torch import load_file, save_file

    from ..atomic import atomic_path

    cache_file = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file = prompt_cache_path(Path(cache_dir), prompt, encoder_path, str(dtype))
        if cache_file.is_file():
            try:
                return load_file(str(cache_file))["prompt_embeds"].to(device)
            except Exception:  # a damaged cache entry is recomputed and replaced
                pass
    ids = tokenize_prompt(load_tokenizer(tokenizer_folder), prompt)
    encoder = load_umt5_encoder(encoder_path, device=device, dtype=dtype)
    embeds = encoder.encode_ids(ids).clone()
    del encoder
    gc.collect()
    if cache_file is not None:
        with atomic_path(cache_file) as temporary:
            save_file({"prompt_embeds": embeds.detach().cpu().contiguous()}, str(temporary))
    return embeds


def load_tokenizer(folder: str | Path):
    """The umT5 tokenizer of a local folder (the release's google/umt5-xxl); never downloads."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: tokenizer folder not found. Download the release's google/umt5-xxl folder.")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # transformers raises many kinds; the user needs one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"{folder}: cannot read the umT5 tokenizer ({first}).") from None
