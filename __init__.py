"""ComfyUI entry point of the EchoMimic extension (classic NODE_CLASS_MAPPINGS API).

Importing it is cheap and has no side effects beyond registering the `echomimic` models folder with
ComfyUI's folder_paths: it creates no folder, downloads nothing, and imports no heavy library
(mediapipe, diffusers, transformers and cv2 load on first use inside the nodes).
"""

from __future__ import annotations

import importlib
import logging

# ComfyUI imports this folder as a package and does not put it on sys.path. The nodes import the bundled
# `echomimic` library relative to this package (`from ..echomimic import ...`), so no other extension can
# shadow it or see this repository's folders (tests, benchmarks, nodes) as top-level modules.

_log = logging.getLogger("EchoMimic")

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
# Node groups that failed to import, with the reason (shown in the log; the other groups still load).
FAILED_NODE_GROUPS: dict[str, str] = {}


def _load_node_groups() -> None:
    from .nodes import NODE_GROUPS

    try:
        from .nodes.common import register_models_folder

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
