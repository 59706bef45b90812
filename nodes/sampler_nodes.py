"""The EchoMimic sampler node: portrait + audio features (+ face mask or landmark images) -> video frames."""

from __future__ import annotations

import dataclasses
from typing import Any

from .common import AUDIO_FEATURES_TYPE, CATEGORY, MODEL_TYPE, EchoMimicNodeError, tooltip, user_errors
from .model_nodes import LoadedEchoMimic, load_patched_models
from .previews import step_previewer
from .vae_adapter import ComfyVaeAdapter

MAX_SEED = 0xFFFFFFFFFFFFFFFF
# How many more frames the audio features may have than a video of the same duration.
AUDIO_EXTRA_FRAMES = 2


def _resize_mask(mask: Any, height: int, width: int) -> Any:
    """A ComfyUI MASK ([B, H, W] or [H, W]) -> its first mask as float [height, width] in 0..1."""
    import torch

    mask = torch.as_tensor(mask).float()
    while mask.ndim > 2:
        mask = mask[0]
    if tuple(mask.shape) != (height, width):
        mask = torch.nn.functional.interpolate(mask[None, None], size=(height, width), mode="bilinear",
                                               align_corners=False)[0, 0]
    return mask.clamp(0.0, 1.0)


def _reference_numpy_mask(reference: Any, height: int, width: int) -> Any:
    """The face mask of the reference itself (no crop), for when no MASK is connected."""
    import torch

    from ..echomimic.landmarks import face_mask_and_crop
    from ..echomimic.release import FACE_DETECTOR
    from .common import ensure_mediapipe_files

    found = face_mask_and_crop(reference.numpy(), crop=False, size=(width, height),
                               models_dir=ensure_mediapipe_files(FACE_DETECTOR))
    return _resize_mask(torch.from_numpy(found.mask), height, width)


class EchoMimicSampler:
    DESCRIPTION = (
        "Generates the talking-head video: denoises all frames in overlapping context windows, conditioned on the "
        "portrait, the speech and (landmark variants) the landmark images. Shows progress per step and window "
        "and stops within one window when you press Cancel."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": (MODEL_TYPE, tooltip("From Load EchoMimic Model.")),
                "vae": ("VAE", tooltip("The SD1.5 VAE from Load VAE, e.g. vae-ft-mse-840000-ema-pruned.safetensors "
                                       "(the official EchoMimic uses sd-vae-ft-mse).")),
                "reference_image": ("IMAGE", tooltip("The portrait to animate, ideally the output of EchoMimic Face "
                                                     "Mask and Crop. Resized to width x height if needed.")),
                "audio_features": (AUDIO_FEATURES_TYPE, tooltip("From EchoMimic Audio Features; sets the length and fps.")),
                "width": ("INT", tooltip("Video width in pixels, a multiple of 8 (official 512).",
                                         default=512, min=64, max=2048, step=8)),
                "height": ("INT", tooltip("Video height in pixels, a multiple of 8 (official 512).",
                                          default=512, min=64, max=2048, step=8)),
                "length": ("INT", tooltip("Frames to generate; 0 = as many as the audio covers.",
                                          default=0, min=0, max=100000)),
                "steps": ("INT", tooltip("Denoising steps; 0 = the variant's official default (30, accelerated 6).",
                                         default=0, min=0, max=200)),
                "cfg": ("FLOAT", tooltip("Audio/face guidance scale; 0 = the variant's official default (2.5, accelerated "
                                         "1.0). 1 or less runs without guidance (faster).",
                                         default=0.0, min=0.0, max=20.0, step=0.1, round=0.01)),
                "seed": ("INT", tooltip("Seed of the initial noise.", default=420, min=0, max=MAX_SEED,
                                        control_after_generate=True)),
                "context_frames": ("INT", tooltip("Frames denoised together in one window (official 12). Memory "
                                                  "grows with it, not with the video length.", default=12, min=1, max=64)),
                "context_overlap": ("INT", tooltip("Frames shared by neighbouring windows (official 3); smaller than "
                                                   "context_frames.", default=3, min=0, max=63)),
            },
            "optional": {
                "face_mask": ("MASK", tooltip("Audio variants: where the face may move (1) in the reference. Not "
                                              "connected: detected from the reference image.")),
                "landmark_images": ("IMAGE", tooltip("Landmark variants (required there): one drawn landmark image per "
                                                     "frame, from EchoMimic Draw Landmarks.")),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("The video frames; send them to Create Video, an upscaler or any IMAGE node.",
                       "Frame rate of the video (from the audio features).")
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    @user_errors
    def sample(self, model: LoadedEchoMimic, vae: Any, reference_image: Any, audio_features: Any, width: int,
               height: int, length: int, steps: int, cfg: float, seed: int, context_frames: int,
               context_overlap: int, face_mask: Any = None, landmark_images: Any = None) -> tuple[Any, float]:
        import comfy.model_management as model_management
        import comfy.utils
        import torch

        from ..echomimic.pipeline.sampler import SamplingSettings, generate_video
        from .face_nodes import first_image_numpy

        if audio_features is None:
            raise EchoMimicNodeError("Connect audio_features (EchoMimic Audio Features).")
        width, height = int(width), int(height)
        defaults = SamplingSettings.defaults_for(model.variant)
        # Checked here, before any face detection, by the library's own rules (sizes, context, steps).
        settings = dataclasses.replace(
            defaults,
            width=width, height=height, length=int(length),
            steps=int(steps) if int(steps) > 0 else defaults.steps,
            cfg=defaults.cfg if float(cfg) <= 0 else float(cfg),  # nan stays nan, refused by validated()
            seed=int(seed), fps=float(audio_features.fps), context_frames=int(context_frames),
            context_overlap=int(context_overlap),
        ).validated()

        reference = torch.from_numpy(first_image_numpy(reference_image))
        mask = None
        landmarks = None
        if model.mode == "pose":
            if landmark_images is None:
                raise EchoMimicNodeError(
                    f"The {model.variant_label} model needs landmark images: connect EchoMimic Draw Landmarks to "
                    "landmark_images, or load a V1 audio variant.")
            landmarks = torch.as_tensor(landmark_images)[..., :3].float().cpu()
            if landmarks.ndim == 3:
                landmarks = landmarks.unsqueeze(0)
            available = int(landmarks.shape[0])
            if int(length) > 0:
                wanted = int(length)
            else:
                # The audio covers a frame or two more than a video of the same duration (Whisper's chunking),
                # so a driving video with the same sound is long enough; anything shorter is a mistake.
                wanted = int(audio_features.num_frames) - AUDIO_EXTRA_FRAMES
            if available < wanted:
                raise EchoMimicNodeError(
                    f"There are {available} landmark images but the video needs {wanted} frames; give a landmark "
                    f"sequence at least as long as the video (a longer driving video), or set length to at most "
                    f"{available}.")
        else:
            if landmark_images is not None:
                raise EchoMimicNodeError(
                    f"landmark_images are only used by the V1 landmarks variants, but {model.variant_label} is "
                    "loaded; disconnect them or load a landmarks variant.")
            if face_mask is not None:
                mask = _resize_mask(face_mask, height, width)
                if float(mask.max()) <= 0.0:
                    raise EchoMimicNodeError("The face_mask is empty (all 0). Connect the MASK of EchoMimic Face Mask "
                                             "and Crop, or draw one over the face.")
            else:
                mask = _reference_numpy_mask(reference, height, width)

        progress_bar: list[Any] = []

        def report(info: Any) -> None:
            if not progress_bar:
                progress_bar.append(comfy.utils.ProgressBar(int(info.total)))
            progress_bar[0].update_absolute(int(info.done), int(info.total))

        # Live preview after every denoising step (ComfyUI's preview setting decides whether and how).
        make_preview = step_previewer(model_management.get_torch_device())

        def send_preview(step: int, latents: Any) -> None:
            if make_preview is not None and progress_bar:
                bar = progress_bar[0]
                bar.update_absolute(bar.current, bar.total, make_preview(latents))

        # ComfyUI's model management moves the weights onto its device (offloading others if needed).
        load_patched_models(model.patcher)
        video = generate_video(
            model.models, ComfyVaeAdapter(vae), reference,
            audio_features=audio_features, face_mask=mask, landmark_images=landmarks, settings=settings,
            progress=report, should_cancel=model_management.processing_interrupted, on_step=send_preview,
        )
        frames = video.frames.float().cpu().clamp(0.0, 1.0)
        return (frames, float(video.fps))


NODE_CLASS_MAPPINGS = {"EchoMimicSampler": EchoMimicSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"EchoMimicSampler": "EchoMimic Sampler"}
