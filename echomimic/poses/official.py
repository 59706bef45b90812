"""Reading the official EchoMimic V2 pose data without running any code from it.

The official demo pose folders (`assets/halfbody_demo/pose/<name>/<index>.npy`) hold one numpy file per
frame: a 0-d object array whose pickle is a dict ``{"bodies": {"candidate", "subset", "score"},
"hands": (2, 21, 2), "hands_score": (2, 21), "faces": (1, 68, 2), "faces_score": (1, 68), "num": int,
"draw_pose_params": [H, W, row0, row1, col0, col1]}`` with coordinates normalised to the frame.
`np.load(allow_pickle=True)` would run whatever a crafted file asks for; `read_official_pose_file`
unpickles with an allow-list instead: numpy's array reconstruction and plain containers, numbers and
strings. Anything else is refused by name before it is imported or called, and every array and dtype state
is checked before numpy sees it (sizes, kinds, and no object array built from raw bytes), with limits on
elements and depth.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .sequence import NUM_HAND_POINTS, NUM_HANDS, HandPoseSequence

_MAX_FILE_BYTES = 16 * 1024 * 1024  # a demo frame is ~4 kB; anything huge is not a pose file
_MAX_ELEMENTS = 1_000_000  # array elements and container items in one file (a demo frame has ~400)
_MAX_DEPTH = 32  # nesting of dicts / lists / object arrays (a demo frame has 4)


def _multiarray() -> Any:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _refuse(message: str) -> Any:
    raise pickle.UnpicklingError(message)


def _element_count(shape: Any) -> int:
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and 0 <= n for n in shape):
        _refuse(f"an array shape of {type(shape).__name__} {shape!r:.60}")
    count = 1
    for n in shape:
        count *= n
        if count > _MAX_ELEMENTS:
            _refuse(f"an array of shape {shape} (more than {_MAX_ELEMENTS} elements)")
    return count


def _safe_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """numpy.dtype for plain kinds only: numbers, booleans and the object dtype of the pickled dict."""
    if not isinstance(spec, str):
        _refuse(f"a dtype from {type(spec).__name__}")
    dtype = np.dtype(spec)
    if dtype.kind not in "biufO" or dtype.fields is not None or dtype.subdtype is not None:
        _refuse(f"a {dtype} dtype")
    return dtype


def _safe_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's ``_reconstruct``: only a plain ndarray, of a bounded size (its data comes with BUILD)."""
    if cls is not np.ndarray:
        _refuse(f"reconstructing a {getattr(cls, '__name__', type(cls).__name__)}")
    _element_count(shape)
    return _multiarray()._reconstruct(np.ndarray, shape, typecode)


def _safe_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's ``scalar``: a number from exactly its bytes, never an object from bytes."""
    if (
        not isinstance(dtype, np.dtype)
        or dtype.kind not in "biuf"
        or not isinstance(data, bytes)
        or len(data) != dtype.itemsize
    ):
        _refuse("a numpy scalar that is not a plain number")
    return _multiarray().scalar(dtype, data)


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 pickles
    _ALLOWED_GLOBALS[(_module, "_reconstruct")] = _safe_reconstruct
    _ALLOWED_GLOBALS[(_module, "scalar")] = _safe_scalar


class _PlainDataUnpickler(pickle._Unpickler):
    """Python's own unpickler (iterative: deep nesting cannot overflow the C stack) that resolves only
    numpy's array, dtype and scalar reconstruction, and checks every ``BUILD`` (``__setstate__``) before
    numpy sees it: a dtype keeps exactly the state numpy gives it (no cleared flags: an object dtype can
    never be filled from raw bytes), and an array's data has its declared size, as objects for the object
    dtype and as bytes for numbers."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused import of {module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")

    def load_build(self) -> None:
        state = self.stack[-1]  # type: ignore[attr-defined]  # pickle._Unpickler's own stack
        target = self.stack[-2]  # type: ignore[attr-defined]
        if isinstance(target, np.dtype):
            if state != target.__reduce__()[2]:
                _refuse(f"a {target} dtype with altered state")
        elif isinstance(target, np.ndarray):
            if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)):
                _refuse("an array with a malformed state")
            _version, shape, dtype, _fortran, data = state
            count = _element_count(shape)
            if dtype.hasobject:
                if dtype.kind != "O" or not isinstance(data, list) or len(data) != count:
                    _refuse("an object array whose items are not given as objects")
            elif dtype.kind not in "biuf" or not isinstance(data, bytes) or len(data) != count * dtype.itemsize:
                _refuse("a number array whose data does not match its shape")
        else:
            _refuse(f"setting the state of a {type(target).__name__}")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]


def _check_plain(value: Any, where: str) -> None:
    """Accept only arrays of numbers, dicts with string keys, lists/tuples, numbers, strings, None: each object
    visited once (shared references cannot multiply the walk), at most _MAX_DEPTH deep and _MAX_ELEMENTS
    items in all; iterative, so no recursion limit is reached."""
    seen: set[int] = set()
    budget = _MAX_ELEMENTS
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise InputError(f"{where} is nested more than {_MAX_DEPTH} levels deep; pose files are shallow.")
        if isinstance(item, (dict, list, tuple, np.ndarray)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            size = item.size if isinstance(item, np.ndarray) else len(item)
            budget -= size
            if budget < 0:
                raise InputError(f"{where} holds more than {_MAX_ELEMENTS} values; it is not a pose file.")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InputError(f"{where} has a non-text key of type {type(key).__name__}.")
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, np.ndarray):
            if item.dtype == object:
                stack.extend((child, depth + 1) for child in item.reshape(-1).tolist())
            elif item.dtype.kind not in "biuf":
                raise InputError(f"{where} holds a {item.dtype} array; pose files hold numbers only.")
        elif item is not None and not isinstance(item, (bool, int, float, str, np.number, np.bool_)):
            raise InputError(
                f"{where} holds a {type(item).__name__}; pose files hold arrays, dicts, lists and numbers only."
            )


def read_official_pose_file(path: str | Path) -> dict[str, Any]:
    """The dict stored in one official pose `.npy` file, read without running code from it.

    Raises InputError naming the refused import when the file asks for anything beyond numpy arrays
    and plain values (a malicious or foreign pickle), or when it is not a pose file at all.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Pose file {path} does not exist; check the path.")
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise InputError(f"{path} is too large to be an official pose file.")
    stream = io.BytesIO(path.read_bytes())
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(stream)  # the header only: no pickle is read here
    except (ValueError, OSError) as error:
        raise InputError(f"{path} is not a numpy .npy file ({error}); give an official pose folder.") from error
    if not dtype.hasobject or shape != ():
        raise InputError(f"{path} holds a {dtype} array of shape {shape}, not an official pose (a pickled dict).")
    try:
        value = _PlainDataUnpickler(stream).load()
    except pickle.UnpicklingError as error:
        raise InputError(
            f"Refused to read {path}: {error}. It is not an official pose file (official files "
            "hold only numpy arrays and numbers); nothing in it was run."
        ) from error
    except Exception as error:  # truncated or corrupt pickles raise many types
        raise InputError(
            f"{path} is corrupt or not an official pose file ({type(error).__name__}: {error})."
        ) from error
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        value = value.item()
    _check_plain(value, path.name)
    if not isinstance(value, dict):
        raise InputError(f"{path} does not hold a pose dict (got {type(value).__name__}).")
    return value


def _hands_of(pose: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        hands = np.asarray(pose["hands"], dtype=np.float64)
        scores = np.asarray(pose["hands_score"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{where} has no usable 'hands' / 'hands_score' ({error}).") from error
    if hands.shape != (NUM_HANDS, NUM_HAND_POINTS, 2) or scores.shape != (NUM_HANDS, NUM_HAND_POINTS):
        raise InputError(
            f"{where}: 'hands' must be (2, 21, 2) and 'hands_score' (2, 21), got {hands.shape} and {scores.shape}."
        )
    invalid = (hands == -1).all(axis=-1)  # DWPose marks points it did not find with (-1, -1)
    hands[invalid] = np.nan
    scores[invalid] = np.nan
    return hands, scores


def _shoulders_of(pose: dict[str, Any]) -> np.ndarray:
    """[2, 2] (person's left, right shoulder) from the DWPose/OpenPose body (5 = left, 2 = right), or NaN."""
    try:
        candidate = np.asarray(pose["bodies"]["candidate"], dtype=np.float64)
        subset = np.asarray(pose["bodies"]["subset"], dtype=np.float64)
        left, right = int(subset[0, 5]), int(subset[0, 2])
        if left < 0 or right < 0:
            raise ValueError("no shoulders")
        return candidate[[left, right], :2]
    except (KeyError, TypeError, ValueError, IndexError):
        return np.full((2, 2), np.nan)


def _numbered_files(folder: Path) -> list[Path]:
    files = [entry for entry in folder.iterdir() if entry.is_file() and re.fullmatch(r"\d+\.npy", entry.name)]
    return sorted(files, key=lambda entry: int(entry.stem))


def import_official_pose_folder(
    folder: str | Path, *, progress: Callable[[int, int], None] | None = None
) -> HandPoseSequence:
    """Import an official demo pose folder (`<index>.npy` per frame, from 0) as a HandPoseSequence.

    Every file is read with `read_official_pose_file` (no code from the files is run). The frame size
    comes from the files' draw_pose_params (768x768 in the official demos); the shoulders come from the
    stored body, so the poses can be aligned to your reference person.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"Pose folder {folder} does not exist; give a folder like "
            "assets/halfbody_demo/pose/01 from the EchoMimic V2 repository."
        )
    files = _numbered_files(folder)
    if not files:
        raise InputError(f"{folder} has no numbered pose files (0.npy, 1.npy, ...); give an official pose folder.")
    expected = list(range(len(files)))
    if [int(entry.stem) for entry in files] != expected:
        raise InputError(f"{folder}: pose files must be numbered 0..{len(files) - 1} without gaps.")
    points, scores, shoulders = [], [], []
    size: tuple[int, int] | None = None
    for index, entry in enumerate(files):
        pose = read_official_pose_file(entry)
        hands, hand_scores = _hands_of(pose, str(entry))
        params = pose.get("draw_pose_params")
        try:
            height, width, row0, row1, col0, col1 = (int(v) for v in params)  # type: ignore[union-attr]
        except (TypeError, ValueError) as error:
            raise InputError(f"{entry} has no valid draw_pose_params [H, W, r0, r1, c0, c1].") from error
        if (row0, row1, col0, col1) != (0, height, 0, width) or height <= 0 or width <= 0:
            raise InputError(
                f"{entry}: draw_pose_params {params} place the pose in part of the frame; "
                "only full-frame poses (as in the official demos) can be imported."
            )
        if size is None:
            size = (width, height)
        elif size != (width, height):
            raise InputError(f"{entry} is {width}x{height} but the first file is {size[0]}x{size[1]}.")
        points.append(hands)
        scores.append(hand_scores)
        shoulders.append(_shoulders_of(pose))
        if progress is not None:
            progress(index + 1, len(files))
    assert size is not None
    return HandPoseSequence(np.stack(points), size[0], size[1], np.stack(scores), np.stack(shoulders))


def hand_poses_from_keypoint_records(records: list[dict[str, Any]], width: int, height: int) -> HandPoseSequence:
    """A sequence from keypoint records ``[{"hands": (2, 21, 2), "hands_score": (2, 21)}, ...]``.

    This is the layout of the parity cases' `inputs/pose_keypoints.json` (the values the official
    drawing was given). width, height: the frame size the points are normalised to.
    """
    if not isinstance(records, list) or not records:
        raise InputError("Keypoint records must be a non-empty list of {'hands', 'hands_score'} entries.")
    hands = [_hands_of(record, f"record {index}") for index, record in enumerate(records)]
    return HandPoseSequence(np.stack([h for h, _ in hands]), width, height, np.stack([s for _, s in hands]))
