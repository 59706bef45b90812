"""The standalone command: ``python -m echomimic generate --image face.png --audio speech.wav --out out.mp4``.

Subcommands:

- ``generate``: portrait + speech (+ landmarks for the pose variants) -> mp4 with the speech muxed in.
  Without ``--image`` / ``--audio`` it animates the example inputs in ``example_inputs/``.
- ``download``: fetch the weight files of a variant with huggingface_hub.
- ``check``: list the weight files a variant still lacks.
- ``convert``: write .safetensors copies of the .pth weights.

Modules: ``parser`` (argparse only), ``inputs`` (decoding the user's files), ``generate`` (the generate
command), ``commands`` (download / check / convert), ``report`` (stderr lines), ``devices``
(--device / --dtype). Everything heavy (torch, PyAV, diffusers, mediapipe) is imported only once a
command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import CancelledError, EchoMimicError
from ..native_logs import VERBOSE_ENV
from .commands import run_check, run_convert, run_download
from .devices import _pick_device, _pick_dtype
from .generate import run_generate, validate_generate_args
from .inputs import load_mask_image, load_rgb_image
from .parser import (
    EXAMPLE_AUDIO,
    EXAMPLE_IMAGE,
    EXAMPLES_DIR,
    REPO_ROOT,
    build_parser,
    release_version,
    resolve_mode_defaults,
)

__all__ = [
    "EXAMPLES_DIR",
    "EXAMPLE_AUDIO",
    "EXAMPLE_IMAGE",
    "REPO_ROOT",
    "_pick_device",
    "_pick_dtype",
    "build_parser",
    "load_mask_image",
    "load_rgb_image",
    "main",
    "run_generate",
    "validate_generate_args",
]

_COMMANDS = {"generate": run_generate, "download": run_download, "check": run_check, "convert": run_convert}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m echomimic``; returns the exit status (0 ok, 2 bad input/weights)."""
    args = resolve_mode_defaults(build_parser().parse_args(argv))
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"  # read by echomimic.native_logs around every MediaPipe call
    command = _COMMANDS[args.command]
    if args.command != "convert" and release_version(args.mode) == "v3":
        from .commands import run_check_v3, run_download_v3
        from .generate_v3 import run_generate_v3

        command = {"generate": run_generate_v3, "download": run_download_v3, "check": run_check_v3}[args.command]
    try:
        command(args)
    except CancelledError as error:
        print(f"cancelled: {error}", file=sys.stderr)
        return 130
    except EchoMimicError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
