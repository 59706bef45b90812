"""The argument parser of ``python -m echomimic`` (argparse only: nothing is read or loaded here)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..release import (
    DEEP_CACHE_DEFAULT_DEPTH,
    DEEP_CACHE_MAX_DEPTH,
    DEFAULT_CONTEXT_FRAMES,
    DEFAULT_CONTEXT_OVERLAP,
    DEFAULT_FPS,
    DEFAULT_SIZE,
    DEFAULT_V3_FPS,
    DEFAULT_WEIGHTS_FOLDER,
    POSE_REF_W,
    PRECISIONS,
    V3_VARIANT_NAMES,
)
from ..release import VARIANTS as RELEASE_VARIANTS
from ..weights_download import VARIANTS

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES_DIR = REPO_ROOT / "example_inputs"
EXAMPLE_IMAGE = EXAMPLES_DIR / "portrait.png"
EXAMPLE_AUDIO = EXAMPLES_DIR / "speech.wav"
WEIGHTS_ENV = "ECHOMIMIC_WEIGHTS"


MODES = (*VARIANTS, *V3_VARIANT_NAMES)


def release_version(mode: str) -> str:
    """ "v1", "v2" or "v3" for a --mode."""
    return "v3" if mode in V3_VARIANT_NAMES else RELEASE_VARIANTS[mode].version


def default_weights_dir(mode: str) -> str:
    """$ECHOMIMIC_WEIGHTS, else the release's own folder (the releases' files cannot share one)."""
    return os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_FOLDER[release_version(mode)]


def resolve_mode_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in the options whose default follows ``--mode``: ``--weights`` (the release's own folder) and
    generate's ``--width`` / ``--height`` (the release's size)."""
    if getattr(args, "weights", "") is None:
        args.weights = default_weights_dir(args.mode)
    if hasattr(args, "fps") and args.fps is None:
        args.fps = DEFAULT_V3_FPS if release_version(args.mode) == "v3" else DEFAULT_FPS
    if hasattr(args, "width") and release_version(args.mode) != "v3":  # V3: the size follows the picture
        width, height = DEFAULT_SIZE[RELEASE_VARIANTS[args.mode].version]
        args.width = width if args.width is None else args.width
        args.height = height if args.height is None else args.height
    return args


def _add_weights_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default=None,
        metavar="DIR",
        help=f"weights folder in the layout of the Hugging Face repo BadToBest/EchoMimic (v2 modes: "
        f"BadToBest/EchoMimicV2, in a folder of its own: the file names clash) "
        f"(default: ${WEIGHTS_ENV}, else ./{DEFAULT_WEIGHTS_FOLDER['v1']} for V1 modes and "
        f"./{DEFAULT_WEIGHTS_FOLDER['v2']} for v2 modes, ./{DEFAULT_WEIGHTS_FOLDER['v3']} for v3_flash)",
    )
    parser.add_argument(
        "--mode",
        default="audio",
        choices=MODES,
        help="audio: speech only (default); audio_acc: its fast 6-step version; pose / pose_acc: speech "
        "+ facial landmarks from --driving-video or --landmarks; v2 / v2_acc: V2 semi-body, speech + hand "
        "poses from --driving-video or --poses; v3_flash: EchoMimic V3 flash (Wan2.1-based), speech + a "
        "--prompt, any length",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m echomimic``."""
    parser = argparse.ArgumentParser(
        prog="python -m echomimic",
        description="EchoMimic V1, V2 and V3 flash: animate a portrait (V1: the face; V2: the upper body; V3: "
        "the person) with speech, optionally driven by facial landmarks (V1) or hand poses (V2).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{generate,download,check,convert}")

    gen = commands.add_parser(
        "generate",
        help="make a talking-head mp4",
        description="Animate a portrait with speech and write an mp4 with the speech muxed in.",
    )
    gen.add_argument(
        "--image", type=Path, default=None, help=f"the portrait (png/jpg; default: the example {EXAMPLE_IMAGE.name})"
    )
    gen.add_argument(
        "--audio",
        type=Path,
        default=None,
        help=f"the speech (wav/mp3/flac/m4a/...; default: the example {EXAMPLE_AUDIO.name})",
    )
    gen.add_argument("--out", type=Path, default=Path("out.mp4"), help="the mp4 to write (default: out.mp4)")
    _add_weights_options(gen)
    gen.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with unet_config.json / inference.json / face_locator.json overriding "
        "the shipped full-size configs (default: those in --weights, if any)",
    )
    gen.add_argument(
        "--download", action="store_true", help="download missing weight files (Hugging Face) and MediaPipe files first"
    )
    size = gen.add_argument_group("video")
    size.add_argument(
        "--width",
        type=int,
        default=None,
        help="video width, a multiple of 8 (default: V1 512, V2 768, as released; v3_flash: a "
        "multiple of 16, default from the picture at most 768x768 in area)",
    )
    size.add_argument(
        "--height",
        type=int,
        default=None,
        help="video height, a multiple of 8 (default: V1 512, V2 768, as released; v3_flash: see --width)",
    )
    size.add_argument(
        "--fps",
        type=float,
        default=None,
        help=f"frames per second (default {DEFAULT_FPS:g}; v3_flash {DEFAULT_V3_FPS:g})",
    )
    size.add_argument(
        "--length",
        type=int,
        default=None,
        help="frames to generate (default: as many as the speech lasts; never more than it)",
    )
    size.add_argument(
        "--length-policy",
        default=None,
        metavar="POLICY",  # checked by the library's settings
        help="landmarks / hand poses shorter than the video: loop (default), ping-pong, hold "
        "(the last frame) or stop (the video ends with them)",
    )
    sampling = gen.add_argument_group("sampling")
    sampling.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: 30; 6 for the _acc modes; 8 for v3_flash)"
    )
    sampling.add_argument(
        "--cfg", type=float, default=None, help="guidance scale (default: 2.5; 1.0 for the _acc modes)"
    )
    sampling.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the initial noise (default: V1 420, V2 3407, V3 43, as released)",
    )
    sampling.add_argument(
        "--context-frames",
        type=int,
        default=None,
        help=f"frames denoised together in one window (default {DEFAULT_CONTEXT_FRAMES})",
    )
    sampling.add_argument(
        "--context-overlap",
        type=int,
        default=None,
        help=f"frames shared by neighbouring windows, < --context-frames (default {DEFAULT_CONTEXT_OVERLAP})",
    )
    sampling.add_argument(
        "--deep-cache",
        type=int,
        default=None,
        metavar="N",
        help="deep-feature cache (faster, approximate; 30-step modes only): every N-th step runs the whole "
        "UNet, the steps between reuse its deep features (3: about twice as fast; default 0: off, exact)",
    )
    sampling.add_argument(
        "--deep-cache-depth",
        type=int,
        default=None,
        metavar="D",
        help=f"--deep-cache: the UNet's outermost skip connections recomputed on cached steps, 1.."
        f"{DEEP_CACHE_MAX_DEPTH} (default {DEEP_CACHE_DEFAULT_DEPTH}; more = closer to exact, slower)",
    )
    sampling.add_argument("--device", default="auto", help="cuda, cuda:1, cpu, mps or auto (default)")
    sampling.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *PRECISIONS),
        help="model precision (auto: fp16 on a GPU, fp32 on CPU)",
    )
    sampling.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the denoising UNet's blocks: faster on a GPU after a slow first "
        "window (needs Triton / a C++ compiler); off by default",
    )
    face = gen.add_argument_group("face (audio modes) and landmarks (pose modes)")
    face.add_argument(
        "--mask", type=Path, default=None, help="face mask image (white = face) to use instead of detecting the face"
    )
    face.add_argument(
        "--no-crop", action="store_true", help="use the whole portrait instead of cropping it around the face"
    )
    face.add_argument(
        "--driving-video",
        type=Path,
        default=None,
        help="pose modes: a video of a face whose landmarks drive the head and eyes; v2 modes: "
        "a half-body video whose hands drive the gestures",
    )
    face.add_argument(
        "--landmarks", type=Path, default=None, help="pose modes: a landmark JSON (LandmarkSequence.save), used as is"
    )
    face.add_argument(
        "--save-landmarks", type=Path, default=None, help="pose modes: also save the aligned landmarks as JSON"
    )
    paste = gen.add_argument_group("paste back and previews")
    paste.add_argument(
        "--paste-back",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="write the video at the full picture's size, the animated face crop pasted back "
        "into it with a soft edge (default: --no-paste-back, the crop at --width x --height, "
        "as the official scripts)",
    )
    paste.add_argument(
        "--paste-feather",
        type=int,
        default=24,
        metavar="PX",
        help="--paste-back: width of the soft edge in picture pixels (default 24)",
    )
    paste.add_argument(
        "--paste-color-match",
        action="store_true",
        help="--paste-back: match the crop's colours to the picture along the crop border",
    )
    paste.add_argument(
        "--preview-every",
        type=int,
        default=0,
        metavar="N",
        help="write a quick preview PNG (middle frame, no VAE) every N denoising steps (default 0: none)",
    )
    paste.add_argument(
        "--preview-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="--preview-every: folder for the PNGs (default: <out>_previews beside the mp4)",
    )
    hands = gen.add_argument_group("hand poses (v2 modes)")
    hands.add_argument(
        "--poses",
        type=Path,
        default=None,
        help="v2 modes: a hand-pose JSON (HandPoseSequence.save) instead of --driving-video, "
        "whose hands are otherwise extracted",
    )
    hands.add_argument(
        "--no-align-poses",
        action="store_true",
        help="v2 modes: keep the hands where they are in the driving video instead of moving "
        "them onto the portrait's body (shoulders)",
    )
    hands.add_argument(
        "--save-poses", type=Path, default=None, help="v2 modes: also save the (aligned) hand poses as JSON"
    )
    hands.add_argument(
        "--pose-ref-w",
        type=int,
        default=POSE_REF_W,
        metavar="N",
        help="v2 modes: resolution the hand lines are drawn at before resizing (default 800, as "
        "the official scripts; the V2 weights were trained on that line width)",
    )
    from .generate_v3 import add_v3_options

    add_v3_options(gen)
    gen.add_argument(
        "--save-frames",
        type=Path,
        default=None,
        metavar="NPY",
        help="also save the frames before video encoding: [F, H, W, 3] float32 0..1 .npy",
    )
    gen.add_argument("--quiet", action="store_true", help="print only errors")
    gen.add_argument(
        "--verbose",
        action="store_true",
        help="also show MediaPipe's own C++ log lines (hidden by default; or set ECHOMIMIC_VERBOSE=1)",
    )

    down = commands.add_parser(
        "download",
        help="download the weights of a mode",
        description="Download the weight files of a mode with huggingface_hub.",
    )
    _add_weights_options(down)
    check = commands.add_parser(
        "check", help="list missing weight files", description="Check that the weight files of a mode are all present."
    )
    _add_weights_options(check)
    convert = commands.add_parser(
        "convert",
        help="write .safetensors copies of the .pth weights",
        description="Write a .safetensors file beside every .pth release file of a folder (the loader "
        "prefers them: faster, memory-mapped, and they can never carry code).",
    )
    convert.add_argument("folder", type=Path, help="the weights folder (the BadToBest/EchoMimic download)")
    convert.add_argument(
        "--dtype",
        default="fp16",
        choices=tuple(PRECISIONS),
        help="precision of the written tensors (default fp16, as released)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace existing .safetensors files")
    return parser
