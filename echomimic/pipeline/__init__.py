"""Video sampling: input rules and length plan, conditioning, context windows, the chunked sampler, VAE adapter."""

from .inputs import PreparedInputs, prepare_inputs
from .length import LENGTH_POLICIES, FramePlan, plan_frame_count
from .sampler import GeneratedVideo, ProgressInfo, RunProgress, SamplingSettings, decode_latents, generate_video
from .vae import DiffusersVae, VaeAdapter, load_diffusers_vae

__all__ = [
    "LENGTH_POLICIES",
    "DiffusersVae",
    "FramePlan",
    "GeneratedVideo",
    "PreparedInputs",
    "ProgressInfo",
    "RunProgress",
    "SamplingSettings",
    "VaeAdapter",
    "decode_latents",
    "generate_video",
    "load_diffusers_vae",
    "plan_frame_count",
    "prepare_inputs",
]
