"""Reading and decoding the user's files for ``generate``: portrait, mask, landmarks/driving video."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import release
from ..errors import InputError
from .report import _Reporter

if TYPE_CHECKING:
    import numpy as np
    import torch


def load_rgb_image(path: Path, report: _Reporter | None = None) -> np.ndarray:
    """An image file as ``[H, W, 3]`` float32 0..1 RGB, as it displays (see :mod:`echomimic.images`)."""
    from ..images import read_rgb_image

    return read_rgb_image(path, note=None if report is None else report.info)


def load_mask_image(path: Path) -> np.ndarray:
    """A mask image as ``[H, W]`` float32 0..1 (white = 1; an alpha channel is ignored)."""
    from ..images import read_mask_image

    return read_mask_image(path)


def _pixels_at(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[H, W, 3]`` 0..1 at width x height by the library's one resize rule (pipeline.inputs.reference_pixels)."""
    from ..pipeline.inputs import reference_pixels

    return reference_pixels(image, height, width)[0].permute(1, 2, 0).numpy()


def _mask_at(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A ``[H, W]`` mask at width x height by the library's rules (pipeline.inputs.prepare_face_mask: an empty
    mask is refused here, before anything loads, as in the nodes)."""
    from ..pipeline.inputs import prepare_face_mask

    return prepare_face_mask(mask, height, width)[0, 0, 0].numpy()


LANDMARK_REFERENCE_SIDE = 512  # the face mesh needs a face of a decent size in pixels


def _prepare_reference(args: argparse.Namespace, image_path: Path, report: _Reporter):
    """Returns ``(reference [H', W', 3] 0..1, face_mask [H', W'] 0..1, landmark_reference, crop_info)``: the
    picture (cropped around the face unless ``--no-crop``) at any size; the library resizes reference and
    mask to the output size by its own rules, exactly as for the nodes. ``crop_info``
    (:class:`echomimic.compose.CropInfo`) says where the reference came from in the picture, for ``--paste-back``.

    ``landmark_reference`` is the picture at the output's aspect with a shorter side of at least 512 pixels,
    for finding the reference's landmarks (pose modes); None in the audio modes and with given landmarks
    and ``--no-crop`` (then the face detector does not run at all, and the mask is None).
    The mask is None too in the audio modes with ``--no-crop`` and no ``--mask``: the run detects it
    (:func:`echomimic.run.prepare_run`).
    """
    from ..landmarks import face_mask_and_crop

    image = load_rgb_image(image_path, report)
    if release.variant(args.mode).version == "v2":  # V2 animates the whole half-body picture: no face crop, no mask
        from ..compose import whole_image_crop_info

        crop_info = whole_image_crop_info(image.shape[1], image.shape[0], (args.width, args.height))
        return image, None, None, crop_info
    landmark_driven = release.variant(args.mode).conditioning == "landmarks"
    if landmark_driven and args.landmarks is not None and args.no_crop:  # nothing here needs the face detector
        from ..compose import whole_image_crop_info

        crop_info = whole_image_crop_info(image.shape[1], image.shape[0], (args.width, args.height))
        return image, None, None, crop_info
    if not landmark_driven and args.no_crop and args.mask is None:  # the mask is detected by the run (echomimic.run)
        from ..compose import whole_image_crop_info

        return image, None, None, whole_image_crop_info(image.shape[1], image.shape[0])
    user_mask = None
    if args.mask is not None:
        user_mask = _mask_at(load_mask_image(args.mask), image.shape[1], image.shape[0])
    try:
        crop = face_mask_and_crop(
            image, crop=not args.no_crop, size=(args.width, args.height), mask=user_mask, models_dir=args.weights
        )
    except InputError as error:
        if not landmark_driven or not str(error).startswith("No face was found"):
            raise
        # The library's advice (pass a face mask) does not apply: the pose modes refuse --mask.
        advice = ", or add --no-crop to animate the whole picture" if args.landmarks is not None else ""
        raise InputError(
            f"No face was found in the reference image {image_path}: the pose modes crop it around "
            f"the face; use a clearer, roughly frontal portrait{advice}."
        ) from None
    reference, mask = crop.image, crop.mask
    landmark_reference = None
    if landmark_driven:
        scale = max(1.0, LANDMARK_REFERENCE_SIDE / min(args.width, args.height))
        big_width, big_height = round(args.width * scale), round(args.height * scale)
        if scale == 1.0:
            landmark_reference = _pixels_at(reference, args.width, args.height)
        elif args.no_crop:
            landmark_reference = _pixels_at(image, big_width, big_height)
        else:
            landmark_reference = face_mask_and_crop(
                image, size=(big_width, big_height), mask=user_mask, models_dir=args.weights
            ).image
    return reference, mask, landmark_reference, crop.crop_info


def _landmark_images(
    args: argparse.Namespace,
    landmark_reference: np.ndarray,
    report: _Reporter,
    pending: list[Callable[[], None]] | None = None,
    draw_frames: int | None = None,
) -> np.ndarray:
    """Drawn landmark frames ``[F, H, W, 3]`` 0..1 for the pose modes.

    landmark_reference: the reference picture ``[H', W', 3]`` (same aspect as the output) whose face
    the driving video's motion is transferred onto. pending: where the --save-landmarks write is queued to
    run after the video is written (a failed run then leaves an existing file as it was); None: now.
    draw_frames: draw only the first this many (pipeline.length.driving_frames_needed); --save-landmarks
    still gets every frame.
    """
    from ..landmarks import LandmarkSequence, align_landmarks, draw_landmarks, extract_landmarks
    from ..landmarks.sequence import frame_list

    if args.landmarks is not None:
        sequence = LandmarkSequence.load(args.landmarks)
        report.info(f"landmarks: {sequence.num_frames} frames from {args.landmarks}")
    else:
        frames = _driving_frames(args, report)
        report.info(f"extracting landmarks from {frames.shape[0]} frames of {args.driving_video} ...")
        driver = extract_landmarks(frames, models_dir=args.weights)
        if driver.filled_count:
            report.info(f"note: {driver.missing_face_report()} ({args.driving_video.name})")
        reference_landmarks = extract_landmarks(landmark_reference[None], models_dir=args.weights)
        sequence = align_landmarks(driver, reference_landmarks)
    if args.save_landmarks is not None:
        _save_now_or_later(pending, sequence.save, args.save_landmarks, "landmarks", report)
    used = sequence if draw_frames is None else sequence.first(draw_frames)
    blank = used.check_drawable(f"The landmarks of {args.landmarks or args.driving_video}")
    if blank:
        report.info(
            f"note: {len(blank)} of {used.num_frames} landmark frames have no point on the canvas "
            f"(frames {frame_list(blank)}); those frames get no pose guidance"
        )
    return draw_landmarks(used, args.width, args.height)


def _driving_frames(args: argparse.Namespace, report: _Reporter) -> torch.Tensor:
    """The frames of --driving-video (at most --length), with a note when its frame rate is not the output's."""
    from ..video_io import read_video_frames

    frames, video_fps = read_video_frames(args.driving_video, max_frames=args.length)
    if abs(video_fps - args.fps) > 0.01:
        report.info(
            f"note: {args.driving_video.name} runs at {video_fps:g} fps, the output at {args.fps:g} fps; "
            "its frames are used one per output frame"
        )
    return frames


def _hand_pose_images(
    args: argparse.Namespace,
    report: _Reporter,
    pending: list[Callable[[], None]] | None = None,
    draw_frames: int | None = None,
) -> np.ndarray:
    """Drawn hand-pose frames ``[F, H, W, 3]`` 0..1 for the v2 modes, from --driving-video or --poses,
    aligned to the person in --image unless --no-align-poses. pending, draw_frames: as for
    :func:`_landmark_images`."""
    from ..poses import HandPoseSequence, hand_pose_images

    portrait = load_rgb_image(args.image)
    driving_frames = poses = None
    if args.poses is not None:
        poses = HandPoseSequence.load(args.poses)
        report.info(f"hand poses: {poses.num_frames} frames from {args.poses}")
    else:
        driving_frames = _driving_frames(args, report)
        report.info(f"extracting hand poses from {driving_frames.shape[0]} frames of {args.driving_video} ...")
    frames, poses = hand_pose_images(
        portrait,
        args.width,
        args.height,
        driving_frames=driving_frames,
        poses=poses,
        align=not args.no_align_poses,
        models_dir=args.weights,
        note=report.info,
        ref_w=args.pose_ref_w,
        draw_frames=draw_frames,
    )
    if args.save_poses is not None:
        _save_now_or_later(pending, poses.save, args.save_poses, "hand poses", report)
    return frames


def _save_now_or_later(
    pending: list[Callable[[], None]] | None, save: Callable[[Path], object], path: Path, what: str, report: _Reporter
) -> None:
    """``save(path)`` now, or queued in ``pending`` to run once the video is written."""

    def write() -> None:
        save(path)
        report.info(f"saved the {what} to {path}")

    if pending is None:
        write()
    else:
        pending.append(write)
