"""The ``download``, ``check`` and ``convert`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import release
from ..weights import check_weights_folder
from ..weights_download import check_run_folder, check_weights, download_weights, mediapipe_status_lines


def run_download(args: argparse.Namespace) -> None:
    """The ``download`` command."""
    check_run_folder(args.weights, args.mode, download=True)
    download_weights(args.weights, args.mode)
    print(f"all {args.mode} weights are in {Path(args.weights).resolve()}")


def run_check(args: argparse.Namespace) -> None:
    """The ``check`` command: one line per weight file of the mode."""
    check_run_folder(args.weights, args.mode, download=False)
    for line in mediapipe_status_lines(
        args.weights, args.mode, face_crop=not release.variant(args.mode).version == "v2"
    ):
        print(line)  # MediaPipe Tasks files (fetched on first use), listed even when weights are missing
    files = check_weights(args.weights, args.mode)
    for role, path in files.items():
        print(f"{role:15s} {path}")


def run_download_v3(args: argparse.Namespace) -> None:
    """``download --mode v3_flash``: the three repositories' files into one folder."""
    from ..v3.files import download_weights as download_v3

    check_run_folder(args.weights, args.mode, download=True)
    download_v3(args.weights, args.mode)
    print(f"all {args.mode} weights are in {Path(args.weights).resolve()}")


def run_check_v3(args: argparse.Namespace) -> None:
    """``check --mode v3_flash``: one line per file."""
    from ..v3.files import check_weights as check_v3

    check_run_folder(args.weights, args.mode, download=False)
    for role, path in check_v3(args.weights, args.mode).items():
        print(f"{role:32s} {path}")


def run_convert(args: argparse.Namespace) -> None:
    """The ``convert`` command: .safetensors copies beside the .pth release files."""
    from ..convert import convert_folder

    check_weights_folder(args.folder)
    written = convert_folder(args.folder, dtype=args.dtype, overwrite=args.overwrite)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"nothing to convert in {args.folder} (no .pth without a .safetensors beside it)")
