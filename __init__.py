"""ComfyUI entry point of the EchoMimic extension (classic NODE_CLASS_MAPPINGS API).

Importing it is cheap and has no side effects beyond registering the `echomimic` models folder with
ComfyUI's folder_paths: it creates no folder, downloads nothing, and imports no heavy library
(mediapipe, diffusers, transformers and cv2 load on first use inside the nodes).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

_EXTENSION_DIR = os.path.dirname(os.path.abspath(__file__))
# ComfyUI imports this folder as a package but does not put it on sys.path; the nodes import the
# bundled `echomimic` library by its absolute name. Appended, so nothing of ours shadows other modules.
if _EXTENSION_DIR not in sys.path:
    sys.path.append(_EXTENSION_DIR)

_log = logging.getLogger("EchoMimic")

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
# Node groups that failed to import, with the reason (shown in the log; the other groups still load).
FAILED_NODE_GROUPS: dict[str, str] = {}


def _check_library_location() -> None:
    import echomimic

    location = os.path.dirname(os.path.abspath(echomimic.__file__))
    if os.path.dirname(location) != _EXTENSION_DIR:
        raise ImportError(
            f"Another package named 'echomimic' ({location}) was imported before this extension's own; "
            "remove or rename the other one (often an older EchoMimic custom node) and restart ComfyUI."
        )


def _load_node_groups() -> None:
    from .nodes import NODE_GROUPS

    try:
        from .nodes.common import register_models_folder

        _check_library_location()
        register_models_folder()
    except Exception as error:  # noqa: BLE001 - report and keep loading what can load
        _log.warning("EchoMimic: setup problem: %s", error)
    for group in NODE_GROUPS:
        try:
            module = importlib.import_module(f".nodes.{group}", __name__)
        except Exception as error:  # noqa: BLE001 - one broken group must not hide the others
            FAILED_NODE_GROUPS[group] = f"{type(error).__name__}: {error}"
            _log.warning("EchoMimic: the %s nodes are unavailable: %s", group, error)
            continue
        NODE_CLASS_MAPPINGS.update(module.NODE_CLASS_MAPPINGS)
        NODE_DISPLAY_NAME_MAPPINGS.update(module.NODE_DISPLAY_NAME_MAPPINGS)


# ComfyUI imports this folder as a package. A test runner may import this file as a plain module
# (no parent package); there is nothing to register then.
if __package__:
    _load_node_groups()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
