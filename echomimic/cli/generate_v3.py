"""``generate --mode v3_flash``: portrait + speech (+ prompt) -> mp4 with EchoMimic V3 flash."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..frames_npy import NpyFramesWriter
from ..release import V3_PROMPT_CACHE_FOLDER as PROMPT_CACHE_FOLDER
from .devices import _pick_device
from .report import _Reporter, count

if TYPE_CHECKING:
    import torch

    from ..v3.pipeline import FlashSettings

# Options of the V1/V2 modes that V3 flash has no use for: (attribute, its unset value, option).
_V1_V2_ONLY = (
    ("mask", None, "--mask"),
    ("driving_video", None, "--driving-video"),
    ("landmarks", None, "--landmarks"),
    ("save_landmarks", None, "--save-landmarks"),
    ("poses", None, "--poses"),
    ("save_poses", None, "--save-poses"),
    ("no_align_poses", False, "--no-align-poses"),
    ("paste_back", False, "--paste-back"),
    ("cfg", None, "--cfg"),
    ("context_frames", None, "--context-frames"),
    ("context_overlap", None, "--context-overlap"),
    ("length_policy", None, "--length-policy"),
    ("preview_every", 0, "--preview-every"),
    ("compile", False, "--compile"),
    ("deep_cache", None, "--deep-cache"),
    ("deep_cache_depth", None, "--deep-cache-depth"),
    ("config_dir", None, "--config-dir"),
)


def flash_settings(args: argparse.Namespace) -> FlashSettings:
    """The options as the library's FlashSettings (validated there)."""
    from ..v3.pipeline import FlashSettings

    defaults = FlashSettings()
    return FlashSettings(
        steps=defaults.steps if args.steps is None else args.steps,
        shift=args.shift,
        audio_cfg=args.audio_cfg,
        seed=defaults.seed if args.seed is None else args.seed,
        fps=args.fps,
        teacache=args.teacache,
        teacache_threshold=args.teacache_threshold,
        teacache_mode=args.teacache_mode,
        chunk_frames=args.chunk_frames,
        chunk_overlap=args.chunk_overlap,
        audio_timing=args.audio_timing,
    ).validated()


def validate_v3_args(args: argparse.Namespace) -> None:
    used = [option for name, unset, option in _V1_V2_ONLY if getattr(args, name, unset) != unset]
    if used:
        raise InputError(f"{', '.join(used)}: V1/V2 options; --mode v3_flash takes a portrait, speech and a --prompt.")
    if args.length is not None and args.length < 1:
        raise InputError(
            f"--length {args.length}: the video needs at least 1 frame; leave --length out to use the whole speech."
        )
    for name in ("image", "audio"):
        path = getattr(args, name)
        if not Path(path).is_file():
            problem = "a folder, not a file" if Path(path).is_dir() else "file not found"
            raise InputError(f"--{name} {path}: {problem}; check the path.")
    if (args.width is None) != (args.height is None):
        raise InputError("give both --width and --height, or neither (the size then follows the picture).")
    if args.width is not None:
        from ..v3.pipeline import check_size

        check_size(args.width, args.height)


def _reference_image(path: Path, report: _Reporter):
    import numpy as np

    from .inputs import load_rgb_image

    return (load_rgb_image(path, report) * 255.0).round().astype(np.uint8)


def run_generate_v3(args: argparse.Namespace) -> Path:
    """The ``generate`` command for V3 flash; returns the mp4 written."""
    from ..v3 import files as v3_files
    from .generate import check_outputs, use_example_inputs

    started = time.perf_counter()
    report = _Reporter(args.quiet)
    use_example_inputs(args, report)
    validate_v3_args(args)
    settings = flash_settings(args)
    check_outputs(args)
    from ..weights_download import check_run_folder

    folder = check_run_folder(args.weights, args.mode, download=args.download)
    files = (
        v3_files.download_weights(folder, args.mode, log=report.info)
        if args.download
        else v3_files.check_weights(folder, args.mode)
    )

    from ..dtypes import umt5_dtype, v3_dtype
    from ..v3 import pipeline as flash
    from ..v3.audio import SAMPLE_RATE, load_audio_encoder, load_speech_16k
    from ..v3.color import OfficialFrameWriter
    from ..v3.text_encoder import encode_prompt
    from ..video_io import Mp4Writer, read_audio

    device = _pick_device(args.device)
    dtype = v3_dtype(args.dtype, device)
    if device.type == "cpu" and args.device == "auto":
        report.warn_no_gpu()

    image = _reference_image(args.image, report)
    if args.width is None:
        height, width = flash.official_size(image.shape[1], image.shape[0])
    else:
        width, height = args.width, args.height
    reference = flash.resize_reference(image, width, height)

    speech = load_speech_16k(args.audio)
    duration = flash.speech_duration(speech.shape[0], SAMPLE_RATE)
    num_frames = flash.frame_count(duration, settings.fps, settings.chunk_frames, args.length)
    chunks = flash.plan_chunks(num_frames, settings.chunk_frames, settings.chunk_overlap)
    report.info(
        f"speech: {duration:.2f} s from {args.audio} -> {count(num_frames, 'frame')} at {settings.fps:g} "
        f"fps in {count(len(chunks), 'chunk')} of up to {settings.chunk_frames} frames"
    )

    report.info(f"encoding the speech with {files['wav2vec2:config.json'].parent}")
    encoder = load_audio_encoder(files["wav2vec2:config.json"].parent, device=device)
    audio_features = flash.speech_features(encoder, speech, num_frames, settings)
    del encoder

    report.info(f"encoding the prompt {args.prompt!r} (umT5; cached in {folder / PROMPT_CACHE_FOLDER})")
    if args.negative_prompt:
        report.info("note: V3 flash has no text guidance, so --negative-prompt changes nothing (as officially)")
    prompt_embeds = encode_prompt(
        args.prompt,
        files["tokenizer:tokenizer_config.json"].parent,
        files["text_encoder"],
        device=device,
        dtype=umt5_dtype(dtype),
        cache_dir=folder / PROMPT_CACHE_FOLDER,
    )

    clip = v3_files.load_clip(folder, device=device, dtype=dtype)
    clip_tokens = clip.encode(flash.clip_input(reference))
    del clip  # the text and image encoders are gone before the transformer loads
    report.info(f"loading V3 flash from {folder} on {device} ({str(dtype).replace('torch.', '')})")
    transformer, vae = v3_files.load_transformer_and_vae(folder, device=device, dtype=dtype)
    teacache = (
        f"TeaCache {settings.teacache_mode} {settings.teacache_threshold:g}" if settings.teacache else "no TeaCache"
    )
    report.info(
        f"generating at {width}x{height}, {count(settings.steps, 'step')}, audio cfg {settings.audio_cfg:g}, "
        f"seed {settings.seed}, {teacache}"
    )
    waveform, sample_rate = read_audio(args.audio)
    saved_frames = OfficialFrameWriter()
    with contextlib.ExitStack() as outputs:
        writer = outputs.enter_context(Mp4Writer(args.out, settings.fps, waveform, sample_rate))
        saved = (
            None
            if args.save_frames is None
            else outputs.enter_context(NpyFramesWriter(args.save_frames, num_frames, height, width))
        )

        def on_frames(chunk: torch.Tensor) -> None:
            if saved is not None:
                saved.write(chunk)
            writer.write(saved_frames(chunk.numpy()))

        report.start_sampling()
        flash.generate_flash(
            transformer,
            vae,
            reference,
            clip_tokens,
            prompt_embeds,
            audio_features,
            num_frames,
            settings,
            on_frames=on_frames,
            progress=report.progress,
        )
    report.info(
        f"wrote {writer.path}: {writer.frames_written} frames, {width}x{height}, {settings.fps:g} fps "
        f"({writer.frames_written / settings.fps:.2f} s) in {time.perf_counter() - started:.1f} s"
    )
    return writer.path


def add_v3_options(parser: argparse.ArgumentParser) -> None:
    """The options only --mode v3_flash reads (defaults: run_flash.sh's)."""
    from ..v3.pipeline import AUDIO_TIMINGS, DEFAULT_CHUNK_OVERLAP, OFFICIAL_CHUNK_FRAMES
    from ..v3.teacache import DEFAULT_THRESHOLD, MODES

    group = parser.add_argument_group("V3 flash (--mode v3_flash)")
    group.add_argument(
        "--prompt",
        default="A person is speaking.",
        help="what the video shows (umT5 text; default: run_flash.sh's 'A person is speaking.')",
    )
    group.add_argument(
        "--negative-prompt",
        default="",
        help="accepted for the official command line's sake: flash has no text guidance",
    )
    group.add_argument(
        "--audio-cfg",
        type=float,
        default=3.0,
        help="audio guidance scale (default 3; 1 = no guidance, one transformer call per step)",
    )
    group.add_argument("--shift", type=float, default=5.0, help="flow-matching shift of the sigmas (default 5)")
    group.add_argument(
        "--teacache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip transformer blocks at steps whose timestep embedding barely changed (default on)",
    )
    group.add_argument(
        "--teacache-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"TeaCache threshold (default {DEFAULT_THRESHOLD:g}; higher = faster, rougher)",
    )
    group.add_argument(
        "--teacache-mode",
        default=MODES[0],
        choices=MODES,
        help="official: as infer_flash.py (its cached steps drop the audio guidance); per-step: "
        "one decision per step that keeps the audio guidance",
    )
    group.add_argument(
        "--chunk-frames",
        type=int,
        default=OFFICIAL_CHUNK_FRAMES,
        help=f"frames per model chunk for long speech, 1 + 4k (default {OFFICIAL_CHUNK_FRAMES}, "
        "the official video_length)",
    )
    group.add_argument(
        "--chunk-overlap",
        type=int,
        default=DEFAULT_CHUNK_OVERLAP,
        help=f"frames each chunk takes over from the previous one and cross-fades, 1 + 4k "
        f"(default {DEFAULT_CHUNK_OVERLAP})",
    )
    group.add_argument(
        "--audio-timing",
        default=AUDIO_TIMINGS[0],
        choices=AUDIO_TIMINGS,
        help="fps: cut the speech at the video's fps; official: at 25 fps whatever --fps (identical at 25 fps)",
    )
