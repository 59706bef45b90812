"""Hostile official-pose ``.npy`` files: none may crash, hang or exhaust memory; each is one clear line.

Each file is read in a child process with a 1 GiB address-space limit and a 60 s timeout, so that a
regression shows as a failed test (segfault, MemoryError, timeout), not as a dead test run.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.parity_cases import REPO_ROOT

try:
    from numpy._core import multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray  # type: ignore[no-redef]


def _npy_of_pickle(payload: bytes) -> bytes:
    """A .npy file: a 0-d object array header followed by ``payload`` (as np.save writes object arrays)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "|O", "fortran_order": False, "shape": ()})
    return out.getvalue() + payload


class _Reduce:
    """Pickles as ``function(*args)`` followed by ``BUILD state`` when ``state`` is given."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def _object_array(items: list, dtype) -> _Reduce:
    return _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (), dtype, False, items))


def _flags_cleared_dtype_attack() -> bytes:
    """An object dtype whose flags are cleared, then an object array filled from 8 raw bytes (a pointer)."""
    dtype = _Reduce(np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))
    array = _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), dtype, False, b"\x41" * 8))
    return pickle.dumps(array, protocol=3)


def _reference_bomb() -> bytes:
    """64 levels of [x, x]: small on disk, 2**64 paths for a walk that does not remember what it saw."""
    level: list = []
    for _ in range(64):
        level = [level, level]
    return pickle.dumps(_object_array([{"hands": level}], np.dtype("O")), protocol=3)


def _deep_nesting(depth: int = 200_000) -> bytes:
    """``depth`` nested lists, built with opcodes (pickle.dumps itself would recurse)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def _huge_declared_array() -> bytes:
    """An ndarray that declares 4e9 elements before any data arrives."""
    return pickle.dumps(_Reduce(multiarray._reconstruct, (np.ndarray, (4_000_000_000,), b"b")), protocol=3)


def _bytes_as_objects() -> bytes:
    """An object array (normal dtype state) whose data is given as raw bytes instead of objects."""
    return pickle.dumps(_object_array(b"\x41" * 8, np.dtype("O")), protocol=3)  # type: ignore[arg-type]


def _number_array_size_lie() -> bytes:
    """A float array that declares 1000 elements and brings 8 bytes."""
    state = (1, (1000,), np.dtype("<f8"), False, b"\x00" * 8)
    return pickle.dumps(
        _object_array([{"hands": _Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"), state)}], np.dtype("O")),
        protocol=3,
    )


HOSTILE = {
    "flags_cleared_dtype": (_flags_cleared_dtype_attack, "altered state"),
    "reference_bomb": (_reference_bomb, "more than"),
    "deep_nesting": (_deep_nesting, "nested more than"),
    "huge_declared_array": (_huge_declared_array, "more than 1000000 elements"),
    "object_array_from_bytes": (_bytes_as_objects, "not given as objects"),
    "size_lie": (_number_array_size_lie, "does not match its shape"),
}

_CHILD = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from echomimic.errors import InputError
    from echomimic.poses import read_official_pose_file
    try:
        read_official_pose_file(sys.argv[1])
    except InputError as error:
        print("error:", error)
        sys.exit(2)
    print("read without an error")
""")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pose_files_are_one_line_without_crash_hang_or_memory(tmp_path: Path, name: str) -> None:
    """Catches the importer segfaulting on an object array built from raw bytes (dtype flags cleared), hanging
    on a reference bomb, overflowing the stack on deep nesting, allocating a declared 4e9-element array, or
    taking an array whose data does not match its shape: exit 2 with one line, within the limits."""
    make, expected = HOSTILE[name]
    path = tmp_path / "0.npy"
    path.write_bytes(_npy_of_pickle(make()))
    assert path.stat().st_size < 1_000_000
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-2000:])
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stdout
    assert "Traceback" not in result.stderr


def test_an_official_structure_still_reads(tmp_path: Path) -> None:
    """Catches the hardened reader refusing what the official demo files hold (a 0-d object array of a dict of
    float arrays, numbers and lists), written by numpy itself."""
    pose = {
        "bodies": {"candidate": np.zeros((18, 2)), "subset": -np.ones((1, 18)), "score": np.ones((1, 18))},
        "hands": np.full((2, 21, 2), 0.5),
        "hands_score": np.ones((2, 21)),
        "faces": np.zeros((1, 68, 2)),
        "faces_score": np.ones((1, 68)),
        "num": 1,
        "draw_pose_params": [768, 768, 0, 768, 0, 768],
    }
    np.save(tmp_path / "0.npy", np.array(pose, dtype=object), allow_pickle=True)
    from echomimic.poses import read_official_pose_file

    value = read_official_pose_file(tmp_path / "0.npy")
    assert np.array_equal(value["hands"], pose["hands"]) and value["num"] == 1
