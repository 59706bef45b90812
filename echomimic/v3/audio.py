"""EchoMimic V3 flash audio path: speech -> wav2vec2 features (1, F, 5, L, C), as the official infer_flash.py.

Steps (official numbers): decode + channel mean + soxr 'HQ' to 16 kHz (librosa.load(sr=16000)), pyloudnorm
gain to -23 LUFS, cut to int(F / 25 * 16000) samples (25 hard-coded), feature-extractor normalisation, wav2vec2
conv features interpolated (linear, align_corners=True) to F frames, feature projection, encoder; the per-layer
hidden states (without the input) gathered in centred windows of +-2 frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError, WeightsError

SAMPLE_RATE = 16000
TARGET_LUFS = -23.0
# infer_flash.py cuts the speech with a hard-coded 25 frames/s whatever the fps (official quirk, kept).
OFFICIAL_CUT_FPS = 25.0
WINDOW_RADIUS = 2  # centre windows of 5 frames
# Up to this many frames (40 s at 25 fps) the encoder sees the whole clip at once, exactly as the official
# code; longer clips are encoded in windows of WINDOW_CORE frames with WINDOW_CONTEXT frames of context on
# each side (attention memory O(window^2) instead of O(F^2)). The context is never below the positional conv's
# half-width (num_conv_pos_embeddings // 2 = 64 frames), so layer 0 of every kept frame is exact; the deeper
# layers differ only by the attention to frames beyond the context (on the tiny case clip: < 1% relative).
EXACT_MAX_FRAMES = 1000
WINDOW_CORE = 500
WINDOW_CONTEXT = 250
MIN_SAMPLES = 400  # one wav2vec2 conv frame (receptive field 400 samples)


def load_speech_16k(path: str | Path) -> np.ndarray:
    """Speech as ``librosa.load(path, sr=16000)`` returns it: (N,) float32 mono (channel mean), soxr 'HQ'."""
    from ..video_io import read_audio

    waveform, rate = read_audio(path)
    return speech_16k(waveform.numpy(), rate)


def speech_16k(waveform: np.ndarray, rate: int) -> np.ndarray:
    """(C, T) float samples at ``rate`` -> (N,) float32 mono 16 kHz as librosa.load: channel mean, soxr 'HQ'."""
    import soxr

    mono = np.asarray(waveform, dtype=np.float32).reshape(-1, np.shape(waveform)[-1]).mean(axis=0)
    mono = mono.astype(np.float32)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono)


def loudness_normalize(speech: np.ndarray, sample_rate: int) -> np.ndarray:
    """Gain to -23 LUFS (pyloudnorm); unchanged when |loudness| > 100 (silence).

    Official dtype quirk: float32 speech times pyloudnorm's float64 gain is float64.
    """
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    if len(speech) < meter.block_size * sample_rate:  # pyloudnorm's ValueError would be a traceback
        raise InputError(
            f"the speech is too short ({len(speech) / sample_rate:.2f} s, need {meter.block_size} s); "
            "pass a longer audio clip."
        )
    loudness = meter.integrated_loudness(speech)
    if abs(loudness) > 100:
        return speech
    return pyloudnorm.normalize.loudness(speech, loudness, TARGET_LUFS)


def cut_samples(num_frames: int, fps: float = OFFICIAL_CUT_FPS) -> int:
    """Samples kept for ``num_frames`` frames: ``int(F / fps * 16000)`` (official: fps fixed at 25)."""
    return int(num_frames / fps * SAMPLE_RATE)


def center_indices(num_frames: int) -> np.ndarray:
    """(F, 5) int: frame i's window i-2..i+2, clamped to the clip."""
    offsets = np.arange(-WINDOW_RADIUS, WINDOW_RADIUS + 1)
    return np.clip(np.arange(num_frames)[:, None] + offsets[None], 0, num_frames - 1)


class V3AudioEncoder:
    """wav2vec2 (transformers Wav2Vec2Model) plus the official feature steps; computes in float32."""

    def __init__(self, model, feature_extractor) -> None:
        self.model = model
        self.feature_extractor = feature_extractor

    @property
    def device(self):
        """Where the model is now (ComfyUI's model management may have moved it)."""
        return next(self.model.parameters()).device

    def input_values(self, speech_16k: np.ndarray) -> np.ndarray:
        """(M,) float32 as Wav2Vec2FeatureExtractor gives it (settings from preprocessor_config.json)."""
        values = self.feature_extractor(speech_16k, sampling_rate=SAMPLE_RATE).input_values
        return np.asarray(values, dtype=np.float32).squeeze()

    def conv_features(self, input_values: np.ndarray):
        """(T_conv, C_conv) float32 conv feature encoder output (50 Hz)."""
        import torch

        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(input_values))[None].to(self.device, torch.float32)
            return self.model.feature_extractor(x)[0].transpose(0, 1)

    @staticmethod
    def interpolate(features, num_frames: int):
        """(T_conv, C) -> (F, C): linear, align_corners=True."""
        import torch.nn.functional as functional

        return functional.interpolate(features.T[None], size=num_frames, mode="linear", align_corners=True)[0].T

    def _encode(self, projected):
        """(1, T, C) projected features -> (L + 1, T, C) hidden states (0 = after pos-conv + LayerNorm)."""
        encoder = self.model.encoder
        hidden = encoder.layer_norm(projected + encoder.pos_conv_embed(projected))
        states = [hidden[0]]
        for layer in encoder.layers:
            out = layer(hidden, attention_mask=None)
            hidden = out[0] if isinstance(out, tuple) else out
            states.append(hidden[0])
        import torch

        return torch.stack(states)

    def hidden_states(
        self,
        interp_features,
        exact_max_frames: int = EXACT_MAX_FRAMES,
        core: int = WINDOW_CORE,
        context: int = WINDOW_CONTEXT,
    ):
        """(F, C_conv) -> (L + 1, F, C). Whole clip when F <= exact_max_frames (official), else windows of
        ``core`` frames each seeing ``context`` extra frames per side (at least the positional conv's half-width);
        attention memory bounded by (core + 2 context)^2 whatever F."""
        import torch

        with torch.no_grad():
            projected = self.model.feature_projection(interp_features[None])
            projected = projected[0] if isinstance(projected, tuple) else projected
            frames = projected.shape[1]
            if frames <= exact_max_frames:
                return self._encode(projected)
            context = max(context, self.model.config.num_conv_pos_embeddings // 2)
            pieces = []
            for start in range(0, frames, core):
                stop = min(start + core, frames)
                lo, hi = max(0, start - context), min(frames, stop + context)
                pieces.append(self._encode(projected[:, lo:hi])[:, start - lo : stop - lo])
            return torch.cat(pieces, dim=1)

    def frame_features(
        self,
        speech_16k: np.ndarray,
        num_frames: int,
        cut_fps: float = OFFICIAL_CUT_FPS,
        exact_max_frames: int = EXACT_MAX_FRAMES,
    ):
        """(N,) 16 kHz speech (already loudness-normalised) -> (F, L, C) float32: every layer's hidden state
        per video frame (the official ``audio_emb``, before the ±2 windows; 5x smaller than them).

        ``cut_fps`` 25 is the official cut; pass the video fps for an fps-correct cut.
        """
        if num_frames < 1:
            raise InputError(f"need at least 1 video frame, got {num_frames}.")
        speech = np.asarray(speech_16k)[: cut_samples(num_frames, cut_fps)]
        if speech.size < MIN_SAMPLES:
            raise InputError(
                f"the speech is too short ({speech.size} samples at 16 kHz, need {MIN_SAMPLES}); "
                "pass a longer audio clip."
            )
        if not np.any(speech):
            raise InputError("the speech is silent (all samples zero); pass an audio clip with speech in it.")
        features = self.interpolate(self.conv_features(self.input_values(speech)), num_frames)
        states = self.hidden_states(features, exact_max_frames=exact_max_frames)[1:]  # (L, F, C)
        return states.permute(1, 0, 2).float()

    def embed(
        self,
        speech_16k: np.ndarray,
        num_frames: int,
        cut_fps: float = OFFICIAL_CUT_FPS,
        exact_max_frames: int = EXACT_MAX_FRAMES,
    ):
        """(N,) 16 kHz speech (already loudness-normalised) -> (1, F, 5, L, C) float32 audio_embeds."""
        return windows(self.frame_features(speech_16k, num_frames, cut_fps, exact_max_frames), 0, num_frames)


def windows(frame_features, start: int, count: int):
    """(F, L, C) per-frame features -> (1, count, 5, L, C): the ±2 windows of frames start .. start + count - 1,
    clamped to the whole clip (so windows run on across chunk boundaries)."""
    import torch

    index = center_indices(frame_features.shape[0])[start : start + count]
    return frame_features[torch.from_numpy(index).to(frame_features.device)][None]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read {path} ({error}); re-download the chinese-wav2vec2-base folder.") from None


_PRETRAINING_PREFIX = "wav2vec2."


def body_state_dict(state: dict) -> dict:
    """The release file is a Wav2Vec2ForPreTraining checkpoint: keep the 'wav2vec2.' body (prefix removed),
    drop the pre-training heads (quantizer.*, project_hid, project_q)."""
    if any(key.startswith(_PRETRAINING_PREFIX) for key in state):
        return {
            key[len(_PRETRAINING_PREFIX) :]: value
            for key, value in state.items()
            if key.startswith(_PRETRAINING_PREFIX)
        }
    return dict(state)


def module_key(key: str) -> str:
    """A file key as Wav2Vec2Model names it: the fairseq-style weight-norm halves (weight_g / weight_v) are
    torch's parametrization entries."""
    return key.replace("weight_g", "parametrizations.weight.original0").replace(
        "weight_v", "parametrizations.weight.original1"
    )


def load_audio_encoder(folder: str | Path, device="cpu") -> V3AudioEncoder:
    """A chinese-wav2vec2-base folder (config.json, preprocessor_config.json, pytorch_model.bin or
    model.safetensors) -> V3AudioEncoder in float32, strict load, .bin with weights_only=True."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file() or not (folder / "preprocessor_config.json").is_file():
        raise WeightsError(
            f"{folder} is not a wav2vec2 folder (needs config.json and preprocessor_config.json); "
            "pass the chinese-wav2vec2-base folder."
        )
    config_dict = _read_json(config_path)
    if config_dict.get("model_type") != "wav2vec2":
        raise WeightsError(
            f"{folder} is not a wav2vec2 folder (model_type {config_dict.get('model_type')!r}); "
            "pass the chinese-wav2vec2-base folder."
        )
    safetensors_file, bin_file = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        weights, state = safetensors_file, load_file(str(safetensors_file))
    elif bin_file.is_file():
        try:
            weights, state = bin_file, torch.load(bin_file, map_location="cpu", weights_only=True)
        except Exception as error:  # unsafe pickle or corrupt file
            raise WeightsError(f"cannot load {bin_file} safely ({type(error).__name__}); re-download it.") from None
    else:
        raise WeightsError(f"{folder} has no pytorch_model.bin or model.safetensors; re-download the folder.")
    config = Wav2Vec2Config.from_dict(config_dict)
    model = Wav2Vec2Model(config)
    state = body_state_dict(state)
    expected = set(model.state_dict())
    legacy = {module_key(k) for k in state}
    missing = sorted(k for k in expected - legacy if k != "masked_spec_embed")
    unexpected = sorted(legacy - expected)
    if missing or unexpected:
        raise WeightsError(
            f"{weights} does not fit the wav2vec2 in {config_path.name}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}; use the chinese-wav2vec2-base release files."
        )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    model = model.to(device=device, dtype=torch.float32).eval()  # type: ignore[call-arg]  # transformers wraps .to
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
    return V3AudioEncoder(model, extractor)
