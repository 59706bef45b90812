"""Model layout, strict and safe weight loading, conversion to safetensors."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from echomimic.convert import convert_file, convert_folder
from echomimic.errors import InputError, WeightsError
from echomimic.models import build_models, load_config, load_echomimic, variant_weight_files
from echomimic.models.loading import is_motion_key
from echomimic.weights import read_state_dict
from tests.parity_cases import PARITY_ROOT, find_case, make_weights_folder

MANIFEST = PARITY_ROOT / "manifests" / "echomimic_v1.json"
MANIFEST_V2 = PARITY_ROOT / "manifests" / "echomimic_v2.json"
AUDIO_CASE = find_case(lambda case: case.get("mode") == "audio")
POSE_CASE = find_case(lambda case: str(case.get("mode", "")).startswith("pose"))
V2_CASE = find_case(lambda case: case.get("mode") == "v2_pose")


def _case(case_dir: Path) -> dict:
    return json.loads((case_dir / "case.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in module.state_dict().items()}


def test_full_size_models_have_exactly_the_release_keys_and_shapes() -> None:
    """Catches any drift of the shipped V1 configs or the model classes from the released V1 files."""
    files = json.loads(MANIFEST.read_text())["files"]
    for channels, locator_file in ((1, "face_locator.pth"), (3, "face_locator_pose.pth")):
        reference, denoising, locator = build_models(load_config(conditioning_channels=channels), "meta")
        assert _shapes(reference) == files["reference_unet.pth"]["keys"]
        assert _shapes(locator) == files[locator_file]["keys"]
        denoising_shapes = _shapes(denoising)
        motion = {k: v for k, v in denoising_shapes.items() if is_motion_key(k)}
        rest = {k: v for k, v in denoising_shapes.items() if not is_motion_key(k)}
        assert rest == files["denoising_unet.pth"]["keys"]
        assert motion == files["motion_module.pth"]["keys"]
    assert len([k for k in motion if k.endswith("temporal_transformer.norm.weight")]) == 21


def test_full_size_v2_models_have_exactly_the_release_keys_and_shapes() -> None:
    """Catches a V2 config (shipped pose_encoder.json, shared UNet configs) that does not build the V2 release."""
    from echomimic.models.loading import conditioning_channels

    files = json.loads(MANIFEST_V2.read_text())["files"]
    for variant in ("v2", "v2_acc"):
        config = load_config(
            conditioning_channels=conditioning_channels(variant), conditioning_config="pose_encoder.json"
        )
        assert config.face_locator.conditioning_channels == 3
        reference, denoising, pose_encoder = build_models(config, "meta")
        assert _shapes(reference) == files["reference_unet.pth"]["keys"]
        assert _shapes(pose_encoder) == files["pose_encoder.pth"]["keys"]
        shapes = _shapes(denoising)
        assert {k: v for k, v in shapes.items() if not is_motion_key(k)} == files["denoising_unet.pth"]["keys"]
        assert {k: v for k, v in shapes.items() if is_motion_key(k)} == files["motion_module.pth"]["keys"]


def _v2_folder(tmp_path: Path, suffixes=(".pth",)) -> Path:
    assert V2_CASE is not None, "no v2_pose parity case found"
    return make_weights_folder(V2_CASE, _case(V2_CASE), tmp_path, suffixes)


def test_v2_loads_from_its_release_names_fp16_pth_and_safetensors(tmp_path: Path) -> None:
    """Catches V2 stems not read from release.py, or fp16 V2 files not upcast exactly."""
    models = load_echomimic(_v2_folder(tmp_path / "pth"), "v2")
    assert models.conditioning == "hand_poses" and models.version == "v2" and not models.accelerated
    stored = read_state_dict(V2_CASE / "weights" / "pose_encoder.pth")
    assert all(t.dtype == torch.float16 for t in stored.values())
    loaded = models.face_locator.state_dict()
    assert all(torch.equal(loaded[k], stored[k].float()) for k in stored)
    from_st = load_echomimic(_v2_folder(tmp_path / "st", (".safetensors",)), "v2")
    assert all(
        torch.equal(a, b)
        for a, b in zip(models.denoising_unet.state_dict().values(), from_st.denoising_unet.state_dict().values())
    )


def test_v1_file_in_a_v2_slot_says_so(tmp_path: Path) -> None:
    """Catches a V1 face locator silently accepted as V2's pose encoder (or a message that hides why)."""
    folder = _v2_folder(tmp_path)
    (folder / "pose_encoder.pth").unlink()
    (folder / "pose_encoder.pth").symlink_to(AUDIO_CASE / "weights" / "face_locator.pth")  # 1-channel V1 file
    with pytest.raises(WeightsError) as error:
        load_echomimic(folder, "v2")
    message = str(error.value)
    assert "pose_encoder.pth" in message and "conv_in.weight" in message and "V1 audio face_locator" in message


def test_v2_file_in_a_v1_slot_says_so(tmp_path: Path) -> None:
    """Catches a V2 pose encoder silently accepted as the V1 audio face locator."""
    folder = _pipeline_folder(tmp_path)
    (folder / "face_locator.pth").unlink()
    (folder / "face_locator.pth").symlink_to(V2_CASE / "weights" / "pose_encoder.pth")
    with pytest.raises(WeightsError) as error:
        load_echomimic(folder, "audio")
    assert "V2 pose_encoder.pth" in str(error.value) and "face_locator.pth" in str(error.value)


def test_v1_folder_given_to_v2_names_the_release(tmp_path: Path) -> None:
    """Catches V2 loading from a V1 folder: the releases share file names and UNet shapes, so only the
    folder's V1-only files can tell; the error must name them and say each release needs its own folder,
    even when the V2-only file is there too (a mixed folder would load V1's UNets into V2)."""
    folder = _pipeline_folder(tmp_path)
    for mixed in (False, True):
        if mixed:
            (folder / "pose_encoder.pth").symlink_to(V2_CASE / "weights" / "pose_encoder.pth")
        with pytest.raises(WeightsError) as error:
            load_echomimic(folder, "v2")
        message = str(error.value)
        assert "holds EchoMimic V1 files" in message and "face_locator.pth" in message
        assert "'v2' is a V2 variant" in message and "folder of its own" in message


def test_shared_storages_convert_and_load(tmp_path: Path) -> None:
    """Catches conversion failing on a .pth whose tensors share storage (the released pose_encoder.pth)."""
    stored = read_state_dict(V2_CASE / "weights" / "pose_encoder.pth")
    flat = torch.cat([t.reshape(-1) for t in stored.values()])  # one storage holding every tensor
    shared, offset = {}, 0
    for key, tensor in stored.items():
        shared[key] = flat[offset : offset + tensor.numel()].view(tensor.shape)
        offset += tensor.numel()
    folder = _v2_folder(tmp_path)
    (folder / "pose_encoder.pth").unlink()
    torch.save(shared, folder / "pose_encoder.pth")
    for dtype in ("fp16", "fp32"):
        converted = read_state_dict(convert_file(folder / "pose_encoder.pth", dtype=dtype))
        assert all(torch.equal(converted[k].float(), stored[k].float()) for k in stored)
    models = load_echomimic(folder, "v2")  # the converted .safetensors is preferred
    assert all(torch.equal(models.face_locator.state_dict()[k], stored[k].float()) for k in stored)


def _pipeline_folder(tmp_path: Path, suffixes=(".pth",)) -> Path:
    assert AUDIO_CASE is not None, "no audio-mode parity case found"
    return make_weights_folder(AUDIO_CASE, _case(AUDIO_CASE), tmp_path, suffixes)


def test_pth_and_safetensors_load_identical_models(tmp_path: Path) -> None:
    from_pth = load_echomimic(_pipeline_folder(tmp_path / "a", (".pth",)), "audio")
    from_st = load_echomimic(_pipeline_folder(tmp_path / "b", (".safetensors",)), "audio")
    for first, second in zip(from_pth.modules(), from_st.modules()):
        a, b = first.state_dict(), second.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_safetensors_preferred_when_both_exist(tmp_path: Path) -> None:
    folder = _pipeline_folder(tmp_path, (".pth", ".safetensors"))
    files = variant_weight_files(folder, "audio")
    assert all(path.suffix == ".safetensors" for path in files.values())


def test_missing_files_are_listed_with_where_to_get_them(tmp_path: Path) -> None:
    folder = _pipeline_folder(tmp_path)
    (folder / "motion_module.pth").unlink()
    with pytest.raises(WeightsError) as error:
        load_echomimic(folder, "audio")
    assert "motion_module.pth" in str(error.value) and "BadToBest/EchoMimic" in str(error.value)
    with pytest.raises(WeightsError, match="denoising_unet_acc.pth"):
        variant_weight_files(folder, "audio_acc")
    with pytest.raises(InputError, match="Unknown EchoMimic variant 'v3'; choose one of audio, "):
        variant_weight_files(folder, "v3")


def test_wrong_variant_file_is_named_with_offending_keys(tmp_path: Path) -> None:
    assert POSE_CASE is not None
    folder = _pipeline_folder(tmp_path)
    (folder / "face_locator.pth").unlink()
    (folder / "face_locator.pth").symlink_to(POSE_CASE / "weights" / "face_locator.pth")  # 3-channel file
    with pytest.raises(WeightsError) as error:
        load_echomimic(folder, "audio")
    message = str(error.value)
    assert "face_locator.pth" in message and "conv_in.weight" in message and "shape" in message


def test_file_of_another_model_reports_missing_and_unexpected_keys(tmp_path: Path) -> None:
    folder = _pipeline_folder(tmp_path)
    (folder / "denoising_unet.pth").unlink()
    (folder / "denoising_unet.pth").symlink_to(AUDIO_CASE / "weights" / "motion_module.pth")
    with pytest.raises(WeightsError) as error:
        load_echomimic(folder, "audio")
    message = str(error.value)
    assert "denoising_unet.pth" in message and "missing keys" in message and "unexpected keys" in message


def test_config_that_does_not_match_weights_is_a_clear_error(tmp_path: Path) -> None:
    folder = _pipeline_folder(tmp_path)
    config = json.loads((folder / "unet_config.json").read_text())
    config["block_out_channels"] = [c * 2 for c in config["block_out_channels"]]
    (folder / "unet_config.json").unlink()
    (folder / "unet_config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="does not fit the model"):
        load_echomimic(folder, "audio")


def test_truncated_weight_files_are_clear_errors(tmp_path: Path) -> None:
    for name in ("reference_unet.pth", "reference_unet.safetensors"):
        source = AUDIO_CASE / "weights" / name
        broken = tmp_path / name
        broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        with pytest.raises(WeightsError, match="download it again"):
            read_state_dict(broken)
    with pytest.raises(WeightsError, match="unknown weight format"):
        (tmp_path / "weights.ckpt2").write_bytes(b"x")
        read_state_dict(tmp_path / "weights.ckpt2")


class _RunsCode:
    """Unpickling this calls os.system: the payload a malicious .pth would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "reference_unet.pth"
    torch.save({"conv_in.weight": torch.zeros(1), "payload": _RunsCode(marker)}, evil)
    with pytest.raises(WeightsError, match="refused"):
        read_state_dict(evil)
    assert not marker.exists()
    # The same payload as a legacy (non-zip) pickle file.
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(WeightsError):
        read_state_dict(legacy)
    assert not marker.exists()


def test_converter_writes_fp16_and_fp32_safetensors_that_load(tmp_path: Path) -> None:
    folder = tmp_path / "release"
    folder.mkdir()
    for source in (AUDIO_CASE / "weights").glob("*.pth"):
        shutil.copy(source, folder / source.name)
    written = convert_folder(folder, dtype="fp16")
    assert {p.name for p in written} == {p.with_suffix(".safetensors").name for p in folder.glob("*.pth")}
    motion = read_state_dict(folder / "motion_module.safetensors")
    assert all(t.dtype == (torch.float32 if k.endswith(".pe") else torch.float16) for k, t in motion.items())
    original = read_state_dict(folder / "motion_module.pth")
    assert all(torch.equal(original[k].float(), motion[k].float()) for k in original)  # fp16 values: exact
    fp32 = convert_file(folder / "face_locator.pth", tmp_path / "fl32.safetensors", dtype="fp32")
    assert all(t.dtype == torch.float32 for t in read_state_dict(fp32).values())
    for config in (AUDIO_CASE / "config").glob("*.json"):
        shutil.copy(config, folder / config.name)
    models = load_echomimic(folder, "audio")  # picks the converted files
    assert models.variant == "audio" and models.conditioning == "face_mask" and not models.accelerated


def test_loading_precision_and_device_options(tmp_path: Path) -> None:
    models = load_echomimic(_pipeline_folder(tmp_path), "audio", dtype=torch.float16)
    assert models.dtype == torch.float16 and models.device.type == "cpu"
    pe = [t for k, t in models.denoising_unet.state_dict().items() if k.endswith(".pe")]
    assert pe and all(not t.requires_grad for t in models.denoising_unet.parameters())


def test_convert_command(tmp_path: Path, capsys) -> None:
    from echomimic.cli import main

    shutil.copy(AUDIO_CASE / "weights" / "face_locator.pth", tmp_path / "face_locator.pth")
    assert main(["convert", str(tmp_path), "--dtype", "fp32"]) == 0
    assert "face_locator.safetensors" in capsys.readouterr().out
    converted = read_state_dict(tmp_path / "face_locator.safetensors")
    assert all(t.dtype == torch.float32 for t in converted.values())
    assert main(["convert", str(tmp_path)]) == 0  # already converted: nothing written
    assert "nothing to convert" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "missing")]) == 2
