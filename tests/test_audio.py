"""Audio path unit tests: resampling, mel, chunking, weight formats, ComfyUI waveforms, errors."""

from __future__ import annotations

import json
import logging
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from echomimic.audio import (
    AudioFeatures,
    EncoderDims,
    WhisperEncoder,
    chunk_indices,
    compute_audio_features,
    load_whisper_encoder,
    log_mel_spectrogram,
    mel_filters,
    prepare_waveform,
    resample_to_16k,
    trim_audio_to_frames,
)
from echomimic.errors import InputError, WeightsError
from tests.helpers import read_wav_int16, require
from tests.parity_cases import PARITY_ROOT
from tests.test_audio_parity import whisper_checkpoint


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    return load_whisper_encoder(whisper_checkpoint())


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """3.5 s of real speech, [56000] at 16 kHz."""
    samples, rate = read_wav_int16(require(PARITY_ROOT / "audio_features" / "inputs" / "clip_3s5.wav"))
    assert rate == 16000
    return samples[0]


@pytest.fixture(scope="module")
def speech_features(speech, encoder) -> AudioFeatures:
    return compute_audio_features(speech, 16000, encoder, 24)


def _swr(samples: torch.Tensor, rate_in: int, rate_out: int) -> torch.Tensor:
    """ffmpeg's libswresample (through PyAV): what the official ffmpeg call does to other rates."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
    frame = av.AudioFrame.from_ndarray(samples.numpy()[None].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = rate_in
    chunks = [out.to_ndarray() for out in resampler.resample(frame)] + [
        out.to_ndarray() for out in resampler.resample(None)
    ]
    return torch.from_numpy(np.concatenate(chunks, axis=1)[0])


# ---------------------------------------------------------------- mel


def test_mel_filters_are_whisper_slaney_bank() -> None:
    filters = mel_filters().numpy()
    assert filters.shape == (80, 201) and filters.dtype == np.float32
    assert (filters >= 0).all()
    peaks = filters.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] >= 190  # ascending bands up to ~8 kHz
    # Slaney area normalisation: each triangle's area in Hz is ~1 (coarse 40 Hz bins at the low end)
    areas = filters.sum(axis=1) * 40.0
    np.testing.assert_allclose(areas[20:], 1.0, atol=0.1)
    # values of whisper's assets/mel_filters.npz (= librosa.filters.mel(sr=16000, n_fft=400, n_mels=80))
    assert filters[0, 1] == pytest.approx(0.024862595, abs=1e-8)
    assert filters[10, 11] == pytest.approx(0.004954375, abs=1e-8)
    assert filters[40].sum() == pytest.approx(0.02666486, abs=1e-7)
    assert filters[79].max() == pytest.approx(0.0031647119, abs=1e-9)


def test_log_mel_of_silence_and_shape() -> None:
    mel = log_mel_spectrogram(torch.zeros(16000))
    assert mel.shape == (80, 100)
    assert torch.all(mel == -1.5)  # (log10(1e-10) + 4) / 4


def test_log_mel_blocks_match_whole_clip(speech) -> None:
    """Long clips are transformed in blocks; that must equal one whole-clip STFT.
    Catches: wrong reflect padding or frame offsets at block edges, a per-block maximum."""
    long_clip = speech.repeat(4)  # 14 s = 1400 frames; blocks are 6000 frames, so force several
    from echomimic.audio import mel as mel_module

    whole = log_mel_spectrogram(long_clip)
    original = mel_module._STFT_BLOCK_FRAMES
    mel_module._STFT_BLOCK_FRAMES = 333
    try:
        blocked = log_mel_spectrogram(long_clip)
    finally:
        mel_module._STFT_BLOCK_FRAMES = original
    torch.testing.assert_close(blocked, whole, rtol=0, atol=1e-6)
    padded = torch.nn.functional.pad(long_clip[None, None], (200, 200), mode="reflect")[0, 0]
    reference = torch.stft(padded, 400, 160, window=torch.hann_window(400), center=False, return_complex=True)
    reference = torch.clamp(mel_filters() @ reference.abs()[:, :-1] ** 2, min=1e-10).log10()
    reference = (torch.maximum(reference, reference.max() - 8.0) + 4.0) / 4.0
    torch.testing.assert_close(whole, reference, rtol=0, atol=1e-5)


def test_long_clip_features_live_on_disk_and_equal_in_memory(monkeypatch, encoder) -> None:
    """Clips above IN_MEMORY_ROWS keep their features in a file-backed tensor with the same numbers.
    Catches: a long clip's fp32 features held in RAM (0.4 MB per second of speech), or a mapping that
    loses or reorders rows."""
    from echomimic.audio import features as features_module

    torch.manual_seed(1)
    samples = 0.1 * torch.randn(16000 * 40)  # 40 s: two encoder segments, 2000 rows
    in_memory = compute_audio_features(samples, 16000, encoder, 25)
    monkeypatch.setattr(features_module, "IN_MEMORY_ROWS", 100)
    on_disk = compute_audio_features(samples, 16000, encoder, 25)
    assert on_disk.whisper_features.shape == (2000, 5, 384)
    assert torch.equal(on_disk.whisper_features, in_memory.whisper_features)
    assert torch.equal(
        on_disk.tokens_for_frames([0, 500, on_disk.num_frames - 1]),
        in_memory.tokens_for_frames([0, 500, in_memory.num_frames - 1]),
    )
    maps = Path("/proc/self/maps").read_text()
    assert "echomimic-audio-" in maps  # the features are a file mapping, not anonymous memory


# ---------------------------------------------------------------- resampling


def test_16k_passes_through_bit_exact(speech) -> None:
    assert torch.equal(resample_to_16k(speech[None], 16000), speech)


@pytest.mark.parametrize("rate", [8000, 22050, 24000, 44100, 48000])
def test_resampled_sine_keeps_frequency_and_length(rate: int) -> None:
    seconds = 1.3
    length = int(rate * seconds)
    time = torch.arange(length, dtype=torch.float64) / rate
    for frequency in (440.0, 3000.0):
        tone = torch.sin(2 * math.pi * frequency * time).float()
        out = resample_to_16k(tone[None], rate)
        assert out.numel() == round(length * 16000 / rate)
        expected = torch.sin(2 * math.pi * frequency * torch.arange(out.numel(), dtype=torch.float64) / 16000).float()
        inner = slice(800, -800)  # away from the clip edges (zero outside)
        assert (out[inner] - expected[inner]).abs().max() < 1e-3
        spectrum = torch.fft.rfft(out * torch.hann_window(out.numel()))
        peak_hz = spectrum.abs().argmax().item() * 16000 / out.numel()
        assert abs(peak_hz - frequency) < 2.0


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_downsampling_removes_tones_above_8khz(rate: int) -> None:
    """No aliasing: a 9.5 kHz tone cannot fold back into the 16 kHz band."""
    time = torch.arange(rate, dtype=torch.float64) / rate
    tone = torch.sin(2 * math.pi * 9500.0 * time).float()
    out = resample_to_16k(tone[None], rate)
    assert out[500:-500].abs().max() < 1e-3


@pytest.mark.parametrize("rate", [8000, 22050, 24000, 44100, 48000])
def test_resampler_is_ffmpeg_swr(rate: int, speech) -> None:
    """The official code resamples with the ffmpeg program (swr defaults): ours is the same swr, bit for bit.
    Catches: a different filter, channel mixing after resampling, or a lost tail (swr's delay line)."""
    at_rate = _swr(speech, 16000, rate)
    ours = resample_to_16k(at_rate[None], rate)
    theirs = _swr(at_rate, rate, 16000)
    assert ours.numel() == theirs.numel() == speech.numel()
    assert torch.equal(ours, theirs)


def test_resampling_in_blocks_equals_one_call(monkeypatch, speech) -> None:
    """Long clips reach swr in blocks; swr streams, so that must not change a sample.
    Catches: blocks resampled independently (clicks and lost samples at every block edge)."""
    from echomimic.audio import resample as resample_module

    at_44k = _swr(speech, 16000, 44100)
    whole = resample_to_16k(at_44k[None], 44100)
    monkeypatch.setattr(resample_module, "_BLOCK_SAMPLES", 1000)
    assert torch.equal(resample_to_16k(at_44k[None], 44100), whole)


@pytest.mark.parametrize("rate", [999, 768001, 2**31 - 1])
def test_unusable_sample_rates_are_refused(rate: int) -> None:
    """Catches: a huge or tiny rate reaching swr (a MemoryError or an empty clip instead of a message)."""
    with pytest.raises(InputError, match="outside"):
        resample_to_16k(torch.zeros(1, 1000), rate)


# ---------------------------------------------------------------- ComfyUI waveforms


def test_44k1_stereo_features_match_official_resampling(speech, encoder, speech_features) -> None:
    """44.1 kHz stereo through our path vs. the official path (ffmpeg resample + mono): the same swr, so the
    same features. Catches another resampler, or channels mixed in another way or order."""
    at_44k = _swr(speech, 16000, 44100)
    stereo = torch.stack([at_44k, at_44k])[None]  # [1, 2, T]
    ours = compute_audio_features(stereo, 44100, encoder, 24)
    official_like = compute_audio_features(_swr(at_44k, 44100, 16000), 16000, encoder, 24)
    assert ours.num_frames == official_like.num_frames == speech_features.num_frames
    assert torch.equal(ours.whisper_features, official_like.whisper_features)


def test_stereo_is_averaged_to_mono(speech, encoder, speech_features) -> None:
    both = compute_audio_features(torch.stack([speech, speech])[None], 16000, encoder, 24)  # [1, 2, T]
    assert torch.equal(both.whisper_features, speech_features.whisper_features)
    left_only = prepare_waveform(torch.stack([speech, torch.zeros_like(speech)]), 16000)
    assert torch.equal(left_only, speech * 0.5)


def test_batch_uses_first_item(speech, encoder, speech_features, caplog) -> None:
    """B > 1: the first clip drives the video (documented), and a warning says so."""
    batch = torch.stack([speech, torch.flip(speech, [0])])[:, None]  # [2, 1, T]
    with caplog.at_level(logging.WARNING):
        features = compute_audio_features(batch, 16000, encoder, 24)
    assert torch.equal(features.whisper_features, speech_features.whisper_features)
    assert "first" in caplog.text


def test_int16_waveform_is_scaled(speech) -> None:
    as_int16 = torch.round(speech * 32768).to(torch.int16)
    assert torch.equal(prepare_waveform(as_int16[None, None], 16000), speech)


def test_silence_is_valid(encoder) -> None:
    features = compute_audio_features(torch.zeros(1, 1, 16000), 16000, encoder, 25)
    assert features.whisper_features.shape == (50, 5, 384)
    assert torch.isfinite(features.whisper_features).all()
    assert features.num_frames == chunk_indices(50, 25).shape[0] == 27


# ---------------------------------------------------------------- chunks and tokens


def _official_chunk_rows(num_rows: int, fps: float) -> list[list[int]]:
    """The official feature2chunks / get_sliced_feature loop, restated."""
    rows, i = [], 0
    while True:
        start = int(i * (50.0 / fps))
        centre = int(i * 50 / fps)
        rows.append([min(max(r, 0), num_rows - 1) for r in range(centre - 4, centre + 6)])
        i += 1
        if start > num_rows:
            return rows


@pytest.mark.parametrize("fps", [24, 25, 30, 29.97, 23.976, 12.5, 60, 7])
@pytest.mark.parametrize("num_rows", [1, 2, 52, 175, 1760, 30001])
def test_chunk_indices_follow_official_loop(num_rows: int, fps: float) -> None:
    rows = chunk_indices(num_rows, fps)
    np.testing.assert_array_equal(rows, np.array(_official_chunk_rows(num_rows, fps)))


def test_tokens_are_time_major(speech_features) -> None:
    frames = [0, 5, speech_features.num_frames - 1]
    tokens = speech_features.tokens_for_frames(frames)
    assert tokens.shape == (3, 50, 384)
    for position, frame in enumerate(frames):
        for slot in (0, 7, 49):
            row, layer = divmod(slot, 5)
            expected = speech_features.whisper_features[speech_features.chunk_indices[frame, row], layer]
            assert torch.equal(tokens[position, slot], expected)
    assert torch.equal(speech_features.audio_tokens[5], tokens[1])
    assert speech_features.audio_tokens.shape == (speech_features.num_frames, 50, 384)
    with pytest.raises(InputError, match="frames 0"):
        speech_features.tokens_for_frames([speech_features.num_frames])


def test_long_audio_encodes_one_segment_at_a_time() -> None:
    """A 65 s clip: three [1, 80, 3000] encoder calls, rows 1500 + 1500 + 250."""
    torch.manual_seed(0)
    small = WhisperEncoder(EncoderDims(n_mels=80, n_ctx=1500, width=64, n_heads=2, n_layers=4)).eval()
    calls: list[tuple[int, ...]] = []
    small.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    samples = 0.1 * torch.randn(65 * 16000)
    features = compute_audio_features(samples, 16000, small, 25)
    assert calls == [(1, 80, 3000)] * 3
    assert features.whisper_features.shape == (3250, 5, 64)
    assert features.num_frames == chunk_indices(3250, 25).shape[0]


def test_trim_audio_to_frames() -> None:
    waveform = torch.arange(2 * 48000, dtype=torch.float32).reshape(1, 2, 48000)  # 1 s at 48 kHz
    cut = trim_audio_to_frames(waveform, 48000, 12, 24.0)
    assert cut.shape == (1, 2, 24000) and torch.equal(cut, waveform[..., :24000])
    padded = trim_audio_to_frames(waveform, 48000, 36, 24.0)
    assert padded.shape == (1, 2, 72000)
    assert torch.equal(padded[..., :48000], waveform) and not padded[..., 48000:].any()


# ---------------------------------------------------------------- weight formats

_HF_LAYER = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}


def _openai_to_hf_key(key: str) -> str | None:
    """encoder.* key of an OpenAI checkpoint -> the WhisperForConditionalGeneration name."""
    if not key.startswith("encoder."):
        return None
    name = key[len("encoder.") :]
    if name == "positional_embedding":
        return "model.encoder.embed_positions.weight"
    if name.startswith("ln_post."):
        return "model.encoder.layer_norm." + name.split(".")[-1]
    if name.startswith("blocks."):
        _, index, rest = name.split(".", 2)
        module, kind = rest.rsplit(".", 1)
        return f"model.encoder.layers.{index}.{_HF_LAYER[module]}.{kind}"
    return "model.encoder." + name


def _hf_config(dims: dict) -> dict:
    return {
        "model_type": "whisper",
        "architectures": ["WhisperForConditionalGeneration"],
        "num_mel_bins": dims["n_mels"],
        "max_source_positions": dims["n_audio_ctx"],
        "d_model": dims["n_audio_state"],
        "encoder_attention_heads": dims["n_audio_head"],
        "encoder_layers": dims["n_audio_layer"],
        "encoder_ffn_dim": 4 * dims["n_audio_state"],
        "decoder_attention_heads": dims["n_text_head"],
        "decoder_layers": dims["n_text_layer"],
        "decoder_ffn_dim": 4 * dims["n_text_state"],
        "vocab_size": dims["n_vocab"],
        "max_target_positions": dims["n_text_ctx"],
    }


def test_openai_and_hf_formats_give_same_features(tmp_path, speech, speech_features) -> None:
    from safetensors.torch import save_file

    checkpoint = torch.load(whisper_checkpoint(), map_location="cpu", weights_only=True)
    hf_state = {}
    for key, value in checkpoint["model_state_dict"].items():
        hf_key = _openai_to_hf_key(key)
        if hf_key:
            hf_state[hf_key] = value.contiguous()
    assert len(hf_state) == 4 + 1 + 2 + 4 * 15  # convs, embedding, ln_post, 4 blocks of 15 tensors
    folder = tmp_path / "whisper-tiny"
    folder.mkdir()
    save_file(hf_state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(_hf_config(checkpoint["dims"])))

    from_openai = load_whisper_encoder(whisper_checkpoint()).state_dict()
    from_folder = load_whisper_encoder(folder)
    features = compute_audio_features(speech, 16000, from_folder, 24)
    assert torch.equal(features.whisper_features, speech_features.whisper_features)
    np.testing.assert_array_equal(features.chunk_indices, speech_features.chunk_indices)
    # the same tensors from the folder and from the bare .safetensors file (no config: 64-wide heads)
    for encoder_hf in (from_folder, load_whisper_encoder(folder / "model.safetensors")):
        for name, tensor in from_openai.items():
            assert torch.equal(encoder_hf.state_dict()[name], tensor), name


def test_transformers_whisper_folder_loads_and_agrees(tmp_path) -> None:
    """A folder written by transformers itself gives transformers' own hidden states."""
    import transformers  # a requirement: missing, the test fails (never skips)

    config = transformers.WhisperConfig(
        num_mel_bins=80,
        max_source_positions=1500,
        d_model=384,
        encoder_attention_heads=6,
        encoder_layers=4,
        encoder_ffn_dim=1536,
        decoder_layers=1,
        decoder_attention_heads=6,
        decoder_ffn_dim=64,
        vocab_size=64,
        max_target_positions=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(3)
    model = transformers.WhisperModel(config).eval()
    model.save_pretrained(tmp_path)
    ours = load_whisper_encoder(tmp_path)
    mel = torch.randn(1, 80, 3000) * 0.5
    with torch.no_grad():
        reference = model.encoder(mel, output_hidden_states=True)
        hidden = ours(mel)
    assert hidden.shape == (1, 1500, 5, 384)
    for layer in range(4):
        torch.testing.assert_close(hidden[:, :, layer], reference.hidden_states[layer], rtol=0, atol=1e-4)
    # transformers applies the final layer norm to its last hidden state; the official code does not
    torch.testing.assert_close(ours.ln_post(hidden[:, :, 4]), reference.last_hidden_state, rtol=0, atol=1e-4)


def test_fp16_weights_upcast_exactly(encoder) -> None:
    checkpoint = torch.load(whisper_checkpoint(), map_location="cpu", weights_only=True)
    stored = checkpoint["model_state_dict"]["encoder.blocks.0.attn.query.weight"]
    assert stored.dtype == torch.float16
    assert torch.equal(encoder.blocks[0].attn.query.weight, stored.float())
    assert torch.equal(
        encoder.positional_embedding, checkpoint["model_state_dict"]["encoder.positional_embedding"].float()
    )


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("waveform", "rate", "fps", "message"),
    [
        (torch.zeros(1, 1, 0), 16000, 24, "empty"),
        (torch.zeros(0, 1, 100), 16000, 24, "empty"),
        (torch.zeros(1, 1, 400), 16000, 24, "shorter than one video frame"),
        (torch.zeros(1, 1, 16000), 16000, 0, "fps"),
        (torch.zeros(1, 1, 16000), 16000, -5, "fps"),
        (torch.zeros(1, 1, 16000), 16000, float("nan"), "fps"),
        (torch.zeros(1, 1, 16000), 0, 24, "sample rate"),
        (torch.zeros(2, 2, 2, 16000), 16000, 24, "shape"),
    ],
)
def test_bad_audio_is_rejected(waveform, rate, fps, message, encoder) -> None:
    with pytest.raises(InputError, match=message):
        compute_audio_features(waveform, rate, encoder, fps)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples_are_rejected(bad: float, encoder) -> None:
    waveform = torch.zeros(1, 2, 16000)
    waveform[0, 1, 1234] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        compute_audio_features(waveform, 44100, encoder, 24)


def test_unknown_or_broken_weights_are_rejected(tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(WeightsError, match="not found"):
        load_whisper_encoder(missing)
    odd = tmp_path / "whisper.gguf"
    odd.write_bytes(b"GGUF")
    with pytest.raises(WeightsError, match="Unknown Whisper weight format"):
        load_whisper_encoder(odd)
    garbage = tmp_path / "whisper.pt"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="not a weights file"):
        load_whisper_encoder(garbage)
    unrelated = tmp_path / "unet.pth"
    torch.save({"conv_in.weight": torch.zeros(4, 4, 3, 3)}, unrelated)
    with pytest.raises(WeightsError, match="no Whisper audio encoder"):
        load_whisper_encoder(unrelated)
    empty_folder = tmp_path / "folder"
    empty_folder.mkdir()
    with pytest.raises(WeightsError, match="no model.safetensors"):
        load_whisper_encoder(empty_folder)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


def test_pickled_code_is_never_run(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model_state_dict": _Payload()}, handle)
    with pytest.raises(WeightsError):
        load_whisper_encoder(path)
    assert "unpickled" not in capsys.readouterr().out


def test_non_tiny_whisper_is_rejected(tmp_path) -> None:
    torch.manual_seed(0)
    base = WhisperEncoder(EncoderDims(n_mels=80, n_ctx=1500, width=512, n_heads=8, n_layers=6))
    path = tmp_path / "base.pt"
    torch.save(
        {"dims": {"n_audio_head": 8}, "model_state_dict": {f"encoder.{k}": v for k, v in base.state_dict().items()}},
        path,
    )
    with pytest.raises(WeightsError, match="whisper-tiny"):
        load_whisper_encoder(path)
