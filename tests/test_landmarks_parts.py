"""Part selection and merging ("audio + selected landmarks")."""

from __future__ import annotations

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.landmarks import PART_NAMES, LandmarkSequence, draw_landmarks, merge_parts, select_parts
from echomimic.landmarks import topology as topo
from echomimic.landmarks.parts import PART_POINTS, part_point_indices


def face_sequence(frames: int, offset: float = 0.0, seed: int = 0) -> LandmarkSequence:
    rng = np.random.default_rng(seed)
    points = np.empty((frames, 478, 3), dtype=np.float32)
    points[..., 0] = rng.uniform(150, 350, (frames, 478)) + offset
    points[..., 1] = rng.uniform(120, 380, (frames, 478))
    points[..., 2] = 0.0
    return LandmarkSequence(points, 512, 512)


def test_part_names_are_stable_and_cover_their_points() -> None:
    assert PART_NAMES == ("eyebrows", "eyes", "pupils", "nose", "mouth")
    assert {468, 473} <= set(PART_POINTS["pupils"])
    assert topo.NOSE_TIP in PART_POINTS["nose"]
    assert {61, 291, 13, 14} <= set(PART_POINTS["mouth"])
    assert len(PART_POINTS["eyes"]) == 32 and len(PART_POINTS["eyebrows"]) == 20
    # Parts do not share points.
    all_points = [i for name in PART_NAMES for i in PART_POINTS[name]]
    assert len(all_points) == len(set(all_points))


def test_select_parts_hides_everything_else() -> None:
    sequence = face_sequence(2)
    selected = select_parts(sequence, ["eyes", "pupils"])
    kept = part_point_indices(["eyes", "pupils"])
    assert np.isfinite(selected.points[:, kept]).all()
    np.testing.assert_array_equal(selected.points[:, kept], sequence.points[:, kept])
    hidden = np.setdiff1d(np.arange(478), kept)
    assert np.isnan(selected.points[:, hidden]).all()
    assert np.isfinite(sequence.points).all()  # the input is untouched
    assert np.array_equal(select_parts(sequence, "nose").points[:, 4], sequence.points[:, 4])


def test_merge_takes_parts_from_donor_and_the_rest_from_a_still_base() -> None:
    base = face_sequence(1, seed=1)  # e.g. the portrait's own landmarks
    donor = face_sequence(4, offset=5.0, seed=2)  # e.g. aligned landmarks of a driving video
    donor.detected[2] = False
    merged = merge_parts(base, donor, ["eyes", "pupils", "eyebrows"])
    assert merged.num_frames == 4 and merged.detected.tolist() == [True, True, False, True]
    from_donor = part_point_indices(["eyes", "pupils", "eyebrows"])
    np.testing.assert_array_equal(merged.points[:, from_donor], donor.points[:, from_donor])
    rest = np.setdiff1d(np.arange(478), from_donor)
    np.testing.assert_array_equal(merged.points[:, rest], np.repeat(base.points[:, rest], 4, axis=0))
    # Audio + selected landmarks: the mouth left to the audio is not drawn.
    drawn = draw_landmarks(select_parts(merged, ["eyebrows", "eyes", "pupils", "nose"]), 512, 512, draw_mouth=True)
    colours = {tuple(int(v) for v in c) for c in np.unique(np.rint(drawn.reshape(-1, 3) * 255), axis=0)}
    assert not colours & {colour for _, colour in topo.LIPS_COLOURS}
    assert topo.LEFT_EYE_COLOUR in colours


def test_merge_of_equal_lengths() -> None:
    base, donor = face_sequence(3, seed=1), face_sequence(3, seed=2)
    merged = merge_parts(base, donor, ["mouth"])
    mouth = part_point_indices("mouth")
    np.testing.assert_array_equal(merged.points[:, mouth], donor.points[:, mouth])
    np.testing.assert_array_equal(merged.points[:, 10], base.points[:, 10])  # forehead: not mouth


def test_bad_part_input_is_a_clear_error() -> None:
    sequence = face_sequence(2)
    with pytest.raises(InputError, match="ears"):
        select_parts(sequence, ["eyes", "ears"])
    with pytest.raises(InputError, match="eyebrows"):  # the message lists the valid names
        merge_parts(sequence, sequence, ["teeth"])
    with pytest.raises(InputError, match="frames"):
        merge_parts(face_sequence(2), face_sequence(3), ["eyes"])
    other_size = LandmarkSequence(sequence.points, 256, 256)
    with pytest.raises(InputError, match="align"):
        merge_parts(sequence, other_size, ["eyes"])
