"""EchoMimic V3 flash audio path against the official numbers, on every case folder of kind "audio" under
../shared/parity_v3 (ECHOMIMIC_PARITY_V3_CASES); plus the long-clip windowing and the bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from echomimic.errors import InputError, WeightsError
from echomimic.v3 import audio
from tests.parity_cases import PARITY_V3_ROOT, discover_cases

AUDIO_CASES = [
    c for c in discover_cases(PARITY_V3_ROOT) if json.loads((c / "case.json").read_text())["kind"] == "audio"
]
# ai2v_first / ai2v_latter are the transformer branch's get_ai2v split (echomimic/v3/audio_windows.py), checked
# against these files in tests/test_v3_transformer.py; every other expected file is produced here.
DELEGATED = {"ai2v_first.npy", "ai2v_latter.npy"}


def _clips() -> list[tuple[Path, str]]:
    return [
        (case, clip) for case in AUDIO_CASES for clip in sorted(json.loads((case / "case.json").read_text())["clips"])
    ]


def test_audio_cases_are_found() -> None:
    """Catches a moved or renamed fixture folder: the parity tests below would otherwise run on nothing."""
    assert AUDIO_CASES, f"no case of kind 'audio' under {PARITY_V3_ROOT} (set ECHOMIMIC_PARITY_V3_CASES)"


_ENCODERS: dict[Path, audio.V3AudioEncoder] = {}


def _encoder(case: Path) -> audio.V3AudioEncoder:
    if case not in _ENCODERS:
        _ENCODERS[case] = audio.load_audio_encoder(case / "models" / "chinese-wav2vec2-base")
    return _ENCODERS[case]


def _official_steps(case: Path, clip: str) -> dict[str, np.ndarray]:
    """Every intermediate of the official audio path, computed by the library, keyed by expected file name."""
    info = json.loads((case / "case.json").read_text())["clips"][clip]
    encoder, frames = _encoder(case), info["video_length_actual"]
    speech = audio.load_speech_16k(case / "inputs" / f"{clip}.wav")
    normalized = audio.loudness_normalize(speech, audio.SAMPLE_RATE)
    values = encoder.input_values(normalized[: audio.cut_samples(frames)])
    conv = encoder.conv_features(values)
    interp = encoder.interpolate(conv, frames)
    states = encoder.hidden_states(interp)
    embeds = encoder.embed(normalized, frames)
    return {
        "audio_16k.npy": speech,
        "audio_loudnorm.npy": normalized,
        "input_values.npy": values,
        "conv_features.npy": conv.numpy(),
        "interp_features.npy": interp.numpy(),
        "hidden_states.npy": states.numpy(),
        "audio_emb.npy": states[1:].permute(1, 0, 2).numpy(),
        "center_indices.npy": audio.center_indices(frames),
        "audio_embeds.npy": embeds.numpy(),
    }


@pytest.mark.parametrize(("case", "clip"), _clips(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_expected_file_matches_official(case: Path, clip: str) -> None:
    """Catches any drift from infer_flash.py's audio path (resampler, loudness gain and its float64 dtype, the
    hard-coded-25 cut, do_normalize, interpolation size/corners, hidden_states[1:], the +-2 clamped windows):
    each expected file of the clip within case.json's suggested_tolerance."""
    info = json.loads((case / "case.json").read_text())
    tolerances = info["suggested_tolerance"]["per_file_atol"]
    ours = _official_steps(case, clip)
    files = sorted((case / "expected" / clip).glob("*.npy"))
    assert files, f"{case}/expected/{clip} holds no .npy"
    for path in files:
        if path.name in DELEGATED:
            continue
        assert path.name in ours, f"{path}: an expected file this test does not know how to produce"
        expected, got = np.load(path), np.asarray(ours[path.name])
        assert got.shape == expected.shape, f"{path.name}: shape {got.shape} != {expected.shape}"
        assert got.dtype == expected.dtype or path.name == "center_indices.npy", f"{path.name}: dtype {got.dtype}"
        tol = tolerances[f"{clip}/{path.name}"]
        if tol == "exact":
            assert np.array_equal(got, expected), f"{path.name} differs"
        else:
            diff = float(np.abs(got.astype(np.float64) - expected).max())
            assert diff <= tol, f"{path.name}: max abs diff {diff} > {tol}"


def test_windowed_encoding_stays_close_and_is_bounded() -> None:
    """Catches a windowed long-clip path that drops or shifts frames, mis-stitches pieces, or still runs
    attention over the whole clip: on a case clip, forced windows (core 10, context 20 -> 64) stay close to the
    exact path, and every encoder call sees at most core + 2 * context frames. The requested context 20 is
    raised to the positional conv's half-width (64), which makes layer 0 exact."""
    case, clip = _clips()[0]
    encoder = _encoder(case)
    frames = json.loads((case / "case.json").read_text())["clips"][clip]["video_length_actual"]
    normalized = audio.loudness_normalize(audio.load_speech_16k(case / "inputs" / f"{clip}.wav"), audio.SAMPLE_RATE)
    interp = encoder.interpolate(
        encoder.conv_features(encoder.input_values(normalized[: audio.cut_samples(frames)])), frames
    )
    exact = encoder.hidden_states(interp)
    seen: list[int] = []
    original = encoder._encode

    def spy(projected):
        seen.append(projected.shape[1])
        return original(projected)

    encoder._encode = spy
    try:
        windowed = encoder.hidden_states(interp, exact_max_frames=10, core=10, context=20)
    finally:
        del encoder._encode
    assert windowed.shape == exact.shape
    half_width = encoder.model.config.num_conv_pos_embeddings // 2
    assert len(seen) == -(-frames // 10) and max(seen) <= min(frames, 10 + 2 * half_width)
    assert min(seen) < frames, "no window was cut: the test would not exercise the windowing"
    assert float((windowed[0] - exact[0]).abs().max()) < 1e-5  # pos conv + LayerNorm: exact with that context
    for layer in range(1, exact.shape[0]):
        relative = float((windowed[layer] - exact[layer]).norm() / exact[layer].norm())
        assert relative < 0.02, f"layer {layer}: windowed path {relative:.3%} away from the exact one"


def test_long_speech_uses_bounded_windows() -> None:
    """Catches quadratic attention over minutes of speech: 3 minutes at 25 fps (4500 frames) is encoded in
    windows of at most WINDOW_CORE + 2 * WINDOW_CONTEXT frames and gives (1, F, 5, L, C)."""
    case, _ = _clips()[0]
    encoder = _encoder(case)
    frames = 4500
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(audio.cut_samples(frames))).astype(np.float32)
    seen: list[int] = []
    original = encoder._encode

    def spy(projected):
        seen.append(projected.shape[1])
        return original(projected)

    encoder._encode = spy
    try:
        embeds = encoder.embed(speech, frames)
    finally:
        del encoder._encode
    layers, width = encoder.model.config.num_hidden_layers, encoder.model.config.hidden_size
    assert embeds.shape == (1, frames, 5, layers, width)
    assert max(seen) <= audio.WINDOW_CORE + 2 * audio.WINDOW_CONTEXT
    assert bool(torch.isfinite(embeds).all())


def test_silent_and_too_short_speech_are_one_line_errors() -> None:
    """Catches silence or a too-short clip reaching wav2vec2 (NaN features or a conv shape traceback)."""
    case, _ = _clips()[0]
    encoder = _encoder(case)
    for speech, word in ((np.zeros(16000, np.float32), "silent"), (np.ones(100, np.float32), "too short")):
        with pytest.raises(InputError, match=word) as info:
            encoder.embed(speech, 25)
        assert "\n" not in str(info.value)


def test_wrong_kind_folder_is_a_one_line_error(tmp_path: Path) -> None:
    """Catches a folder of another model (or an empty one) being built into a wav2vec2 and failing later."""
    with pytest.raises(WeightsError, match="not a wav2vec2 folder"):
        audio.load_audio_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    (tmp_path / "preprocessor_config.json").write_text("{}")
    with pytest.raises(WeightsError, match="not a wav2vec2 folder") as info:
        audio.load_audio_encoder(tmp_path)
    assert "\n" not in str(info.value)


def test_too_short_for_loudness_is_a_one_line_error() -> None:
    """Catches pyloudnorm's ValueError (clip shorter than its 0.4 s block) escaping as a traceback."""
    with pytest.raises(InputError, match="too short"):
        audio.loudness_normalize(np.full(1000, 0.1, np.float32), audio.SAMPLE_RATE)


def _copy_folder(case: Path, target: Path) -> Path:
    folder = target / "chinese-wav2vec2-base"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((case / "models" / "chinese-wav2vec2-base" / name).read_bytes())
    return folder


class _NotATensor:
    pass


def test_unsafe_or_mismatched_weights_are_refused(tmp_path: Path) -> None:
    """Catches an unpickling load of a user's .bin (weights_only off) and a non-strict load that would leave
    random wav2vec2 weights behind a missing key."""
    case, _ = _clips()[0]
    folder = _copy_folder(case, tmp_path)
    torch.save({"payload": _NotATensor()}, folder / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="safely"):
        audio.load_audio_encoder(folder)
    state = torch.load(case / "models" / "chinese-wav2vec2-base" / "pytorch_model.bin", weights_only=True)
    state.pop("wav2vec2.encoder.layers.0.attention.q_proj.weight")
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="missing .*q_proj"):
        audio.load_audio_encoder(folder)


def test_full_size_wav2vec2_matches_the_manifest() -> None:
    """Catches a key mapping that would not load the real chinese-wav2vec2-base file: the released keys (a
    Wav2Vec2ForPreTraining checkpoint), mapped as the loader maps them, are exactly the full-size
    Wav2Vec2Model's (wav2vec2-base: transformers' default config), with the same shapes."""
    import json

    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from echomimic.v3.audio import body_state_dict, module_key
    from tests.parity_cases import SHARED_ROOT

    manifest = json.loads((SHARED_ROOT / "parity" / "manifests" / "echomimic_v3_flash.json").read_text())
    keys = manifest["files"]["chinese-wav2vec2-base/pytorch_model.bin"]["keys"]
    mapped = {module_key(key): tuple(shape) for key, shape in body_state_dict(keys).items()}
    with torch.device("meta"):
        model = Wav2Vec2Model(Wav2Vec2Config())
    own = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    assert mapped == own
