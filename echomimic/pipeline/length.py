"""How many frames a run makes, and which driving frame (landmarks / hand poses) each video frame uses.

One rule for every front-end: the command line prints the plan before generating, the audio-features
node trims the sound to exactly the planned frames, and the sampler follows the same plan. Nothing is
shortened silently: :class:`FramePlan` says how many frames will be made and why.

Driving sequences shorter than the video follow a length policy:

- ``loop`` (default): start again from the first frame;
- ``ping-pong``: play backwards, then forwards again (no frame shown twice in a row);
- ``hold``: keep the last frame;
- ``stop``: end the video with the driving sequence (the shorter of the two).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..release import DEFAULT_LENGTH_POLICY, LENGTH_POLICIES, MAX_FPS

__all__ = [
    "DEFAULT_LENGTH_POLICY",
    "LENGTH_POLICIES",
    "FramePlan",
    "driving_frames_needed",
    "frames_to_draw",
    "driving_index",
    "plan_frame_count",
]


def check_length_policy(policy: str) -> str:
    if policy not in LENGTH_POLICIES:
        raise InputError(f"Unknown length policy {policy!r}; choose one of {', '.join(LENGTH_POLICIES)}.")
    return policy


def driving_index(frame: int, driving_frames: int, policy: str) -> int:
    """The driving-sequence frame shown at video frame ``frame`` (``0 <= frame``)."""
    if frame < driving_frames:
        return frame
    if policy == "loop":
        return frame % driving_frames
    if policy == "ping-pong":
        if driving_frames == 1:
            return 0
        period = 2 * driving_frames - 2
        phase = frame % period
        return phase if phase < driving_frames else period - phase
    if policy == "hold":
        return driving_frames - 1
    raise InputError(f"Video frame {frame} is past the {driving_frames}-frame driving sequence (policy {policy!r}).")


@dataclass(frozen=True)
class FramePlan:
    """The frames a run will produce.

    Attributes:
        num_frames: video frames to generate.
        reason: one sentence for the user: what limits the length, and how the driving sequence is extended.
        driving_frames: length of the landmark / hand-pose sequence (None without one).
        policy: the length policy applied to the driving sequence.
    """

    num_frames: int
    reason: str
    driving_frames: int | None = None
    policy: str = DEFAULT_LENGTH_POLICY

    def driving_indices(self, frames: Sequence[int] | None = None) -> list[int]:
        """The driving frame of each video frame in ``frames`` (default: all of them)."""
        if self.driving_frames is None:
            raise InputError("This run has no driving (landmark / pose) sequence.")
        frames = range(self.num_frames) if frames is None else frames
        return [driving_index(int(frame), self.driving_frames, self.policy) for frame in frames]


def plan_frame_count(
    *,
    audio_frames: int | None,
    driving_frames: int | None = None,
    requested: int = 0,
    policy: str = DEFAULT_LENGTH_POLICY,
) -> FramePlan:
    """Decide the video length.

    audio_frames: frames the audio features cover (None: no audio, landmark variants only).
    driving_frames: frames of the landmark / hand-pose sequence (None: audio variants).
    requested: the user's length; 0 = follow the audio (or the driving sequence without audio).
    The audio always bounds the length (there are no mouth features past its end); a driving sequence
    bounds it only with ``policy="stop"``.
    """
    check_length_policy(policy)
    if audio_frames is not None and audio_frames < 1:
        raise InputError("The audio is shorter than one video frame; use a longer clip.")
    if driving_frames is not None and driving_frames < 1:
        raise InputError("The landmark / pose sequence is empty; give at least one frame.")
    if requested < 0:
        raise InputError("Video length must be at least 1 frame (or 0 to follow the audio).")
    if audio_frames is None and driving_frames is None:
        raise InputError("Give audio features (or landmark images for a landmark variant) to drive the video.")

    if audio_frames is not None:
        length, reason = audio_frames, f"{audio_frames} frames: as long as the audio"
        if requested and requested < audio_frames:
            length, reason = requested, f"{requested} frames as requested (the audio covers {audio_frames})"
        elif requested > audio_frames:
            reason = (
                f"{audio_frames} frames: {requested} were requested but the audio covers only "
                f"{audio_frames} frames; use a longer clip for a longer video"
            )
    else:
        assert driving_frames is not None
        length = requested or driving_frames
        reason = (
            f"{length} frames as requested"
            if requested
            else f"{length} frames: as long as the driving sequence (no audio)"
        )
        if requested > driving_frames and policy == "stop":
            length = driving_frames
            reason = (
                f"{driving_frames} frames: {requested} were requested but the driving sequence has "
                f"only {driving_frames} (length policy 'stop')"
            )

    if driving_frames is not None and length > driving_frames:
        if policy == "stop":
            reason = (
                f"{driving_frames} frames: the driving sequence has {driving_frames} frames and the "
                f"length policy 'stop' ends the video with it (the audio covers {length})"
            )
            length = driving_frames
        else:
            how = {"loop": "looped", "ping-pong": "played back and forth", "hold": "holding its last frame"}
            reason += f"; the {driving_frames}-frame driving sequence is {how[policy]} to fill it"
    return FramePlan(num_frames=int(length), reason=reason + ".", driving_frames=driving_frames, policy=policy)


def driving_frames_needed(*, audio_seconds: float | None, fps: float, requested: int = 0) -> int | None:
    """How many leading frames of a driving sequence a run can show at most, before its length is planned
    (to draw only those: a 10^6-frame pose file with ``--length 4`` draws 4). None: no bound.

    Video frame i shows driving frame i while the sequence lasts (:func:`driving_index`), and a video
    longer than the sequence shows all of it; so the first ``min(F, bound)`` frames give the same video,
    the same plan and the same reasons as all F. The bound is the requested length, or above the frames the
    audio can cover (its features end one frame past the audio; a second of margin).
    """
    bounds = [int(requested)] if requested and requested > 0 else []
    if audio_seconds is not None:
        bounds.append(math.ceil((float(audio_seconds) + 1.0) * float(fps)) + 2)
    return min(bounds) if bounds else None


# Driving images (float32 IMAGE frames) drawn without any bound may take at most this much memory; a longer
# motion file is refused with its size rather than drawn into tens of GB.
MAX_UNBOUNDED_DRAW_BYTES = 8 << 30


def frames_to_draw(
    num_frames: int,
    width: int,
    height: int,
    *,
    audio_seconds: float | None = None,
    fps: float = MAX_FPS,
    requested: int = 0,
    what: str = "The motion sequence",
    fix: str = "give the video's length or its speech to draw only the frames it uses",
) -> int:
    """How many leading frames of a ``num_frames`` driving sequence to draw at ``width`` x ``height``.

    With a bound (``requested`` frames, or speech of ``audio_seconds`` at up to ``fps``): the frames a video of
    it can show (:func:`driving_frames_needed`, never more than the sequence). Without one: all of them,
    unless their float32 images would exceed :data:`MAX_UNBOUNDED_DRAW_BYTES`; then one :class:`InputError`
    line saying the size and ``fix``.
    """
    if requested < 0:
        raise InputError(f"The frame bound must be 0 (all frames) or more, got {requested}.")
    bound = driving_frames_needed(audio_seconds=audio_seconds, fps=fps, requested=requested)
    if bound is not None:
        return max(1, min(int(num_frames), bound))
    needed = int(num_frames) * int(width) * int(height) * 3 * 4
    if needed > MAX_UNBOUNDED_DRAW_BYTES:
        raise InputError(
            f"{what} has {num_frames:,} frames: drawing all of them at {width}x{height} would take "
            f"{needed / 2**30:,.1f} GiB of memory (at most {MAX_UNBOUNDED_DRAW_BYTES / 2**30:g} GiB without a "
            f"bound); {fix}."
        )
    return int(num_frames)
