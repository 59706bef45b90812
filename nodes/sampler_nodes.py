"""The EchoMimic sampler node: portrait + audio features (+ face mask, landmark or hand-pose images) -> video.

Every input rule (mask and reference resizing, lengths, settings) lives in ``echomimic.pipeline``; this node
only converts ComfyUI types and reports progress.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..echomimic.release import (
    DEEP_CACHE_DEFAULT_DEPTH,
    DEEP_CACHE_MAX_DEPTH,
    DEFAULT_LENGTH_POLICY,
    LENGTH_POLICIES,
    SEED_MAX,
)
from .common import AUDIO_FEATURES_TYPE, CATEGORY, MODEL_TYPE, EchoMimicNodeError, finite_inputs, tooltip, user_errors
from .model_nodes import LoadedEchoMimic, load_patched_models
from .previews import step_previewer
from .vae_adapter import ComfyVaeAdapter

if TYPE_CHECKING:
    import torch

    from ..echomimic.audio import AudioFeatures


class EchoMimicSampler:
    DESCRIPTION = (
        "Generates the video (V1: a talking head; V2 semi-body: a half-body with hand gestures): denoises all frames "
        "in "
        "overlapping context windows, conditioned on the portrait, the speech and the landmark images (V1 landmark "
        "variants) or hand-pose images (V2). The progress bar covers the whole node (reference encoding, every "
        "step and window, every decoded chunk); Cancel stops it within one window or decoded chunk."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": (MODEL_TYPE, tooltip("From Load EchoMimic Model.")),
                "vae": (
                    "VAE",
                    tooltip(
                        "The SD1.5 VAE from Load VAE, e.g. vae-ft-mse-840000-ema-pruned.safetensors "
                        "(the official EchoMimic uses sd-vae-ft-mse)."
                    ),
                ),
                "reference_image": (
                    "IMAGE",
                    tooltip(
                        "The portrait to animate: V1 a face, ideally the output of "
                        "EchoMimic Face Mask and Crop; V2 a half-body photo. Resized to "
                        "width x height if needed."
                    ),
                ),
                "audio_features": (
                    AUDIO_FEATURES_TYPE,
                    tooltip("From EchoMimic Audio Features; sets the length and fps."),
                ),
                "width": (
                    "INT",
                    tooltip(
                        "Video width in pixels, a multiple of 8 (official: V1 512, V2 768); 0 = "
                        "the variant's official width.",
                        default=512,
                        min=0,
                        max=2048,
                        step=8,
                    ),
                ),
                "height": (
                    "INT",
                    tooltip(
                        "Video height in pixels, a multiple of 8 (official: V1 512, V2 768); 0 = "
                        "the variant's official height.",
                        default=512,
                        min=0,
                        max=2048,
                        step=8,
                    ),
                ),
                "length": (
                    "INT",
                    tooltip(
                        "Frames to generate; 0 = as many as the audio covers (never more than it).",
                        default=0,
                        min=0,
                        max=100000,
                    ),
                ),
                "steps": (
                    "INT",
                    tooltip(
                        "Denoising steps; 0 = the variant's official default (30, accelerated 6).",
                        default=0,
                        min=0,
                        max=200,
                    ),
                ),
                "cfg": (
                    "FLOAT",
                    tooltip(
                        "Audio/face guidance scale; 0 = the variant's official default (2.5, accelerated "
                        "1.0). 1 or less runs without guidance (faster).",
                        default=0.0,
                        min=0.0,
                        max=20.0,
                        step=0.1,
                        round=0.01,
                    ),
                ),
                "seed": (
                    "INT",
                    tooltip(
                        "Seed of the initial noise.", default=420, min=0, max=SEED_MAX, control_after_generate=True
                    ),
                ),
                "context_frames": (
                    "INT",
                    tooltip(
                        "Frames denoised together in one window (official 12). Memory "
                        "grows with it, not with the video length.",
                        default=12,
                        min=1,
                        max=64,
                    ),
                ),
                "context_overlap": (
                    "INT",
                    tooltip(
                        "Frames shared by neighbouring windows (official 3); smaller than context_frames.",
                        default=3,
                        min=0,
                        max=63,
                    ),
                ),
            },
            "optional": {
                "face_mask": (
                    "MASK",
                    tooltip(
                        "Audio variants: where the face may move (1) in the reference. Not "
                        "connected: detected from the reference image."
                    ),
                ),
                "landmark_images": (
                    "IMAGE",
                    tooltip(
                        "Landmark variants (required there): one drawn landmark image per "
                        "frame, from EchoMimic Draw Landmarks."
                    ),
                ),
                "hand_pose_images": (
                    "IMAGE",
                    tooltip(
                        "V2 variants (required there): one drawn hand-pose image per "
                        "frame, at the video's aspect ratio (from the hand-pose drawing "
                        "node)."
                    ),
                ),
                "length_policy": (
                    list(LENGTH_POLICIES),
                    tooltip(
                        "Landmark / hand-pose images shorter than the audio: loop them, play them back and forth "
                        "(ping-pong), hold the last one, or stop the video with them. The frame_count output says "
                        "what was made.",
                        default=DEFAULT_LENGTH_POLICY,
                    ),
                ),
                "deep_cache_interval": (
                    "INT",
                    tooltip(
                        "Deep-feature cache (faster, approximate; 30-step variants only): every N-th step runs the "
                        "whole UNet, the steps between reuse its deep features (3: about twice as fast). 0 or 1 = "
                        "off: the exact result.",
                        default=0,
                        min=0,
                        max=10,
                    ),
                ),
                "deep_cache_depth": (
                    "INT",
                    tooltip(
                        "With the deep-feature cache: how many of the UNet's outermost layers the cached steps "
                        "recompute (more = closer to exact, slower).",
                        default=DEEP_CACHE_DEFAULT_DEPTH,
                        min=1,
                        max=DEEP_CACHE_MAX_DEPTH,
                    ),
                ),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT", "INT", "AUDIO")
    RETURN_NAMES = ("images", "fps", "frame_count", "audio")
    OUTPUT_TOOLTIPS = (
        "The video frames; send them to Create Video, an upscaler or any IMAGE node.",
        "Frame rate of the video (from the audio features).",
        "How many frames were made.",
        "The speech trimmed to exactly these frames: connect it to Create Video (no need to repeat length and "
        "length policy on EchoMimic Audio Features).",
    )
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    @user_errors
    def sample(
        self,
        model: LoadedEchoMimic,
        vae: Any,
        reference_image: torch.Tensor,
        audio_features: AudioFeatures,
        width: int,
        height: int,
        length: int,
        steps: int,
        cfg: float,
        seed: int,
        context_frames: int,
        context_overlap: int,
        face_mask: torch.Tensor | None = None,
        landmark_images: torch.Tensor | None = None,
        hand_pose_images: torch.Tensor | None = None,
        length_policy: str = DEFAULT_LENGTH_POLICY,
        deep_cache_interval: int = 0,
        deep_cache_depth: int = DEEP_CACHE_DEFAULT_DEPTH,
    ) -> tuple[Any, float, int, dict[str, Any] | None]:
        import comfy.model_management as model_management
        import comfy.utils
        import torch

        from ..echomimic.pipeline.settings import SamplingSettings
        from ..echomimic.release import FACE_DETECTOR
        from ..echomimic.run import RunRequest, prepare_run, run_prepared
        from .common import ensure_mediapipe_files
        from .face_nodes import first_image_numpy

        if audio_features is None:
            raise EchoMimicNodeError("Connect audio_features (EchoMimic Audio Features).")
        finite_inputs(
            reference_image=reference_image,
            face_mask=face_mask,
            landmark_images=landmark_images,
            hand_pose_images=hand_pose_images,
        )

        def images(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else torch.as_tensor(value).float().cpu()

        # 0 means the variant's official value (the library's defaults). Checked here, before any face
        # detection, by the library's own rules (sizes, context, steps).
        settings = SamplingSettings.for_variant(
            model.variant,
            width=int(width) or None,
            height=int(height) or None,
            length=int(length),
            steps=int(steps) if int(steps) > 0 else None,
            cfg=None if float(cfg) <= 0 else float(cfg),  # nan stays nan, refused by validated()
            seed=int(seed),
            fps=0.0,
            context_frames=int(context_frames),
            context_overlap=int(context_overlap),
            length_policy=str(length_policy),  # window_batch stays 0: automatic per device
            deep_cache_interval=int(deep_cache_interval),
            deep_cache_depth=int(deep_cache_depth),
        ).validated(variant=model.variant)

        # Every rule of the run (mask fallback, input checks, frame plan, trimmed sound) is the library's.
        prepared = prepare_run(
            RunRequest(
                variant=model.variant,
                picture=torch.from_numpy(first_image_numpy(reference_image)),
                settings=settings,
                audio_features=audio_features,
                face_mask=None if face_mask is None else torch.as_tensor(face_mask),
                landmark_images=images(landmark_images),
                hand_pose_images=images(hand_pose_images),
            ),
            face_detector_dir=lambda: ensure_mediapipe_files(FACE_DETECTOR),  # downloaded on first use
        )
        for line in prepared.describe():
            logging.info("EchoMimic Sampler: %s", line.strip())

        # One bar over the whole node: the reference encoding, every (step, window), every decoded chunk.
        progress_bar: list[Any] = []

        def report(info: Any) -> None:
            if not progress_bar:
                progress_bar.append(comfy.utils.ProgressBar(int(info.total)))
            progress_bar[0].update_absolute(int(info.done), int(info.total))

        # Live preview after every denoising step (ComfyUI's preview setting decides whether and how).
        make_preview = step_previewer(model_management.get_torch_device())

        def send_preview(step: int, latents: torch.Tensor) -> None:
            if make_preview is not None and progress_bar:
                bar = progress_bar[0]
                bar.update_absolute(bar.current, bar.total, make_preview(latents))

        # ComfyUI's model management moves the weights onto its device (offloading others if needed).
        load_patched_models(model.patcher)
        result = run_prepared(
            prepared,
            model.models,
            ComfyVaeAdapter(vae),
            run_progress=report,
            should_cancel=model_management.processing_interrupted,
            on_step=send_preview,
        )
        assert result.frames is not None  # no on_frames: the whole video, ComfyUI's IMAGE batch
        frames = result.frames.float().cpu().clamp(0.0, 1.0)
        sound = (
            None
            if result.speech is None
            else {"waveform": result.speech.waveform, "sample_rate": result.speech.sample_rate}
        )
        return (frames, float(result.fps), int(frames.shape[0]), sound)


NODE_CLASS_MAPPINGS = {"EchoMimicSampler": EchoMimicSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"EchoMimicSampler": "EchoMimic Sampler"}
