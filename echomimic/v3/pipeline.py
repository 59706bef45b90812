"""V3 flash sampling: the official flash pipeline for one chunk, and chunk after chunk for any length.

One chunk (``video_length`` frames, at most ``chunk_frames``) is numerically the official
``WanFunInpaintAudioPipeline`` as infer_flash.py drives it (conventions in ../shared/parity_v3/README.md):
seeded noise, the inpainting input (the reference as frame 0, mask latents 1 on latent frame 0), UniPC flow
steps with shift, audio guidance (a second call with the audio zeroed), TeaCache, VAE decode.

Longer speech is made in chunks of ``chunk_frames`` frames that overlap by ``chunk_overlap`` frames:

- chunk k > 0 starts from the last ``chunk_overlap`` frames of chunk k - 1 as its known (inpainting) frames,
  with the mask latents 1 on their latent frames; the reference picture stays the identity anchor through
  the CLIP tokens, which every chunk gets;
- the audio windows are cut from one embedding of the whole speech, so they run on across chunks;
- over the overlap the two chunks are cross-faded (linear weights strictly between 0 and 1);
- each chunk is decoded and handed to ``on_frames`` before the next one starts (only the overlap is held
  back), so memory does not grow with the length;
- chunk k uses the noise of seed + k.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .. import release
from ..errors import CancelledError, InputError
from .audio import windows
from .audio_windows import VIDEO_FRAMES_PER_LATENT
from .scheduler import make_flow_unipc
from .teacache import DEFAULT_SKIP_START, DEFAULT_THRESHOLD, MODES, make_teacache

if TYPE_CHECKING:
    import torch

    from .audio import V3AudioEncoder
    from .image_encoder import ClipVisionEncoder
    from .transformer import FlashTransformer
    from .vae import WanVAE

LATENT_CHANNELS = 16
SPATIAL_SCALE = 8
SIZE_MULTIPLE = 16  # the official get_sample_size rounds both sides down to 16
OFFICIAL_FPS = release.DEFAULT_V3_FPS
OFFICIAL_SEED = release.DEFAULT_SEED["v3"]
OFFICIAL_SAMPLE_SIZE = (768, 768)  # (height, width): the maximum area
OFFICIAL_CHUNK_FRAMES = 81  # infer_flash.py's video_length
DEFAULT_CHUNK_OVERLAP = 9  # 0.36 s at 25 fps: two latent frames of context after the first
# "official": infer_flash.py cuts the speech at int(F / 25 * 16000) samples whatever the fps (the audio runs
# at the wrong speed when fps != 25); "fps": cut at the video's fps. Identical at 25 fps.
AUDIO_TIMINGS = ("fps", "official")


@dataclass(frozen=True)
class FlashProgress:
    """One unit of work done: a denoising step of a chunk, or a chunk decoded (``step == steps``)."""

    done: int
    total: int
    step: int
    steps: int
    window: int  # the chunk
    windows: int
    unit: str = "chunk"


ProgressCallback = Callable[[FlashProgress], None]


@dataclass(frozen=True)
class FlashSettings:
    """Everything that decides a flash run besides the inputs; defaults are run_flash.sh's.

    ``teacache_mode``: "official" (parity) or "per-step" (keeps the audio guidance at cached steps; README).
    ``audio_timing``: "fps" (ours) or "official" (AUDIO_TIMINGS).
    ``audio_cfg`` 1 skips the zeroed-audio call (no audio guidance).
    """

    steps: int = 8
    shift: float = 5.0
    audio_cfg: float = 3.0
    seed: int = OFFICIAL_SEED
    fps: float = OFFICIAL_FPS
    teacache: bool = True
    teacache_threshold: float = DEFAULT_THRESHOLD
    teacache_skip_start: int = DEFAULT_SKIP_START
    teacache_mode: str = "official"
    chunk_frames: int = OFFICIAL_CHUNK_FRAMES
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
    audio_timing: str = "fps"

    @property
    def audio_cut_fps(self) -> float:
        """The frame rate the speech is cut with: the video's (ours), or 25 whatever the fps ("official")."""
        return OFFICIAL_FPS if self.audio_timing == "official" else self.fps

    def validated(self) -> FlashSettings:
        """Raise :class:`InputError` (one line, what to change) for settings that cannot run."""
        for name in ("shift", "audio_cfg", "fps", "teacache_threshold"):
            value = getattr(self, name)
            if not math.isfinite(value) or (name in ("shift", "fps") and value <= 0):
                raise InputError(
                    f"{name.replace('_', ' ')} {value}: give a finite number"
                    + (" > 0." if name in ("shift", "fps") else ".")
                )
        if not 1 <= self.steps <= 200:
            raise InputError(f"steps {self.steps}: give 1 to 200 (flash is distilled for 8).")
        if self.audio_timing not in AUDIO_TIMINGS:
            raise InputError(f"audio timing {self.audio_timing!r}: use one of {', '.join(AUDIO_TIMINGS)}.")
        if self.teacache_mode not in MODES:
            raise InputError(f"TeaCache mode {self.teacache_mode!r}: use one of {', '.join(MODES)}.")
        if self.chunk_frames < 5 or (self.chunk_frames - 1) % 4:
            raise InputError(f"chunk frames {self.chunk_frames}: give 1 + 4k frames, at least 5 (official 81).")
        if self.chunk_overlap < 1 or (self.chunk_overlap - 1) % 4 or self.chunk_overlap >= self.chunk_frames:
            raise InputError(
                f"chunk overlap {self.chunk_overlap}: give 1 + 4k frames, fewer than the chunk "
                f"frames ({self.chunk_frames}); for example 5 or 9."
            )
        return self


# -------------------------------------------------------------------------------------------- sizes and frames


def official_size(
    image_width: int, image_height: int, sample_size: tuple[int, int] = OFFICIAL_SAMPLE_SIZE
) -> tuple[int, int]:
    """(height, width) of the video for a picture, as infer_flash.get_sample_size: the picture's aspect ratio
    at most ``sample_size``'s area, both sides rounded down to 16."""
    width, height = float(image_width), float(image_height)
    area = sample_size[0] * sample_size[1]
    if area < width * height:
        ratio = math.sqrt(width * height / area)
        width, height = width / ratio // SIZE_MULTIPLE * SIZE_MULTIPLE, height / ratio // SIZE_MULTIPLE * SIZE_MULTIPLE
    else:
        width, height = width // SIZE_MULTIPLE * SIZE_MULTIPLE, height // SIZE_MULTIPLE * SIZE_MULTIPLE
    if width < SIZE_MULTIPLE or height < SIZE_MULTIPLE:
        raise InputError(
            f"the picture ({image_width}x{image_height}) is smaller than one 16x16 latent patch; use a larger portrait."
        )
    return int(height), int(width)


def check_size(width: int, height: int) -> None:
    if width < SIZE_MULTIPLE or height < SIZE_MULTIPLE or width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        raise InputError(
            f"size {width}x{height}: V3 needs a width and height that are multiples of 16; "
            "or let the picture decide the size."
        )


def speech_duration(num_samples: int, sample_rate: int) -> float:
    """The duration moviepy reports: ffmpeg's, rounded to the centisecond (half up)."""
    return ((num_samples * 200 + sample_rate) // (2 * sample_rate)) / 100.0


def official_frame_count(duration: float, fps: float, video_length: int = OFFICIAL_CHUNK_FRAMES) -> int:
    """infer_flash.py's frame count: ``min(int(d * fps), video_length)`` rounded down to 1 + 4k."""
    frames = min(int(duration * fps), video_length)
    if frames < 1:
        raise InputError(f"the speech lasts {duration:.2f} s: too short for one frame at {fps:g} fps.")
    return frames if frames == 1 else (frames - 1) // 4 * 4 + 1


def frame_count(duration: float, fps: float, chunk_frames: int, length: int | None = None) -> int:
    """Frames of the video: the whole speech (or ``length``). Up to one chunk it is the official count
    (1 + 4k); longer videos keep every frame of the speech."""
    frames = int(duration * fps) if length is None else min(length, int(duration * fps))
    if frames < 1:
        raise InputError(f"the speech lasts {duration:.2f} s: too short for one frame at {fps:g} fps.")
    if frames <= chunk_frames:
        return official_frame_count(duration, fps, frames)
    return frames


@dataclass(frozen=True)
class Chunk:
    """Frames [start, start + frames) of the video; ``known`` leading frames come from the previous chunk."""

    index: int
    start: int
    frames: int
    known: int


def plan_chunks(num_frames: int, chunk_frames: int, overlap: int) -> list[Chunk]:
    """Chunks covering ``num_frames``: one when it fits, else chunks of ``chunk_frames`` overlapping by
    ``overlap``; the last one is as long as needed (1 + 4k, may run past the end: its tail is dropped)."""
    if num_frames <= chunk_frames:
        return [Chunk(0, 0, num_frames, 0)]
    chunks = [Chunk(0, 0, chunk_frames, 0)]
    while chunks[-1].start + chunks[-1].frames < num_frames:
        start = chunks[-1].start + chunks[-1].frames - overlap
        rest = num_frames - start
        frames = min(chunk_frames, overlap + 4 * math.ceil((rest - overlap) / 4))
        chunks.append(Chunk(len(chunks), start, frames, overlap))
    return chunks


def generated_frames(chunks: list[Chunk]) -> int:
    """Frames the chunks make in all (the audio windows must cover them)."""
    return chunks[-1].start + chunks[-1].frames


def speech_features(
    encoder: V3AudioEncoder, speech_16k: np.ndarray, num_frames: int, settings: FlashSettings
) -> torch.Tensor:
    """(F_gen, L, C) wav2vec2 features for a video of ``num_frames`` frames: loudness-normalised speech cut at
    the settings' audio timing, silence appended where the last chunk runs past the speech (F_gen =
    :func:`generated_frames`). One video chunk is exactly the official audio path."""
    from .audio import SAMPLE_RATE, cut_samples, loudness_normalize

    chunks = plan_chunks(num_frames, settings.chunk_frames, settings.chunk_overlap)
    needed = generated_frames(chunks)
    normalised = loudness_normalize(speech_16k, SAMPLE_RATE)
    samples = cut_samples(needed, settings.audio_cut_fps)
    if normalised.shape[0] < samples:
        normalised = np.concatenate([normalised, np.zeros(samples - normalised.shape[0], normalised.dtype)])
    return encoder.frame_features(normalised, needed, cut_fps=settings.audio_cut_fps)


# ------------------------------------------------------------------------------------------------- reference


def resize_reference(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H0, W0, 3) uint8 -> (height, width, 3) uint8 with PIL's LANCZOS, as get_image_to_video_latent2."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.LANCZOS))


def clip_input(reference: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1] as ``TF.to_tensor(img).sub_(0.5).div_(0.5)``."""
    import torch

    x = torch.from_numpy(np.array(reference, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)
    return x.sub(0.5).div(0.5)[None]


def video_input(reference: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, 1, H, W) in [-1, 1] as the pipeline's image processor (``2x - 1``)."""
    import torch

    x = torch.from_numpy(np.array(reference, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)
    return (2.0 * x - 1.0)[None, :, None]


# ---------------------------------------------------------------------------------------------------- models


class FlashVae(Protocol):
    """What sampling needs of a Wan VAE (``echomimic.v3.vae.WanVAE``, or an adapter over ComfyUI's)."""

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(1, 3, F, H, W) in [-1, 1] -> (1, 16, F_lat, H/8, W/8) normalised latents (posterior mode)."""
        ...

    def decode_chunks(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        """Normalised latents -> pieces (1, 3, n, H, W) in [-1, 1] whose concatenation is the video."""
        ...


@dataclass
class FlashModels:
    """The networks of a V3 folder (``echomimic.v3.files.load_flash_models``)."""

    transformer: FlashTransformer
    vae: WanVAE
    clip: ClipVisionEncoder

    def clip_features(self, reference: np.ndarray) -> torch.Tensor:
        """(1, 257, width) CLIP tokens of the reference as sized for the video (official preprocessing)."""
        return self.clip.encode(clip_input(reference))


def inpainting_condition(vae: FlashVae, known: torch.Tensor, num_frames: int) -> torch.Tensor:
    """y (1, 20, F_lat, h, w): mask latents (4 ch, 1 on the known latent frames) + VAE latents of the masked
    video (the ``known`` frames (1, 3, n, H, W) in [-1, 1], then zeros up to ``num_frames``)."""
    import torch

    n = known.shape[2]
    masked = torch.zeros((1, 3, num_frames, known.shape[3], known.shape[4]), dtype=torch.float32, device=known.device)
    masked[:, :, :n] = known
    latents = vae.encode(masked)
    known_latent_frames = 1 + (n - 1) // VIDEO_FRAMES_PER_LATENT
    mask = torch.zeros((1, 4, *latents.shape[2:]), dtype=latents.dtype, device=latents.device)
    mask[:, :, :known_latent_frames] = 1.0
    return torch.cat([mask, latents], dim=1)


def initial_noise(seed: int, num_frames: int, height: int, width: int) -> torch.Tensor:
    """(1, 16, F_lat, h, w) float32 from ``torch.Generator('cpu').manual_seed(seed)`` (the official CPU draw)."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (
        1,
        LATENT_CHANNELS,
        (num_frames - 1) // VIDEO_FRAMES_PER_LATENT + 1,
        height // SPATIAL_SCALE,
        width // SPATIAL_SCALE,
    )
    return torch.randn(shape, generator=generator, dtype=torch.float32)


@dataclass
class StepTrace:
    """What a sampling run did, for tests and reports: every call's output and every step's results."""

    call_outputs: list[torch.Tensor]
    step_model_outputs: list[torch.Tensor]
    step_latents: list[torch.Tensor]
    computed: list[bool]


def denoise(
    transformer: FlashTransformer,
    noise: torch.Tensor,
    y: torch.Tensor,
    clip_fea: torch.Tensor,
    prompt_embeds: torch.Tensor,
    audio_embeds: torch.Tensor,
    settings: FlashSettings,
    *,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    trace: StepTrace | None = None,
) -> torch.Tensor:
    """The official loop for one chunk: latents (1, 16, F_lat, h, w) after ``settings.steps`` UniPC steps.

    audio_embeds (1, F, 5, L, C) for this chunk's F frames. Per step: the audio call, then (audio_cfg != 1) the
    zeroed-audio call and ``un + audio_cfg * (cond - un)``; the prompt, y and CLIP features are the same for
    both (there is no text guidance in flash).
    """
    import torch

    device, dtype = transformer.patch_embedding.weight.device, transformer.dtype
    scheduler = make_flow_unipc(settings.steps, settings.shift, device=device)
    cache = (
        make_teacache(settings.teacache_mode, settings.steps, settings.teacache_threshold, settings.teacache_skip_start)
        if settings.teacache
        else None
    )
    latents = noise.to(device=device, dtype=dtype)
    y, clip_fea = y.to(device=device, dtype=dtype), clip_fea.to(device=device, dtype=dtype)
    prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)
    audio = audio_embeds.to(device=device, dtype=dtype)
    silent = torch.zeros_like(audio)
    guided = settings.audio_cfg != 1.0
    with torch.no_grad():
        for index, t in enumerate(scheduler.timesteps):
            timestep = t.reshape(1).to(device)
            velocity = transformer(
                latents,
                timestep,
                prompt_embeds,
                audio,
                y,
                clip_fea,
                block_cache=None if cache is None else cache.for_call(True),
            )
            calls = [velocity]
            if guided:
                unguided = transformer(
                    latents,
                    timestep,
                    prompt_embeds,
                    silent,
                    y,
                    clip_fea,
                    block_cache=None if cache is None else cache.for_call(False),
                )
                calls.append(unguided)
                velocity = unguided + settings.audio_cfg * (velocity - unguided)
            latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
            if trace is not None:
                trace.call_outputs.extend(c.float().cpu() for c in calls)
                trace.step_model_outputs.append(velocity.float().cpu())
                trace.step_latents.append(latents.float().cpu())
            if on_step is not None:
                on_step(index, latents)
    if trace is not None and cache is not None:
        trace.computed = list(cache.computed)
    return latents


# ------------------------------------------------------------------------------------------------ generation


def _crossfade_weights(overlap: int) -> np.ndarray:
    """Weights of the NEW chunk over the overlap: (i + 1) / (overlap + 1), strictly between 0 and 1."""
    return (np.arange(overlap, dtype=np.float32) + 1.0) / (overlap + 1.0)


def generate_flash(
    transformer: FlashTransformer,
    vae: FlashVae,
    reference: np.ndarray,
    clip_fea: torch.Tensor,
    prompt_embeds: torch.Tensor,
    audio_features: torch.Tensor,
    num_frames: int,
    settings: FlashSettings,
    *,
    on_frames: Callable[[torch.Tensor], None] | None = None,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_latents: Callable[[torch.Tensor], None] | None = None,
    trace: StepTrace | None = None,
) -> int:
    """Make ``num_frames`` frames and hand them to ``on_frames`` in order, as (n, H, W, 3) float32 in [0, 1].

    reference: (H, W, 3) uint8 already at the video size (:func:`resize_reference`). clip_fea: (1, 257, width)
    CLIP tokens of it (:meth:`FlashModels.clip_features`, or ComfyUI's CLIP Vision Encode). audio_features:
    (F_gen, L, C) per-frame wav2vec2 features of the whole speech (``V3AudioEncoder.frame_features``),
    F_gen = :func:`generated_frames` of the plan; each chunk takes its ±2 windows from them.
    ``progress`` gets a :class:`FlashProgress` per denoising step and per decoded chunk; ``cancelled()`` is polled
    at every step; ``on_latents`` gets the latents after every step (previews). Returns the number of frames delivered.
    """
    import torch

    settings = settings.validated()
    height, width = reference.shape[:2]
    check_size(width, height)
    chunks = plan_chunks(num_frames, settings.chunk_frames, settings.chunk_overlap)
    needed = generated_frames(chunks)
    if audio_features.ndim != 3 or audio_features.shape[0] != needed:
        raise InputError(
            f"audio features of shape {tuple(audio_features.shape)}: need ({needed}, layers, width), "
            f"one row per frame the chunks make."
        )
    total = len(chunks) * (settings.steps + 1)
    done = 0

    def tick(chunk: Chunk, step: int, latents: torch.Tensor | None = None) -> None:
        nonlocal done
        if latents is not None and on_latents is not None:
            on_latents(latents)
        done += 1
        if progress is not None:
            progress(FlashProgress(done, total, step, settings.steps, chunk.index, len(chunks)))
        if cancelled is not None and cancelled():
            raise CancelledError("stopped by the user")

    held: torch.Tensor | None = None  # the previous chunk's overlap frames, not yet delivered
    delivered = 0
    for chunk in chunks:
        if chunk.known:
            assert held is not None
            known = held.permute(3, 0, 1, 2)[None] * 2.0 - 1.0  # (1, 3, n, H, W) in [-1, 1]
        else:
            known = video_input(reference)
        y = inpainting_condition(vae, known, chunk.frames)
        noise = initial_noise(settings.seed + chunk.index, chunk.frames, height, width)
        audio = windows(audio_features, chunk.start, chunk.frames)
        latents = denoise(
            transformer,
            noise,
            y,
            clip_fea,
            prompt_embeds,
            audio,
            settings,
            on_step=functools.partial(tick, chunk),
            trace=trace,
        )
        frames = torch.cat([piece.float().cpu() for piece in vae.decode_chunks(latents)], dim=2)
        frames = (frames[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).cpu()  # (n, H, W, 3)
        del latents
        if chunk.known:
            assert held is not None
            weights = torch.from_numpy(_crossfade_weights(chunk.known)).view(-1, 1, 1, 1)
            frames[: chunk.known] = weights * frames[: chunk.known] + (1 - weights) * held
        last = chunk is chunks[-1]
        keep = 0 if last else settings.chunk_overlap
        ready = frames[: frames.shape[0] - keep]
        ready = ready[: max(0, num_frames - delivered)]
        if on_frames is not None and ready.shape[0]:
            on_frames(ready)
        delivered += ready.shape[0]
        held = None if last else frames[frames.shape[0] - keep :].clone()  # a copy: the chunk itself is freed
        tick(chunk, settings.steps - 1)  # the decode: shown as the chunk's last step
    return delivered


def with_defaults(settings: FlashSettings | None = None, **changes) -> FlashSettings:
    """``settings`` (default: run_flash.sh's) with ``changes`` applied and validated."""
    return replace(settings or FlashSettings(), **changes).validated()
