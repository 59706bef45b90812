"""The ``generate`` command: checks, inputs, models, sampling, the mp4."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import release
from ..atomic import OutputError, check_output_file, check_output_folder
from ..errors import InputError
from ..frames_npy import NpyFramesWriter
from ..weights_download import check_run_folder, check_weights, download_weights, fetch_mediapipe_for_run
from .devices import _pick_device, _pick_dtype
from .inputs import _hand_pose_images, _landmark_images, _prepare_reference
from .parser import EXAMPLE_AUDIO, EXAMPLE_IMAGE
from .report import _Reporter, count

if TYPE_CHECKING:
    from ..pipeline.settings import SamplingSettings


def validate_generate_args(args: argparse.Namespace) -> None:
    """Cheap checks of the options before anything is loaded; raises :class:`InputError` saying what to
    change. The sampling settings are checked by the library (:func:`sampling_settings`)."""
    if args.length is not None and args.length < 1:
        raise InputError(
            f"--length {args.length}: the video needs at least 1 frame; leave --length out to use the whole speech."
        )
    if getattr(args, "preview_every", 0) < 0:
        raise InputError(f"--preview-every {args.preview_every}: give a number of steps >= 1 (0 = no previews).")
    if getattr(args, "paste_feather", 0) < 0:
        raise InputError(f"--paste-feather {args.paste_feather}: give a width in pixels >= 0.")
    if release.variant(args.mode).version == "v2":
        validate_v2_args(args)
        return
    landmark_driven = release.variant(args.mode).conditioning == "landmarks"
    if args.poses is not None or args.save_poses is not None or args.no_align_poses:
        raise InputError(f"--poses/--save-poses/--no-align-poses are for the v2 modes, but --mode is {args.mode}.")
    if landmark_driven and args.driving_video is None and args.landmarks is None:
        raise InputError(
            f"--mode {args.mode} is driven by facial landmarks: pass --driving-video <video of a "
            "face> or --landmarks <landmarks.json>, or use --mode audio."
        )
    if landmark_driven and args.driving_video is not None and args.landmarks is not None:
        raise InputError("pass either --driving-video or --landmarks, not both.")
    if not landmark_driven and (args.driving_video is not None or args.landmarks is not None):
        raise InputError(
            f"--driving-video/--landmarks drive the pose modes, but --mode is {args.mode}; "
            "add --mode pose (or pose_acc), or leave them out."
        )
    if landmark_driven and args.mask is not None:
        raise InputError("--mask is for the audio modes; the pose modes are conditioned on landmarks.")
    for name in ("image", "audio", "mask", "driving_video", "landmarks"):
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            problem = "a folder, not a file" if Path(path).is_dir() else "file not found"
            raise InputError(f"--{name.replace('_', '-')} {path}: {problem}; check the path.")


def validate_v2_args(args: argparse.Namespace) -> None:
    """The v2 modes are driven by hand poses: exactly one of --driving-video and --poses."""
    if (args.driving_video is None) == (args.poses is None):
        raise InputError(
            f"--mode {args.mode} is driven by hand poses: pass either --driving-video <half-body video "
            "with visible hands> or --poses <poses.json>."
        )
    if args.landmarks is not None or args.save_landmarks is not None or args.mask is not None:
        raise InputError(
            "--landmarks/--save-landmarks/--mask are for the V1 modes; the v2 modes take hand poses "
            "(--driving-video or --poses)."
        )
    for name in ("image", "audio", "driving_video", "poses"):
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            problem = "a folder, not a file" if Path(path).is_dir() else "file not found"
            raise InputError(f"--{name.replace('_', '-')} {path}: {problem}; check the path.")


def sampling_settings(args: argparse.Namespace, length: int = 0) -> SamplingSettings:
    """The options as the library's :class:`SamplingSettings`, validated there (the nodes use the same)."""
    from ..pipeline.settings import SamplingSettings

    return SamplingSettings.for_variant(
        args.mode,
        width=args.width,
        height=args.height,
        length=length,
        fps=args.fps,
        seed=args.seed,
        steps=args.steps,
        cfg=args.cfg,
        context_frames=args.context_frames,
        context_overlap=args.context_overlap,
        length_policy=getattr(args, "length_policy", None),
        deep_cache_interval=getattr(args, "deep_cache", None),
        deep_cache_depth=getattr(args, "deep_cache_depth", None),
    ).validated(variant=args.mode)


def check_outputs(args: argparse.Namespace) -> None:
    """Every file ``generate`` will write can be written: checked before anything loads (minutes). A missing
    folder is created now (as the mp4 writer always did), so that a failure to create it comes first too."""
    for option, path in (
        ("--out", args.out),
        ("--save-frames", args.save_frames),
        ("--save-landmarks", args.save_landmarks),
        ("--save-poses", args.save_poses),
    ):
        if path is None:
            continue
        try:
            if not Path(path).is_dir():
                check_output_folder(Path(path).expanduser().absolute().parent)
            check_output_file(path)
        except OutputError as error:
            raise OutputError(f"{option}: {error}") from None
    folder = preview_folder(args)
    if folder is not None:
        try:
            check_output_folder(folder)
        except OutputError as error:
            raise OutputError(f"--preview-every: {error}") from None


def preview_folder(args: argparse.Namespace) -> Path | None:
    """Where ``--preview-every`` writes its PNGs: ``--preview-dir``, else ``<out>_previews`` beside the mp4."""
    if not getattr(args, "preview_every", 0):
        return None
    return getattr(args, "preview_dir", None) or args.out.with_name(args.out.stem + "_previews")


def _preview_writer(args: argparse.Namespace, steps: int, report: _Reporter):
    """The sampler's ``on_step`` callback writing previews every ``--preview-every`` steps, or None."""
    folder = preview_folder(args)
    if folder is None:
        return None
    from ..preview import PreviewWriter

    report.info(f"previews every {count(args.preview_every, 'step')} into {folder}")
    return PreviewWriter(folder, args.preview_every, steps=steps)


def _paste_back_chunks(args: argparse.Namespace, crop_info, report: _Reporter):
    """A function pasting each chunk of generated crops back into the full picture (uint8 frames, 4x smaller
    than float); every frame is pasted on its own, so chunk by chunk equals the whole video at once."""
    import torch

    from ..compose import iter_paste_back
    from .inputs import load_rgb_image

    original = torch.from_numpy(load_rgb_image(args.image))
    width, height = crop_info.original_size
    report.info(f"pasting the face back into the {width}x{height} picture (crop box {crop_info.box})")

    def paste(frames: torch.Tensor) -> torch.Tensor:
        parts = [
            (part * 255.0).round().to(torch.uint8)
            for part in iter_paste_back(
                frames, crop_info, original, feather=args.paste_feather, color_match=args.paste_color_match
            )
        ]
        return torch.cat(parts)

    return paste


def use_example_inputs(args: argparse.Namespace, report: _Reporter) -> None:
    """Without --image / --audio, the example portrait and speech of example_inputs/ (said so)."""
    if args.image is None:
        args.image = EXAMPLE_IMAGE
        report.info(f"no --image: using the example portrait {EXAMPLE_IMAGE}")
    if args.audio is None:
        args.audio = EXAMPLE_AUDIO
        report.info(f"no --audio: using the example speech {EXAMPLE_AUDIO}")


def run_generate(args: argparse.Namespace) -> Path:
    """The ``generate`` command; returns the mp4 written."""
    started = time.perf_counter()
    report = _Reporter(args.quiet)
    use_example_inputs(args, report)
    validate_generate_args(args)
    settings = sampling_settings(args, args.length or 0)
    check_outputs(args)

    check_run_folder(args.weights, args.mode, download=args.download)
    if args.download:
        files = download_weights(args.weights, args.mode, log=report.info)
    else:
        files = check_weights(args.weights, args.mode)
    # The Tasks API's MediaPipe files (mediapipe > 0.10.21): into <weights>/mediapipe on first use.
    # The face detector runs only to crop or to find the face: not with --no-crop and a given mask or landmarks.
    needs_detector = not release.variant(args.mode).version == "v2" and not (
        args.no_crop and (args.mask is not None or getattr(args, "landmarks", None) is not None)
    )
    # Landmarks / hands are extracted only from a driving video, and V2 poses need the pose landmarker only to
    # be aligned: saved motion with nothing to detect runs offline.
    fetch_mediapipe_for_run(
        args.weights,
        args.mode,
        face_crop=needs_detector,
        extract=args.driving_video is not None,
        align=release.variant(args.mode).version == "v2" and not args.no_align_poses,
        log=report.info,
    )

    import torch

    from ..audio import compute_audio_features, load_whisper_encoder
    from ..models.loading import load_echomimic
    from ..pipeline.length import driving_frames_needed
    from ..pipeline.vae import load_diffusers_vae
    from ..run import RunRequest, prepare_run, run_prepared
    from ..video_io import Mp4Writer, read_audio

    device = _pick_device(args.device)
    dtype = _pick_dtype(args.dtype, device)
    if device.type == "cpu" and args.device == "auto":
        report.warn_no_gpu()

    reference, face_mask, landmark_reference, crop_info = _prepare_reference(args, args.image, report)
    waveform, sample_rate = read_audio(args.audio)
    report.info(f"speech: {waveform.shape[-1] / sample_rate:.2f} s at {sample_rate} Hz from {args.audio}")

    side_outputs: list[Callable[[], None]] = []  # --save-landmarks / --save-poses: written after the video
    # Only the driving frames the video can show are drawn (a long motion file with --length 4 draws 4).
    draw_frames = driving_frames_needed(
        audio_seconds=waveform.shape[-1] / sample_rate, fps=settings.fps, requested=settings.length
    )
    variant = release.variant(args.mode)
    landmark_images = hand_pose_images = None
    if variant.conditioning == "landmarks":
        landmark_images = _landmark_images(args, landmark_reference, report, side_outputs, draw_frames)
    elif variant.conditioning == "hand_poses":
        hand_pose_images = _hand_pose_images(args, report, side_outputs, draw_frames)

    encoder = load_whisper_encoder(files["whisper"], device=device, dtype=torch.float32)
    audio_features = compute_audio_features(waveform, sample_rate, encoder, settings.fps)
    del encoder
    # Every rule before the models (mask fallback, checks, frame plan, trimmed sound) is the library's.
    prepared = prepare_run(
        RunRequest(
            variant=args.mode,
            picture=reference,
            settings=settings,
            audio_features=audio_features,
            face_mask=face_mask,
            landmark_images=landmark_images,
            hand_pose_images=hand_pose_images,
        ),
        face_detector_dir=lambda: args.weights,
    )

    report.info(f"loading the {args.mode} models from {args.weights} on {device} ({str(dtype).replace('torch.', '')})")
    models = load_echomimic(args.weights, args.mode, config_dir=args.config_dir, device=device, dtype=dtype)
    if getattr(args, "compile", False):
        from ..models.compile import compile_unet_blocks

        compile_unet_blocks(models.denoising_unet)
    vae = load_diffusers_vae(files["vae_config"].parent, device, dtype)

    for line in prepared.describe():
        report.info(line)
    if settings.deep_cache_interval > 1:
        report.info(
            f"  deep-feature cache: the whole UNet every {count(settings.deep_cache_interval, 'step')}, "
            f"depth {settings.deep_cache_depth} between (approximate)"
        )
    # Frames go to the mp4 (and --save-frames) chunk by chunk as they are decoded: memory stays flat in
    # the video's length. Both files appear only once complete (temporary files renamed at the end).
    height, width = settings.height, settings.width
    paste = _paste_back_chunks(args, crop_info, report) if args.paste_back else None
    assert prepared.speech is not None
    with contextlib.ExitStack() as outputs:
        writer = outputs.enter_context(Mp4Writer(args.out, settings.fps, prepared.speech.waveform, sample_rate))
        saved = (
            None
            if args.save_frames is None
            else outputs.enter_context(NpyFramesWriter(args.save_frames, prepared.plan.num_frames, height, width))
        )

        def on_frames(chunk: torch.Tensor) -> None:
            if saved is not None:
                saved.write(chunk)
            writer.write(chunk if paste is None else paste(chunk))

        report.start_sampling()
        video = run_prepared(
            prepared,
            models,
            vae,
            progress=report.progress,
            on_step=_preview_writer(args, settings.steps, report),
            on_frames=on_frames,
        )
    out, num_frames = writer.path, writer.frames_written
    for write_side_output in side_outputs:
        write_side_output()
    if paste is not None:
        width, height = crop_info.original_size
    report.info(
        f"wrote {out}: {num_frames} frames, {width}x{height}, {video.fps:g} fps "
        f"({num_frames / video.fps:.2f} s) in {time.perf_counter() - started:.1f} s"
    )
    return out
