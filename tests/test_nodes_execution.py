"""Every EchoMimic node executed in-process on tiny weights, as ComfyUI would call it.

Only ComfyUI's own modules are stand-ins (tests/comfy_stubs); the library, the tiny models of the shared
parity cases, the tiny diffusers VAE (behind comfy.sd.VAE's call conventions) and MediaPipe run for real.
The two sampler runs on the parity cases must reproduce the official videos, which also proves the
ComfyUI VAE adapter's scaling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.comfy_stubs import REPO_ROOT, StandInComfyVae, extension_submodule, node_instances, read_wav_as_comfy_audio
from tests.helpers import require
from tests.parity_cases import PARITY_ROOT as PARITY


@pytest.fixture(scope="module", autouse=True)
def _parity_cases_present() -> None:
    """Without the shared parity cases these tests FAIL (they are the tiny weights and the expected videos)."""
    for case in ("v1_audio", "v1_pose_acc"):
        require(PARITY / case / "case.json")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return node_instances(tmp_path_factory.mktemp("comfy_models"))


@pytest.fixture(scope="module")
def node_error(nodes: dict[str, Any]) -> type[Exception]:
    return extension_submodule("nodes.common").EchoMimicNodeError


@pytest.fixture(scope="module")
def comfy() -> Any:
    import comfy.model_management
    import comfy.utils

    return comfy


@pytest.fixture(scope="module")
def vae() -> StandInComfyVae:
    return StandInComfyVae(PARITY / "v1_audio" / "vae")


@pytest.fixture(scope="module")
def pose_vae() -> StandInComfyVae:
    return StandInComfyVae(PARITY / "v1_pose_acc" / "vae")  # each parity case has its own tiny VAE


@pytest.fixture(scope="module")
def audio_encoder(nodes: dict[str, Any]) -> Any:
    return nodes["EchoMimicAudioEncoderLoader"].load("tiny_audio", "fp32")[0]


def _image(path: Path) -> torch.Tensor:
    """A png as ComfyUI's LoadImage gives it: [1, H, W, 3] float32 0..1."""
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)[None]


_FEATURES_CACHE: dict[str, tuple[Any, int, dict]] = {}


def _features(nodes: dict[str, Any], encoder: Any, case: str) -> tuple[Any, int, dict]:
    """The Audio Features node's outputs for a parity case's speech at 24 fps (computed once per case)."""
    if case not in _FEATURES_CACHE:
        audio = read_wav_as_comfy_audio(PARITY / case / "inputs" / "audio.wav")
        _FEATURES_CACHE[case] = nodes["EchoMimicAudioFeatures"].compute(audio, encoder, 24.0)
    return _FEATURES_CACHE[case]


class ProgressRecorder:
    """Installed as ComfyUI's progress hook; optionally presses Cancel after `cancel_after` updates. With a
    `vae`, also records how many decode calls it had made at each update (`decodes_at`)."""

    def __init__(self, comfy: Any, cancel_after: int | None = None, vae: StandInComfyVae | None = None) -> None:
        self.comfy, self.cancel_after, self.vae = comfy, cancel_after, vae
        self.updates: list[tuple[int, int]] = []
        self.decodes_at: list[int] = []

    def __call__(self, value: int, total: int, preview: Any, node_id: Any = None) -> None:
        self.updates.append((value, total))
        if self.vae is not None:
            self.decodes_at.append(self.vae.decode_calls)
        if self.cancel_after is not None and len(self.updates) == self.cancel_after:
            self.comfy.model_management.interrupt_current_processing(True)

    def __enter__(self) -> ProgressRecorder:
        self.comfy.utils.set_progress_bar_global_hook(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.comfy.utils.set_progress_bar_global_hook(None)
        self.comfy.model_management.interrupt_current_processing(False)


# Loaders ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant, folder",
    [
        ("V1 audio", "tiny_audio"),
        ("V1 audio accelerated", "tiny_audio"),
        ("V1 landmarks", "tiny_pose"),
        ("V1 landmarks accelerated", "tiny_pose"),
    ],
)
def test_model_loader_wraps_every_variant_for_model_management(
    nodes: dict[str, Any], variant: str, folder: str
) -> None:
    from comfy.model_patcher import ModelPatcher

    (loaded,) = nodes["EchoMimicModelLoader"].load(variant, "auto", folder)
    expected = {
        "V1 audio": "audio",
        "V1 audio accelerated": "audio_acc",
        "V1 landmarks": "pose",
        "V1 landmarks accelerated": "pose_acc",
    }[variant]
    assert loaded.variant == loaded.models.variant == expected
    assert loaded.dtype == torch.float32  # auto on CPU
    assert isinstance(loaded.patcher, ModelPatcher)
    patched = dict(loaded.patcher.model.named_children())
    assert patched["denoising_unet"] is loaded.models.denoising_unet
    assert patched["reference_unet"] is loaded.models.reference_unet
    assert patched["face_locator"] is loaded.models.face_locator
    assert loaded.patcher.model_dtype() == torch.float32


def test_model_loader_precision_is_applied(nodes: dict[str, Any]) -> None:
    (loaded,) = nodes["EchoMimicModelLoader"].load("V1 audio", "bf16", "tiny_audio")
    assert loaded.dtype == torch.bfloat16
    assert loaded.models.denoising_unet.conv_in.weight.dtype == torch.bfloat16


def test_missing_weights_name_the_path_and_the_download(nodes: dict[str, Any], node_error: type) -> None:
    import folder_paths

    with pytest.raises(node_error) as caught:
        nodes["EchoMimicModelLoader"].load("V1 audio", "auto", "EchoMimic", download_missing=False)
    message = str(caught.value)
    assert str(Path(folder_paths.models_dir) / "echomimic" / "EchoMimic") in message
    assert "huggingface.co/BadToBest/EchoMimic" in message and "denoising_unet.pth" in message
    with pytest.raises(node_error, match=r"whisper_tiny\.pt"):
        nodes["EchoMimicAudioEncoderLoader"].load("EchoMimic", "fp32", download_missing=False)


def test_wrong_variant_or_foreign_weight_files_are_refused(nodes: dict[str, Any], node_error: type) -> None:
    import folder_paths
    from safetensors.torch import save_file

    # The landmark weights in the audio slots (3-channel face locator where 1 is expected), and a file
    # with V2-style keys: both must be refused with a message, not a shape traceback.
    wrong = Path(folder_paths.models_dir) / "echomimic" / "wrong_files"
    wrong.mkdir()
    pose_dir = Path(folder_paths.models_dir) / "echomimic" / "tiny_pose"
    for stem in ("reference_unet", "denoising_unet", "motion_module", "face_locator"):
        source = (
            pose_dir / f"{stem}_pose.safetensors"
            if stem != "denoising_unet"
            else pose_dir / "denoising_unet_pose.safetensors"
        )
        (wrong / f"{stem}.safetensors").symlink_to(source.resolve())
    for config in ("unet_config.json", "inference.json"):
        (wrong / config).symlink_to((pose_dir / config).resolve())
    with pytest.raises(node_error, match="variant|release|wrong|V2"):
        nodes["EchoMimicModelLoader"].load("V1 audio", "auto", "wrong_files")
    (wrong / "face_locator.safetensors").unlink()
    save_file({"pose_encoder.conv_in.weight": torch.zeros(16, 3, 3, 3)}, str(wrong / "face_locator.safetensors"))
    (wrong / "face_locator.json").symlink_to(
        (Path(folder_paths.models_dir) / "echomimic" / "tiny_audio" / "face_locator.json").resolve()
    )
    with pytest.raises(node_error) as caught:
        nodes["EchoMimicModelLoader"].load("V1 audio", "auto", "wrong_files")
    assert "face_locator" in str(caught.value)


def test_weights_folder_rejects_paths_outside_the_models_folder(nodes: dict[str, Any], node_error: type) -> None:
    with pytest.raises(node_error, match="inside ComfyUI/models/echomimic"):
        nodes["EchoMimicModelLoader"].load("V1 audio", "auto", "../../etc")


def test_weights_folder_choices_list_the_downloaded_folders(nodes: dict[str, Any]) -> None:
    choices = extension_submodule("nodes.common").weights_folder_choices()
    assert choices[0] == "EchoMimic"
    assert {"tiny_audio", "tiny_pose"} <= set(choices)


# Audio -------------------------------------------------------------------------------------------------


def test_audio_features_match_the_official_chunks(nodes: dict[str, Any], audio_encoder: Any) -> None:
    features, frame_count, trimmed = _features(nodes, audio_encoder, "v1_audio")
    expected = np.load(PARITY / "v1_audio" / "expected" / "audio_features.npy")
    all_chunks = np.load(PARITY / "v1_audio" / "expected" / "chunk_indices.npy")
    assert frame_count == features.num_frames == all_chunks.shape[0]
    tokens = features.tokens_for_frames(range(expected.shape[0])).numpy()
    np.testing.assert_allclose(tokens, expected, atol=1e-4)
    # The AUDIO output lasts exactly frame_count frames, for muxing.
    assert trimmed["sample_rate"] == 16000
    assert trimmed["waveform"].shape[:2] == (1, 1)
    assert trimmed["waveform"].shape[-1] == round(frame_count * 16000 / 24)


def test_audio_features_follow_the_fps_and_any_sample_rate(nodes: dict[str, Any], audio_encoder: Any) -> None:
    audio = read_wav_as_comfy_audio(PARITY / "v1_audio" / "inputs" / "audio.wav")
    stereo_44k = {
        "waveform": torch.nn.functional.interpolate(
            audio["waveform"], scale_factor=44100 / 16000, mode="linear"
        ).repeat(1, 2, 1),
        "sample_rate": 44100,
    }
    _, frames_24, _ = _features(nodes, audio_encoder, "v1_audio")
    _, frames_30, trimmed = nodes["EchoMimicAudioFeatures"].compute(stereo_44k, audio_encoder, 30.0)
    assert frames_30 > frames_24
    assert trimmed["waveform"].shape[:2] == (1, 2) and trimmed["sample_rate"] == 44100


def test_audio_features_trim_to_the_frames_the_sampler_makes(nodes: dict[str, Any], audio_encoder: Any) -> None:
    """Catches frame_count / the trimmed AUDIO running past the video when the landmarks end it (issue 9: it said
    2+ frames more), so a saver that does not trim the sound still gets picture and sound of one length."""
    audio = read_wav_as_comfy_audio(PARITY / "v1_audio" / "inputs" / "audio.wav")
    compute = nodes["EchoMimicAudioFeatures"].compute
    features, frame_count, trimmed = compute(
        audio, audio_encoder, 24.0, driving_images=torch.zeros(5, 8, 8, 3), length_policy="stop"
    )
    assert features.num_frames > 5 and frame_count == 5
    assert trimmed["waveform"].shape[-1] == round(5 * 16000 / 24)
    _, looped, _ = compute(audio, audio_encoder, 24.0, driving_images=torch.zeros(5, 8, 8, 3))
    assert looped == features.num_frames  # the default policy loops the landmarks over the whole speech
    _, shorter, _ = compute(audio, audio_encoder, 24.0, length=4)
    assert shorter == 4


def test_missing_or_too_short_audio_is_explained(nodes: dict[str, Any], audio_encoder: Any, node_error: type) -> None:
    node = nodes["EchoMimicAudioFeatures"]
    with pytest.raises(node_error, match="No audio"):
        node.compute(None, audio_encoder, 24.0)
    with pytest.raises(node_error, match="empty"):
        node.compute({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}, audio_encoder, 24.0)
    with pytest.raises(node_error, match="longer clip"):
        node.compute({"waveform": torch.zeros(1, 1, 100), "sample_rate": 16000}, audio_encoder, 24.0)


# Face mask and landmarks ---------------------------------------------------------------------------------


def test_face_mask_and_crop(nodes: dict[str, Any], node_error: type) -> None:
    node = nodes["EchoMimicFaceMaskCrop"]
    portrait = _image(REPO_ROOT / "example_inputs" / "portrait.png")
    image, mask, crop_info = node.crop_face(portrait, True, 96, 64, 0.1, 0.5)
    assert image.shape == (1, 64, 96, 3) and mask.shape == (1, 64, 96)
    assert crop_info.original_size == (256, 256) and crop_info.crop_size == (96, 64)  # for Paste Back
    assert 0.05 < float(mask.mean()) < 0.95  # a face box, not all or nothing
    blank = torch.full((1, 128, 128, 3), 0.5)
    with pytest.raises(node_error, match="(?i)no face.*mask"):
        node.crop_face(blank, True, 64, 64, 0.1, 0.5)
    own_mask = torch.zeros(1, 128, 128)
    own_mask[:, 32:96, 40:88] = 1.0
    image, mask, crop_info = node.crop_face(blank, False, 64, 64, 0.1, 0.5, mask=own_mask)
    assert torch.equal(mask[0], own_mask[0])
    assert crop_info.box == (0, 0, 128, 128)  # not cropped: the whole picture


def test_landmark_nodes_extract_align_select_draw(nodes: dict[str, Any], node_error: type) -> None:
    portrait = _image(REPO_ROOT / "example_inputs" / "portrait.png")
    # A tiny "driving video": the portrait shifted a little, frame by frame.
    driving = torch.cat([torch.roll(portrait, shifts=(2 * i, i), dims=(1, 2)) for i in range(3)])
    reference, preview = nodes["EchoMimicExtractLandmarks"].extract(portrait)
    assert reference.num_frames == 1 and preview.shape == portrait.shape
    assert not torch.equal(preview, portrait)  # lines drawn over the frame
    driver, _ = nodes["EchoMimicExtractLandmarks"].extract(driving)
    assert driver.num_frames == 3
    (aligned,) = nodes["EchoMimicAlignLandmarks"].align(driver, reference, 0, True, 0.0)
    assert aligned.num_frames == 3 and (aligned.width, aligned.height) == (reference.width, reference.height)
    (eyes,) = nodes["EchoMimicSelectLandmarkParts"].select(aligned, True, True, False, False, False)
    (merged,) = nodes["EchoMimicSelectLandmarkParts"].select(
        aligned, True, True, False, False, False, base_landmarks=reference
    )
    assert np.isnan(eyes.points).any() and not np.isnan(merged.points).any()
    (all_parts,) = nodes["EchoMimicDrawLandmarks"].draw(aligned, 64, 64, False)
    (eyes_only,) = nodes["EchoMimicDrawLandmarks"].draw(eyes, 64, 64, False)
    assert all_parts.shape == eyes_only.shape == (3, 64, 64, 3)
    assert 0 < float(eyes_only.sum()) < float(all_parts.sum())
    with pytest.raises(node_error, match="at least one part"):
        nodes["EchoMimicSelectLandmarkParts"].select(aligned, False, False, False, False, False)


# Sampler -----------------------------------------------------------------------------------------------


def _audio_case_inputs(nodes: dict[str, Any], encoder: Any) -> dict[str, Any]:
    features, _, _ = _features(nodes, encoder, "v1_audio")
    mask = torch.from_numpy(np.load(PARITY / "v1_audio" / "inputs" / "face_mask.npy"))[None]
    return {
        "reference_image": _image(PARITY / "v1_audio" / "inputs" / "reference.png"),
        "audio_features": features,
        "face_mask": mask,
    }


AUDIO_CASE_SETTINGS = {
    "width": 64,
    "height": 64,
    "length": 6,
    "steps": 2,
    "cfg": 2.5,
    "seed": 420,
    "context_frames": 4,
    "context_overlap": 1,
}


def test_sampler_refuses_nan_images(
    nodes: dict[str, Any], vae: StandInComfyVae, audio_encoder: Any, node_error: type
) -> None:
    """Catches NaN or inf in the reference IMAGE reaching the sampler (a video of NaN frames, exit 0)."""
    (model,) = nodes["EchoMimicModelLoader"].load("V1 audio", "fp32", "tiny_audio")
    inputs = _audio_case_inputs(nodes, audio_encoder)
    broken = torch.as_tensor(inputs["reference_image"]).clone()
    broken[0, 0, 0, 0] = float("inf")
    with pytest.raises(node_error, match="reference_image input holds NaN or infinite"):
        nodes["EchoMimicSampler"].sample(model, vae, **{**inputs, "reference_image": broken}, **AUDIO_CASE_SETTINGS)


def test_sampler_reproduces_the_official_audio_video_then_cancel_and_rerun(
    nodes: dict[str, Any], vae: StandInComfyVae, audio_encoder: Any, comfy: Any
) -> None:
    (model,) = nodes["EchoMimicModelLoader"].load("V1 audio", "fp32", "tiny_audio")
    inputs = _audio_case_inputs(nodes, audio_encoder)
    sampler = nodes["EchoMimicSampler"]
    expected = np.load(PARITY / "v1_audio" / "expected" / "video.npy")

    # Cancel pressed during the first step: ComfyUI's own interrupt, the flag consumed, no frames.
    with ProgressRecorder(comfy, cancel_after=1) as progress:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            sampler.sample(model, vae, **inputs, **AUDIO_CASE_SETTINGS)
    assert len(progress.updates) == 1
    assert comfy.model_management.processing_interrupted() is False

    # The same models right after: a full run, the official video, and one bar over the whole node: the
    # reference encoding, 2 steps x 2 windows, 2 decoded chunks of <= 4 frames (the CPU's decode batch).
    loads_before = len(comfy.model_management.load_calls)
    decodes_before = vae.decode_calls
    with ProgressRecorder(comfy, vae=vae) as progress:
        frames, fps, *_ = sampler.sample(model, vae, **inputs, **AUDIO_CASE_SETTINGS)
    assert progress.updates == [(done, 7) for done in range(1, 8)]
    assert progress.decodes_at[-1] == vae.decode_calls == decodes_before + 2  # 100 % only after the last decode
    assert progress.decodes_at[-2] == decodes_before + 1
    assert len(comfy.model_management.load_calls) == loads_before + 1
    patchers, _, full_load = comfy.model_management.load_calls[-1]
    assert patchers == [model.patcher] and full_load
    assert fps == 24.0
    assert frames.shape == (6, 64, 64, 3) and frames.dtype == torch.float32
    np.testing.assert_allclose(frames.numpy(), expected, atol=1e-4)
    assert vae.encode_calls >= 1 and vae.decode_calls >= 1


def test_cancel_during_decoding_stops_the_sampler(
    nodes: dict[str, Any], vae: StandInComfyVae, audio_encoder: Any, comfy: Any
) -> None:
    """Cancel pressed at the last denoising unit stops the node before the VAE decodes anything, as ComfyUI's
    interrupt. Catches decoding that ignores Cancel (at small sizes most of the node's time)."""
    (model,) = nodes["EchoMimicModelLoader"].load("V1 audio accelerated", "fp32", "tiny_audio")
    inputs = _audio_case_inputs(nodes, audio_encoder)
    settings = {**AUDIO_CASE_SETTINGS, "steps": 1}  # 1 + 1 x 2 windows before decoding
    decodes_before = vae.decode_calls
    with ProgressRecorder(comfy, cancel_after=3) as progress:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            nodes["EchoMimicSampler"].sample(model, vae, **inputs, **settings)
    assert progress.updates == [(1, 5), (2, 5), (3, 5)]
    assert vae.decode_calls == decodes_before
    assert comfy.model_management.processing_interrupted() is False


def test_sampler_reproduces_the_official_landmark_video(
    nodes: dict[str, Any], pose_vae: StandInComfyVae, audio_encoder: Any, comfy: Any
) -> None:
    """Landmark images reach the face locator and the video is the official one; cfg 0 = the accelerated
    default (1.0, one batch row). Catches: landmark images ignored, resized or normalised differently, a
    different cfg default, the node applying its own rule to the landmark images or the audio length."""
    (model,) = nodes["EchoMimicModelLoader"].load("V1 landmarks accelerated", "fp32", "tiny_pose")
    features, _, _ = _features(nodes, audio_encoder, "v1_pose_acc")
    landmark_images = torch.from_numpy(np.load(PARITY / "v1_pose_acc" / "inputs" / "pose_frames.npy"))
    with ProgressRecorder(comfy) as progress:
        frames, fps, *_ = nodes["EchoMimicSampler"].sample(
            model,
            pose_vae,
            _image(PARITY / "v1_pose_acc" / "inputs" / "reference.png"),
            features,
            width=64,
            height=64,
            length=7,
            steps=3,
            cfg=0.0,
            seed=123,
            context_frames=4,
            context_overlap=1,
            landmark_images=landmark_images,
        )
    total = progress.updates[-1][1]
    # The reference, 3 steps x the windows, 2 decoded chunks (7 frames, 4 per chunk on the CPU).
    assert progress.updates == [(step, total) for step in range(1, total + 1)] and (total - 1 - 2) % 3 == 0
    assert frames.shape == (7, 64, 64, 3) and fps == 24.0
    np.testing.assert_allclose(frames.numpy(), np.load(PARITY / "v1_pose_acc" / "expected" / "video.npy"), atol=1e-4)


def test_sampler_explains_bad_input(
    nodes: dict[str, Any], vae: StandInComfyVae, audio_encoder: Any, node_error: type
) -> None:
    (audio_model,) = nodes["EchoMimicModelLoader"].load("V1 audio accelerated", "fp32", "tiny_audio")
    (pose_model,) = nodes["EchoMimicModelLoader"].load("V1 landmarks accelerated", "fp32", "tiny_pose")
    inputs = _audio_case_inputs(nodes, audio_encoder)
    settings = {**AUDIO_CASE_SETTINGS, "steps": 1}
    sample = nodes["EchoMimicSampler"].sample
    with pytest.raises(node_error, match="multiples of 8"):
        sample(audio_model, vae, **inputs, **{**settings, "width": 60})
    with pytest.raises(node_error, match="context_overlap"):
        sample(audio_model, vae, **inputs, **{**settings, "context_overlap": 4})
    with pytest.raises(node_error, match="empty"):
        sample(audio_model, vae, **{**inputs, "face_mask": torch.zeros(1, 64, 64)}, **settings)
    no_mask = {key: value for key, value in inputs.items() if key != "face_mask"}
    with pytest.raises(node_error, match="(?i)no face.*mask"):
        sample(audio_model, vae, **{**no_mask, "reference_image": torch.full((1, 64, 64, 3), 0.5)}, **settings)
    with pytest.raises(node_error, match="landmark images"):
        sample(pose_model, vae, **no_mask, **settings)
    with pytest.raises(node_error, match="landmark"):
        sample(audio_model, vae, **inputs, **settings, landmark_images=torch.zeros(6, 64, 64, 3))
    # Landmarks shorter than the speech: the library's length policy, and the node reports the frames it made.
    frames, _, frame_count, _ = sample(
        pose_model,
        vae,
        **no_mask,
        **{**settings, "length": 0},
        landmark_images=torch.zeros(3, 64, 64, 3),
        length_policy="stop",
    )
    assert frame_count == frames.shape[0] == 3
