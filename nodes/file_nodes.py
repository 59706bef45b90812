"""Save and load landmark / hand-pose sequences as JSON files, so motion is extracted once and reused.

Save nodes write `<prefix>_00001.json`, `_00002`, ... into ComfyUI's output folder (atomically, never
overwriting); load nodes list the *.json files of ComfyUI's input folder (and its subfolders). The JSON
formats are the library's documented, versioned ones (LandmarkSequence / HandPoseSequence to_json).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from .common import (
    HAND_POSES_TYPE,
    HANDS_CATEGORY,
    LANDMARKS_CATEGORY,
    LANDMARKS_TYPE,
    EchoMimicNodeError,
    tooltip,
    user_errors,
)

JSON_SUFFIX = ".json"
_COUNTER = re.compile(r"_(\d{5,})\.json$")


def _output_folder_and_name(filename_prefix: str) -> tuple[str, str]:
    """(absolute folder inside ComfyUI's output folder, file name stem) for a prefix like 'echomimic/motion'."""
    import folder_paths

    output_dir = os.path.abspath(folder_paths.get_output_directory())
    prefix = os.path.normpath(filename_prefix.strip() or "echomimic")
    folder = os.path.abspath(os.path.join(output_dir, os.path.dirname(prefix)))
    name = os.path.basename(prefix)
    if os.path.isabs(prefix) or os.path.commonpath((output_dir, folder)) != output_dir or name in ("", ".", ".."):
        raise EchoMimicNodeError(
            f"filename_prefix {filename_prefix!r} must be a name inside ComfyUI's output folder, "
            "for example echomimic/landmarks."
        )
    return folder, name


def next_output_path(filename_prefix: str) -> tuple[str, str]:
    """(absolute path, path relative to the output folder) of the next free `<prefix>_NNNNN.json`."""
    import folder_paths

    from ..echomimic.atomic import check_output_folder

    folder, name = _output_folder_and_name(filename_prefix)
    check_output_folder(folder)
    taken = [
        int(match.group(1))
        for entry in os.listdir(folder)
        if entry.startswith(name + "_") and (match := _COUNTER.search(entry)) and entry[: match.start()] == name
    ]
    path = os.path.join(folder, f"{name}_{max(taken, default=0) + 1:05d}{JSON_SUFFIX}")
    return path, os.path.relpath(path, os.path.abspath(folder_paths.get_output_directory()))


_FORMAT_FIELD = re.compile(rb'"format"\s*:\s*"([^"]{1,64})"')


def json_format(path: str) -> str | None:
    """The ``format`` field of an EchoMimic JSON file (read from its first 4 kB: the field comes first), or None
    when the file cannot be read or has none."""
    try:
        with open(path, "rb") as handle:
            match = _FORMAT_FIELD.search(handle.read(4096))
    except OSError:
        return None
    return match.group(1).decode("ascii", "replace") if match else None


def input_json_files_of(format_name: str) -> tuple[list[str], int]:
    """The input folder's JSON files whose ``format`` is ``format_name``, and how many others were left out."""
    import folder_paths

    input_dir = folder_paths.get_input_directory()
    names = input_json_files()
    kept = [name for name in names if json_format(os.path.join(input_dir, name)) == format_name]
    return kept, len(names) - len(kept)


def input_json_files() -> list[str]:
    """The *.json files in ComfyUI's input folder and its subfolders, relative, '/'-separated, sorted."""
    import folder_paths

    input_dir = folder_paths.get_input_directory()
    found: list[str] = []
    if os.path.isdir(input_dir):
        for root, dirs, files in os.walk(input_dir):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for file in files:
                if file.lower().endswith(JSON_SUFFIX) and not file.startswith("."):
                    found.append(os.path.relpath(os.path.join(root, file), input_dir).replace(os.sep, "/"))
    return sorted(found, key=str.lower)


def input_file_path(name: str) -> str:
    """The absolute path of `name` (from the file list) inside ComfyUI's input folder."""
    import folder_paths

    input_dir = os.path.abspath(folder_paths.get_input_directory())
    path = os.path.abspath(os.path.join(input_dir, name))
    if not name or os.path.commonpath((input_dir, path)) != input_dir:
        raise EchoMimicNodeError(f"{name!r} is not a file in ComfyUI's input folder.")
    if not os.path.isfile(path):
        raise EchoMimicNodeError(
            f"{name} is not in ComfyUI's input folder ({input_dir}); put the JSON file there "
            "(or save it with an EchoMimic Save node and copy it from the output folder)."
        )
    return path


class _SaveSequence:
    """Shared body of the save nodes; subclasses set the socket type, the default prefix and the wording."""

    SOCKET = ""
    WHAT = ""
    DEFAULT_PREFIX = ""
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("filename",)
    OUTPUT_TOOLTIPS = ("The saved file, relative to ComfyUI's output folder.",)
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = LANDMARKS_CATEGORY

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "sequence": (cls.SOCKET, tooltip(f"The {cls.WHAT} to save.")),
                "filename_prefix": (
                    "STRING",
                    tooltip(
                        "File name inside ComfyUI's output folder (subfolders allowed); _00001.json, _00002.json, ... "
                        "is appended, nothing is overwritten.",
                        default=cls.DEFAULT_PREFIX,
                    ),
                ),
            }
        }

    @user_errors
    def save(self, sequence: Any, filename_prefix: str) -> dict[str, Any]:
        from ..echomimic.atomic import write_text_atomic

        if not hasattr(sequence, "to_json"):
            raise EchoMimicNodeError(f"sequence must be a {self.WHAT} from an EchoMimic node.")
        path, relative = next_output_path(filename_prefix)
        write_text_atomic(path, sequence.to_json())
        relative = relative.replace(os.sep, "/")
        return {"ui": {"text": [relative]}, "result": (relative,)}


class _LoadSequence:
    """Shared body of the load nodes; subclasses set the socket type and `read(text)`."""

    SOCKET = ""
    WHAT = ""
    FORMAT = ""  # the JSON "format" the file list shows
    FUNCTION = "load"
    CATEGORY = LANDMARKS_CATEGORY

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        files, others = input_json_files_of(cls.FORMAT)
        left_out = f" {others} other JSON file(s) of the input folder are not {cls.WHAT}s." if others else ""
        return {
            "required": {
                "file": (
                    files,
                    tooltip(
                        f"A {cls.WHAT} JSON file in ComfyUI's input folder (saved by the EchoMimic Save node; copy it "
                        f"from the output folder, or share it). Refresh the page after adding files.{left_out}"
                    ),
                )
            }
        }

    @classmethod
    def IS_CHANGED(cls, file: str) -> str:
        """Re-run when the file's content changes (it may be edited by hand)."""
        try:
            with open(input_file_path(file), "rb") as handle:
                return hashlib.sha256(handle.read()).hexdigest()
        except (OSError, EchoMimicNodeError):
            return ""

    @classmethod
    def VALIDATE_INPUTS(cls, file: str) -> bool | str:
        try:
            input_file_path(file)
        except EchoMimicNodeError as error:
            return str(error)
        return True

    @staticmethod
    def read(text: str) -> Any:
        raise NotImplementedError

    @user_errors
    def load(self, file: str) -> tuple[Any]:
        path = input_file_path(file)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise EchoMimicNodeError(f"Cannot read {file}: {error}.") from None
        return (self.read(text),)


class EchoMimicSaveLandmarks(_SaveSequence):
    DESCRIPTION = (
        "Saves a face landmark sequence (EchoMimic Extract Landmarks) as JSON in ComfyUI's output folder, "
        "so it can be edited, shared and loaded again without re-running MediaPipe."
    )
    SOCKET = LANDMARKS_TYPE
    WHAT = "landmark sequence"
    FORMAT = "echomimic-landmarks"  # echomimic.landmarks.sequence.JSON_FORMAT
    DEFAULT_PREFIX = "echomimic/landmarks"


class EchoMimicLoadLandmarks(_LoadSequence):
    DESCRIPTION = "Loads a face landmark sequence JSON (from EchoMimic Save Landmarks) from ComfyUI's input folder."
    SOCKET = LANDMARKS_TYPE
    WHAT = "landmark sequence"
    FORMAT = "echomimic-landmarks"  # echomimic.landmarks.sequence.JSON_FORMAT
    RETURN_TYPES = (LANDMARKS_TYPE,)
    RETURN_NAMES = ("landmarks",)
    OUTPUT_TOOLTIPS = ("The landmark sequence, one entry per frame.",)

    @staticmethod
    def read(text: str) -> Any:
        from ..echomimic.landmarks.sequence import LandmarkSequence

        return LandmarkSequence.from_json(text)


class EchoMimicSaveHandPoses(_SaveSequence):
    DESCRIPTION = (
        "Saves a hand pose sequence (EchoMimic V2) as JSON in ComfyUI's output folder, so it can be "
        "edited, shared and loaded again without re-running MediaPipe."
    )
    SOCKET = HAND_POSES_TYPE
    WHAT = "hand pose sequence"
    FORMAT = "echomimic-hand-poses"  # echomimic.poses.sequence.JSON_FORMAT
    CATEGORY = HANDS_CATEGORY
    DEFAULT_PREFIX = "echomimic/hand_poses"


class EchoMimicLoadHandPoses(_LoadSequence):
    DESCRIPTION = "Loads a hand pose sequence JSON (from EchoMimic Save Hand Poses) from ComfyUI's input folder."
    SOCKET = HAND_POSES_TYPE
    WHAT = "hand pose sequence"
    FORMAT = "echomimic-hand-poses"  # echomimic.poses.sequence.JSON_FORMAT
    CATEGORY = HANDS_CATEGORY
    RETURN_TYPES = (HAND_POSES_TYPE,)
    RETURN_NAMES = ("hand_poses",)
    OUTPUT_TOOLTIPS = ("The hand pose sequence, one entry per frame.",)

    @staticmethod
    def read(text: str) -> Any:
        from ..echomimic.poses.sequence import HandPoseSequence

        return HandPoseSequence.from_json(text)


NODE_CLASS_MAPPINGS = {
    "EchoMimicSaveLandmarks": EchoMimicSaveLandmarks,
    "EchoMimicLoadLandmarks": EchoMimicLoadLandmarks,
    "EchoMimicSaveHandPoses": EchoMimicSaveHandPoses,
    "EchoMimicLoadHandPoses": EchoMimicLoadHandPoses,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EchoMimicSaveLandmarks": "EchoMimic Save Landmarks",
    "EchoMimicLoadLandmarks": "EchoMimic Load Landmarks",
    "EchoMimicSaveHandPoses": "EchoMimic Save Hand Poses (V2)",
    "EchoMimicLoadHandPoses": "EchoMimic Load Hand Poses (V2)",
}
