"""Paste back (echomimic.compose): crop info arithmetic, feathered blending, colour match, chunking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from echomimic.compose import CropInfo, box_blend_mask, iter_paste_back, paste_back
from echomimic.errors import InputError
from echomimic.landmarks.face_crop import face_mask_and_crop, grow_box, square_crop_box
from tests.parity_cases import MEDIAPIPE_ROOT


def _random_picture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # 8-bit values, as pictures loaded from files are.
    return torch.randint(0, 256, (height, width, 3), generator=generator).float() / 255.0


def _cut(picture: torch.Tensor, info: CropInfo) -> torch.Tensor:
    x0, y0, x1, y1 = info.box
    return picture[y0:y1, x0:x1]


@pytest.mark.parametrize("color_match", [False, True])
def test_unchanged_crop_reproduces_the_original(color_match: bool) -> None:
    """Catches a paste that shifts the box by a pixel, touches pixels outside the feather band, or a blend
    or colour match that changes an unchanged crop (exact outside the band, within 1/255 inside)."""
    picture = _random_picture(97, 131)
    info = CropInfo((23, 11, 80, 68), (131, 97), (57, 57))  # odd sizes, no resize
    frames = _cut(picture, info)[None].repeat(3, 1, 1, 1)
    feather = 7
    out = paste_back(frames, info, picture, feather=feather, color_match=color_match, color_band=5)
    assert out.shape == (3, 97, 131, 3)
    x0, y0, x1, y1 = info.box
    outside = torch.ones(97, 131, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    band = ~outside
    band[y0 + feather : y1 - feather, x0 + feather : x1 - feather] = False
    for frame in out:
        assert torch.equal(frame[outside], picture[outside])
        assert float((frame[band] - picture[band]).abs().max()) <= 1 / 255
        assert float((frame - picture).abs().max()) <= 1 / 255


def test_generated_content_shows_inside_and_fades_at_the_edge() -> None:
    """Catches a mask that is inverted, not feathered, or feathered on the wrong side of the box edge."""
    picture = torch.zeros(64, 80, 3)
    info = CropInfo((20, 10, 52, 42), (80, 64), (16, 16))  # crop shrunk to half size
    frames = torch.ones(2, 16, 16, 3)
    out = paste_back(frames, info, picture, feather=6)
    assert torch.equal(out[:, 26, 36], torch.ones(2, 3))  # the box centre is the generated frame
    row = out[0, 26, 14:40, 0]
    assert float(row[:6].max()) == 0.0  # left of the box: untouched
    ramp = out[0, 26, 20:26, 0]
    assert bool((ramp[1:] > ramp[:-1]).all()) and 0 < float(ramp[0]) < 0.2 and float(ramp[-1]) > 0.8


@pytest.mark.parametrize("size", [(101, 77), (77, 101), (63, 63), (512, 333)])
def test_box_arithmetic_round_trips_for_odd_sizes_and_border_crops(size: tuple[int, int]) -> None:
    """Catches off-by-one box maths: crop <-> original coordinates, boxes from face_crop touching the
    picture border (no feather where there is nothing to blend with), and pasting an unresized crop back."""
    width, height = size
    picture = _random_picture(height, width, seed=width)
    for face in [(0, 0, width // 3, height // 3), (width - 20, height - 15, width, height), (5, 7, 30, 41)]:
        crop_box = square_crop_box(grow_box(face, 0.5, width, height), width, height)
        x0, y0, x1, y1 = crop_box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and x1 - x0 == y1 - y0
        for crop_size in [(x1 - x0, y1 - y0), (64, 48), (129, 129)]:
            info = CropInfo(crop_box, (width, height), crop_size)
            for point in [(x0, y0), (x1, y1), (x0 + 3.5, y1 - 1.25)]:
                back = info.to_original(*info.to_crop(*point))
                assert back == pytest.approx(point, abs=1e-9)
            cx, cy = info.to_crop(x1, y1)
            assert (cx, cy) == pytest.approx(crop_size)
            weights = box_blend_mask(info, 8)
            assert weights.shape == (y1 - y0, x1 - x0)
            # A side on the picture border is not faded.
            assert float(weights[:, 0].min() if x0 > 0 else 0) < 0.1
            if x0 == 0:
                assert float(weights[weights.shape[0] // 2, 0]) == 1.0
            if y1 == height:
                assert float(weights[-1, weights.shape[1] // 2]) == 1.0
        info = CropInfo(crop_box, (width, height), (x1 - x0, y1 - y0))
        out = paste_back(_cut(picture, info)[None], info, picture, feather=4)
        assert float((out[0] - picture).abs().max()) <= 1 / 255


def test_padded_box_leaving_the_picture_is_clipped() -> None:
    """Catches a crash or a shifted paste when the crop box extends past the picture (a padded crop)."""
    picture = _random_picture(40, 50)
    info = CropInfo((-10, 30, 20, 60), (50, 40), (30, 30))
    frames = torch.ones(1, 30, 30, 3)
    out = paste_back(frames, info, picture, feather=0)
    assert torch.equal(out[0, 30:40, 0:20], torch.ones(10, 20, 3))
    assert torch.equal(out[0, :30], picture[:30])
    assert torch.equal(out[0, 30:, 20:], picture[30:, 20:])
    with pytest.raises(InputError, match="outside"):
        CropInfo((60, 0, 90, 30), (50, 40), (30, 30))


def test_face_mask_region_leaves_the_rest_of_the_box_alone() -> None:
    """Catches the face-mask option blending the whole box, or ignoring the margin."""
    picture = torch.zeros(100, 100, 3)
    info = CropInfo((10, 10, 90, 90), (100, 100), (40, 40))
    mask = torch.zeros(40, 40)
    mask[15:25, 15:25] = 1.0  # original pixels 40..60
    out = paste_back(
        torch.ones(1, 40, 40, 3), info, picture, region="face mask", face_mask=mask, mask_margin=6, feather=4
    )
    assert float(out[0, 50, 50, 0]) == 1.0
    assert float(out[0, 50, 35, 0]) > 0.9  # inside the margin
    assert float(out[0, 50, 20:27].abs().max()) == 0.0  # in the box, beyond margin + feather
    with pytest.raises(InputError, match="face mask"):
        paste_back(torch.ones(1, 40, 40, 3), info, picture, region="face mask")


def test_colour_match_moves_the_crop_towards_the_original_border() -> None:
    """Catches a colour match that does nothing or matches the wrong statistics."""
    picture = torch.full((60, 60, 3), 0.5)
    info = CropInfo((15, 15, 45, 45), (60, 60), (30, 30))
    frames = torch.full((1, 30, 30, 3), 0.8)
    plain = paste_back(frames, info, picture, feather=0)
    matched = paste_back(frames, info, picture, feather=0, color_match=True, color_band=4)
    assert float(plain[0, 30, 30, 0]) == pytest.approx(0.8)
    assert float(matched[0, 30, 30, 0]) == pytest.approx(0.5, abs=1e-3)


def test_frames_are_processed_in_bounded_chunks() -> None:
    """Catches a paste that materialises every frame's working tensors at once (memory growing with the
    video), or chunking that changes the result."""
    picture = _random_picture(48, 64)
    info = CropInfo((8, 4, 40, 36), (64, 48), (16, 16))
    frames = torch.rand(11, 16, 16, 3, generator=torch.Generator().manual_seed(3))
    sizes = [part.shape[0] for part in iter_paste_back(frames, info, picture, chunk=4)]
    assert sizes == [4, 4, 3]
    assert torch.equal(paste_back(frames, info, picture, chunk=1), paste_back(frames, info, picture, chunk=11))
    # Streaming holds one chunk: parts are produced lazily, not computed up front.
    stream = iter_paste_back(frames, info, picture, chunk=2)
    first = next(stream)
    assert first.shape == (2, 48, 64, 3)


def test_bad_inputs_are_clear_errors() -> None:
    """Catches tracebacks instead of one-line InputErrors for the common wiring mistakes."""
    picture = _random_picture(48, 64)
    info = CropInfo((8, 4, 40, 36), (64, 48), (16, 16))
    with pytest.raises(InputError, match="original image is 32x32"):
        paste_back(torch.ones(1, 16, 16, 3), info, torch.zeros(32, 32, 3))
    with pytest.raises(InputError, match="blend region"):
        paste_back(torch.ones(1, 16, 16, 3), info, picture, region="hair")
    with pytest.raises(InputError, match="empty"):
        CropInfo((5, 5, 5, 9), (64, 48), (16, 16))
    assert CropInfo.from_dict(info.to_dict()) == info


def test_real_face_crop_pasted_back() -> None:
    """Catches a FaceCrop whose crop_info does not describe the crop it made: pasting the (resized) crop back
    must land on the same pixels of the astronaut picture."""
    assert MEDIAPIPE_ROOT.is_dir(), f"MediaPipe models missing at {MEDIAPIPE_ROOT}"
    picture = skimage_data.astronaut().astype(np.float32) / 255.0
    canvas = np.zeros((600, 700, 3), dtype=np.float32)  # the portrait on a larger canvas
    canvas[40:552, 130:642] = picture
    result = face_mask_and_crop(canvas, size=(128, 128), models_dir=MEDIAPIPE_ROOT)
    info = result.crop_info
    assert info.original_size == (700, 600) and info.crop_size == (128, 128)
    assert info.box == result.crop_box
    out = paste_back(torch.from_numpy(result.image)[None], info, torch.from_numpy(canvas), feather=8)
    x0, y0, x1, y1 = info.box
    error = (out[0, y0:y1, x0:x1] - torch.from_numpy(canvas[y0:y1, x0:x1])).abs().mean()
    assert float(error) < 0.05  # a 4x downscale and back: blurry, not shifted
    uncropped = face_mask_and_crop(canvas, crop=False, models_dir=MEDIAPIPE_ROOT).crop_info
    assert uncropped.box == (0, 0, 700, 600)


@pytest.fixture(scope="module")
def node_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.comfy_stubs import extension_submodule, install_stub_modules

    install_stub_modules(tmp_path_factory.mktemp("comfy_models"))
    return extension_submodule("nodes.compose_nodes")


def test_paste_back_node_returns_full_size_frames(node_module: Any) -> None:
    """Catches the node losing the original size, its combo values drifting from the library's, missing
    tooltips, or wiring mistakes reaching the user as tracebacks instead of one-line messages."""
    import comfy.utils

    from echomimic.compose import BLEND_REGIONS

    node_class = node_module.EchoMimicPasteBack
    assert tuple(node_module.BLEND_REGIONS) == BLEND_REGIONS
    inputs = node_class.INPUT_TYPES()
    for group in inputs.values():
        for name, spec in group.items():
            assert spec[1].get("tooltip"), name
    picture = _random_picture(48, 64)[None]
    info = CropInfo((8, 4, 40, 36), (64, 48), (16, 16))
    updates: list[tuple[int, int]] = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    try:
        (out,) = node_class().paste_back(torch.rand(20, 16, 16, 3), info, picture, 8, "whole crop", 16, True, 4)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert out.shape == (20, 48, 64, 3)
    assert updates[-1] == (20, 20) and len(updates) >= 2  # progress per chunk, 100 % at the end
    assert [done for done, _ in updates] == sorted({done for done, _ in updates})  # strictly increasing
    error = extension_submodule_error(node_module)
    with pytest.raises(error, match="face mask"):
        node_class().paste_back(torch.rand(2, 16, 16, 3), info, picture, 8, "face mask", 16, False, 4)
    with pytest.raises(error, match="original image is 32x32"):
        node_class().paste_back(
            torch.rand(2, 16, 16, 3), info, torch.zeros(1, 32, 32, 3), 8, "whole crop", 16, False, 4
        )
    nan_frames = torch.rand(2, 16, 16, 3)
    nan_frames[1, 3, 3, 0] = float("nan")
    with pytest.raises(error, match="images input holds NaN"):  # would come out as NaN frames
        node_class().paste_back(nan_frames, info, picture, 8, "whole crop", 16, False, 4)


def extension_submodule_error(node_module: Any) -> type[Exception]:
    return node_module.EchoMimicNodeError


def test_cli_paste_back_writes_the_full_picture_and_previews(tmp_path: Path) -> None:
    """Catches --paste-back writing the crop (or the wrong size), moving the untouched picture, --save-frames
    losing the crop frames, and --preview-every not writing one PNG per step."""
    from echomimic import cli
    from echomimic.video_io import read_video_frames
    from tests.test_cli import make_weights_dir, parity_case

    case = parity_case("v1_audio")
    weights = make_weights_dir(case, tmp_path / "weights")
    (weights / "mediapipe").mkdir()
    for model in MEDIAPIPE_ROOT.glob("*.tflite"):  # the face detector, as first use would fetch it
        (weights / "mediapipe" / model.name).symlink_to(model)
    picture_path = Path(__file__).resolve().parents[1] / "example_inputs" / "portrait_wide.png"
    out = tmp_path / "full.mp4"
    status = cli.main(
        [
            "generate",
            "--image",
            str(picture_path),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--length",
            "3",
            "--context-frames",
            "4",
            "--context-overlap",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--paste-back",
            "--paste-feather",
            "6",
            "--preview-every",
            "1",
            "--save-frames",
            str(tmp_path / "crop.npy"),
        ]
    )
    assert status == 0
    frames, _ = read_video_frames(out)
    assert tuple(frames.shape[1:3]) == (300, 400)  # the picture's size, not 64x64
    assert np.load(tmp_path / "crop.npy").shape == (3, 64, 64, 3)
    picture = torch.from_numpy(cli.load_rgb_image(picture_path))
    corner = (frames[:, :60, :60] - picture[:60, :60]).abs().mean()
    assert float(corner) < 0.03  # far from the face: the picture itself (up to h264)
    previews = sorted(path.name for path in (tmp_path / "full_previews").iterdir())
    assert previews == ["preview_step_001.png", "preview_step_002.png"]
