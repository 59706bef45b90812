"""The standalone command: ``python -m echomimic generate --image face.png --audio speech.wav --out out.mp4``.

Subcommands:

- ``generate``: portrait + speech (+ landmarks for the pose variants) -> mp4 with the speech muxed in.
  Without ``--image`` / ``--audio`` it animates the example inputs in ``example_inputs/``.
- ``download``: fetch the weight files of a variant with huggingface_hub.
- ``check``: list the weight files a variant still lacks.

Everything heavy (torch, PyAV, diffusers, mediapipe) is imported only once a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CancelledError, EchoMimicError, InputError
from .weights_download import VARIANTS, check_weights, download_weights

if TYPE_CHECKING:
    import numpy as np
    import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "example_inputs"
EXAMPLE_IMAGE = EXAMPLES_DIR / "portrait.png"
EXAMPLE_AUDIO = EXAMPLES_DIR / "speech.wav"
DEFAULT_WEIGHTS_DIR = "pretrained_weights"
WEIGHTS_ENV = "ECHOMIMIC_WEIGHTS"


def _default_weights_dir() -> str:
    return os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR


def _add_weights_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", default=_default_weights_dir(), metavar="DIR",
        help=f"weights folder in the layout of the Hugging Face repo BadToBest/EchoMimic "
             f"(default: ${WEIGHTS_ENV} or ./{DEFAULT_WEIGHTS_DIR})",
    )
    parser.add_argument(
        "--mode", default="audio", choices=VARIANTS,
        help="audio: speech only (default); audio_acc: its fast 6-step version; pose / pose_acc: speech "
             "+ facial landmarks from --driving-video or --landmarks",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m echomimic``."""
    parser = argparse.ArgumentParser(
        prog="python -m echomimic",
        description="EchoMimic V1: animate a portrait with speech (and optionally facial landmarks).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{generate,download,check,convert}")

    gen = commands.add_parser(
        "generate", help="make a talking-head mp4",
        description="Animate a portrait with speech and write an mp4 with the speech muxed in.",
    )
    gen.add_argument("--image", type=Path, default=None,
                     help=f"the portrait (png/jpg; default: the example {EXAMPLE_IMAGE.name})")
    gen.add_argument("--audio", type=Path, default=None,
                     help=f"the speech (wav/mp3/flac/m4a/...; default: the example {EXAMPLE_AUDIO.name})")
    gen.add_argument("--out", type=Path, default=Path("out.mp4"), help="the mp4 to write (default: out.mp4)")
    _add_weights_options(gen)
    gen.add_argument("--config-dir", type=Path, default=None, metavar="DIR",
                     help="folder with unet_config.json / inference.json / face_locator.json overriding "
                          "the shipped full-size configs (default: those in --weights, if any)")
    gen.add_argument("--download", action="store_true",
                     help="download missing weight files with huggingface_hub first")
    size = gen.add_argument_group("video")
    size.add_argument("--width", type=int, default=512, help="video width, a multiple of 8 (default 512)")
    size.add_argument("--height", type=int, default=512, help="video height, a multiple of 8 (default 512)")
    size.add_argument("--fps", type=float, default=24.0, help="frames per second (default 24)")
    size.add_argument("--length", type=int, default=None,
                      help="frames to generate (default: as many as the speech lasts)")
    sampling = gen.add_argument_group("sampling")
    sampling.add_argument("--steps", type=int, default=None,
                          help="denoising steps (default: 30; 6 for the _acc modes)")
    sampling.add_argument("--cfg", type=float, default=None,
                          help="guidance scale (default: 2.5; 1.0 for the _acc modes)")
    sampling.add_argument("--seed", type=int, default=420, help="seed of the initial noise (default 420)")
    sampling.add_argument("--context-frames", type=int, default=12,
                          help="frames denoised together in one window (default 12)")
    sampling.add_argument("--context-overlap", type=int, default=3,
                          help="frames shared by neighbouring windows, < --context-frames (default 3)")
    sampling.add_argument("--device", default="auto", help="cuda, cuda:1, cpu, mps or auto (default)")
    sampling.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                          help="model precision (auto: fp16 on a GPU, fp32 on CPU)")
    face = gen.add_argument_group("face (audio modes) and landmarks (pose modes)")
    face.add_argument("--mask", type=Path, default=None,
                      help="face mask image (white = face) to use instead of detecting the face")
    face.add_argument("--no-crop", action="store_true",
                      help="use the whole portrait instead of cropping it around the face")
    face.add_argument("--driving-video", type=Path, default=None,
                      help="pose modes: a video of a face whose landmarks drive the head and eyes")
    face.add_argument("--landmarks", type=Path, default=None,
                      help="pose modes: a landmark JSON (LandmarkSequence.save), used as is")
    face.add_argument("--save-landmarks", type=Path, default=None,
                      help="pose modes: also save the aligned landmarks as JSON")
    gen.add_argument("--save-frames", type=Path, default=None, metavar="NPY",
                     help="also save the frames before video encoding: [F, H, W, 3] float32 0..1 .npy")
    gen.add_argument("--quiet", action="store_true", help="print only errors")

    down = commands.add_parser("download", help="download the weights of a mode",
                               description="Download the weight files of a mode with huggingface_hub.")
    _add_weights_options(down)
    check = commands.add_parser("check", help="list missing weight files",
                                description="Check that the weight files of a mode are all present.")
    _add_weights_options(check)
    convert = commands.add_parser(
        "convert", help="write .safetensors copies of the .pth weights",
        description="Write a .safetensors file beside every .pth release file of a folder (the loader "
                    "prefers them: faster, memory-mapped, and they can never carry code).",
    )
    convert.add_argument("folder", type=Path, help="the weights folder (the BadToBest/EchoMimic download)")
    convert.add_argument("--dtype", default="fp16", choices=("fp16", "fp32", "bf16"),
                         help="precision of the written tensors (default fp16, as released)")
    convert.add_argument("--overwrite", action="store_true", help="replace existing .safetensors files")
    return parser


class _Reporter:
    """Status lines on stderr; a single rewritten progress line on a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.interactive = sys.stderr.isatty()
        self._last_step = -1
        self._start = time.perf_counter()

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def progress(self, info: Any) -> None:
        """Receives echomimic.pipeline.sampler.ProgressInfo after each (step, window)."""
        if self.quiet:
            return
        elapsed = time.perf_counter() - self._start
        line = (f"denoising {100 * info.done / max(info.total, 1):5.1f}%  step {info.step + 1}/{info.steps}  "
                f"window {info.window + 1}/{info.windows}  {elapsed:7.1f}s")
        if self.interactive:
            end = "\n" if info.done >= info.total else ""
            print("\r" + line, end=end, file=sys.stderr, flush=True)
        elif info.step != self._last_step or info.done >= info.total:
            print(line, file=sys.stderr, flush=True)
        self._last_step = info.step


def validate_generate_args(args: argparse.Namespace) -> None:
    """Cheap checks before anything is loaded; raises :class:`InputError` saying what to change."""
    if args.width < 8 or args.height < 8 or args.width % 8 or args.height % 8:
        raise InputError(
            f"--width {args.width} --height {args.height}: both must be multiples of 8 (the VAE works on "
            f"8x8 blocks); try --width {max(8, round(args.width / 8) * 8)} --height {max(8, round(args.height / 8) * 8)}."
        )
    if args.length is not None and args.length < 1:
        raise InputError(f"--length {args.length}: the video needs at least 1 frame; leave --length out to "
                         "use the whole speech.")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps {args.steps}: at least 1 denoising step is needed (30 is the official "
                         "default, 6 for the _acc modes).")
    if args.cfg is not None and args.cfg < 0:
        raise InputError(f"--cfg {args.cfg}: the guidance scale must be >= 0 (1 or less turns guidance off).")
    if args.fps <= 0:
        raise InputError(f"--fps {args.fps}: must be positive, e.g. 24 or 25.")
    if args.context_frames < 1:
        raise InputError(f"--context-frames {args.context_frames}: must be at least 1 (official 12).")
    if not 0 <= args.context_overlap < args.context_frames:
        raise InputError(
            f"--context-overlap {args.context_overlap} with --context-frames {args.context_frames}: the overlap "
            f"must be >= 0 and smaller than the window; try --context-overlap {max(0, args.context_frames // 4)}."
        )
    pose = args.mode.startswith("pose")
    if pose and args.driving_video is None and args.landmarks is None:
        raise InputError(f"--mode {args.mode} is driven by facial landmarks: pass --driving-video <video of a "
                         "face> or --landmarks <landmarks.json>, or use --mode audio.")
    if pose and args.driving_video is not None and args.landmarks is not None:
        raise InputError("pass either --driving-video or --landmarks, not both.")
    if not pose and (args.driving_video is not None or args.landmarks is not None):
        raise InputError(f"--driving-video/--landmarks drive the pose modes, but --mode is {args.mode}; "
                         "add --mode pose (or pose_acc), or leave them out.")
    if pose and args.mask is not None:
        raise InputError("--mask is for the audio modes; the pose modes are conditioned on landmarks.")
    for name in ("image", "audio", "mask", "driving_video", "landmarks"):
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            raise InputError(f"--{name.replace('_', '-')} {path}: file not found; check the path.")


def _pick_device(name: str) -> torch.device:
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise InputError(f"--device {name!r} is not a device torch knows ({error}); use cpu or cuda.") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _pick_dtype(name: str, device: torch.device) -> torch.dtype:
    import torch

    if name == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def load_rgb_image(path: Path, report: _Reporter | None = None) -> np.ndarray:
    """An image file as ``[H, W, 3]`` float32 0..1 RGB; other modes are converted (alpha onto white)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"cannot read the image {path} ({error}); pass a png or jpg file.") from error
    if image.mode != "RGB":
        original = image.mode
        if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            image = image.convert("RGB")
        if report is not None:
            report.info(f"note: {path.name} is a {original} image; converted it to RGB")
    return np.asarray(image, dtype=np.float32) / 255.0


def load_mask_image(path: Path) -> np.ndarray:
    """A mask image as ``[H, W]`` float32 0..1 (white = 1; the alpha channel of an RGBA image is ignored)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"cannot read the mask {path} ({error}); pass a black-and-white png.") from error
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[H, W]`` or ``[H, W, C]`` float32 resized to width x height (bilinear, cv2 from mediapipe)."""
    import cv2
    import numpy as np

    if array.shape[:2] == (height, width):
        return array.astype(np.float32, copy=False)
    interpolation = cv2.INTER_AREA if array.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(array.astype(np.float32), (width, height), interpolation=interpolation)


LANDMARK_REFERENCE_SIDE = 512  # the face mesh needs a face of a decent size in pixels


def _prepare_reference(args: argparse.Namespace, image_path: Path, report: _Reporter):
    """Returns ``(reference [H, W, 3] 0..1, face_mask [H, W] 0..1, landmark_reference)`` at the output size.

    ``landmark_reference`` is the same picture at a shorter side of at least 512 pixels, for finding
    the reference's landmarks (pose modes) when the output size is small; None in the audio modes.
    """
    from .landmarks import face_mask_and_crop

    image = load_rgb_image(image_path, report)
    user_mask = None
    if args.mask is not None:
        user_mask = _resize(load_mask_image(args.mask), image.shape[1], image.shape[0])
    crop = face_mask_and_crop(image, crop=not args.no_crop, size=(args.width, args.height), mask=user_mask)
    reference = _resize(crop.image, args.width, args.height)
    mask = _resize(crop.mask, args.width, args.height).clip(0.0, 1.0)
    landmark_reference = None
    if args.mode.startswith("pose"):
        scale = max(1.0, LANDMARK_REFERENCE_SIDE / min(args.width, args.height))
        big_width, big_height = round(args.width * scale), round(args.height * scale)
        if scale == 1.0:
            landmark_reference = reference
        elif args.no_crop:
            landmark_reference = _resize(image, big_width, big_height)
        else:
            landmark_reference = face_mask_and_crop(image, size=(big_width, big_height), mask=user_mask).image
    return reference, mask, landmark_reference


def _landmark_images(args: argparse.Namespace, landmark_reference: np.ndarray, report: _Reporter) -> np.ndarray:
    """Drawn landmark frames ``[F, H, W, 3]`` 0..1 for the pose modes.

    landmark_reference: the reference picture ``[H', W', 3]`` (same aspect as the output) whose face
    the driving video's motion is transferred onto.
    """
    from .landmarks import LandmarkSequence, align_landmarks, draw_landmarks, extract_landmarks

    if args.landmarks is not None:
        sequence = LandmarkSequence.load(args.landmarks)
        report.info(f"landmarks: {sequence.num_frames} frames from {args.landmarks}")
    else:
        from .video_io import read_video_frames

        max_frames = args.length if args.length is not None else None
        frames, video_fps = read_video_frames(args.driving_video, max_frames=max_frames)
        if abs(video_fps - args.fps) > 0.01:
            report.info(f"note: {args.driving_video.name} runs at {video_fps:g} fps, the output at {args.fps:g} fps; "
                        "its frames are used one per output frame")
        report.info(f"extracting landmarks from {frames.shape[0]} frames of {args.driving_video} ...")
        driver = extract_landmarks(frames)
        reference_landmarks = extract_landmarks(landmark_reference[None])
        sequence = align_landmarks(driver, reference_landmarks)
    if args.save_landmarks is not None:
        sequence.save(args.save_landmarks)
        report.info(f"saved the landmarks to {args.save_landmarks}")
    return draw_landmarks(sequence, args.width, args.height)


def run_generate(args: argparse.Namespace) -> Path:
    """The ``generate`` command; returns the mp4 written."""
    started = time.perf_counter()
    report = _Reporter(args.quiet)
    if args.image is None:
        args.image = EXAMPLE_IMAGE
        report.info(f"no --image: using the example portrait {EXAMPLE_IMAGE}")
    if args.audio is None:
        args.audio = EXAMPLE_AUDIO
        report.info(f"no --audio: using the example speech {EXAMPLE_AUDIO}")
    validate_generate_args(args)

    if args.download:
        files = download_weights(args.weights, args.mode, log=report.info)
    else:
        files = check_weights(args.weights, args.mode)

    import torch

    from .audio import compute_audio_features, load_whisper_encoder
    from .models.loading import load_echomimic_v1
    from .pipeline.sampler import SamplingSettings, generate_video
    from .pipeline.vae import load_diffusers_vae
    from .video_io import read_audio, write_mp4

    device = _pick_device(args.device)
    dtype = _pick_dtype(args.dtype, device)

    reference, face_mask, landmark_reference = _prepare_reference(args, args.image, report)
    waveform, sample_rate = read_audio(args.audio)
    report.info(f"speech: {waveform.shape[-1] / sample_rate:.2f} s at {sample_rate} Hz from {args.audio}")

    landmark_images = None
    if args.mode.startswith("pose"):
        landmark_images = _landmark_images(args, landmark_reference, report)
        available = landmark_images.shape[0]
        if args.length is not None and args.length > available:
            raise InputError(
                f"--length {args.length} asks for more frames than the {available} landmark frames of "
                f"{args.driving_video or args.landmarks}; pass --length {available} or less, or use a longer "
                "driving video."
            )

    report.info(f"loading the {args.mode} models from {args.weights} on {device} ({str(dtype).replace('torch.', '')})")
    models = load_echomimic_v1(args.weights, args.mode, config_dir=args.config_dir, device=device, dtype=dtype)
    vae = load_diffusers_vae(files["vae_config"].parent, device, dtype)
    encoder = load_whisper_encoder(files["whisper"], device=device, dtype=torch.float32)
    audio_features = compute_audio_features(waveform, sample_rate, encoder, args.fps)
    del encoder

    length = args.length or 0
    if landmark_images is not None:
        available = landmark_images.shape[0]
        if length == 0 and available < audio_features.num_frames:
            report.info(f"note: the landmarks cover {available} frames, the speech {audio_features.num_frames}; "
                        f"generating {available}")
            length = available
    defaults = SamplingSettings.defaults_for(args.mode)
    settings = dataclasses.replace(
        defaults, width=args.width, height=args.height, length=length, fps=args.fps, seed=args.seed,
        steps=defaults.steps if args.steps is None else args.steps,
        cfg=defaults.cfg if args.cfg is None else args.cfg,
        context_frames=args.context_frames, context_overlap=args.context_overlap,
    ).validated()

    report.info(f"generating {length or audio_features.num_frames} frames at {args.width}x{args.height}, "
                f"{settings.steps} steps, cfg {settings.cfg}, seed {settings.seed}")
    video = generate_video(
        models, vae, torch.from_numpy(reference),
        audio_features=audio_features,
        face_mask=None if landmark_images is not None else torch.from_numpy(face_mask),
        landmark_images=None if landmark_images is None else torch.from_numpy(landmark_images),
        settings=settings, progress=report.progress,
    )
    out = write_mp4(args.out, video.frames, video.fps, waveform, sample_rate)
    if args.save_frames is not None:
        import numpy as np

        args.save_frames.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.save_frames, video.frames.numpy())
    num_frames = video.frames.shape[0]
    report.info(f"wrote {out}: {num_frames} frames, {args.width}x{args.height}, {video.fps:g} fps "
                f"({num_frames / video.fps:.2f} s) in {time.perf_counter() - started:.1f} s")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m echomimic``; returns the exit status (0 ok, 2 bad input/weights)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            run_generate(args)
        elif args.command == "download":
            download_weights(args.weights, args.mode)
            print(f"all {args.mode} weights are in {Path(args.weights).resolve()}")
        elif args.command == "check":
            files = check_weights(args.weights, args.mode)
            for role, path in files.items():
                print(f"{role:15s} {path}")
        elif args.command == "convert":
            from .convert import convert_folder

            written = convert_folder(args.folder, dtype=args.dtype, overwrite=args.overwrite)
            for path in written:
                print(f"wrote {path}")
            if not written:
                print(f"nothing to convert in {args.folder} (no .pth without a .safetensors beside it)")
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
