"""Video sampling: scheduler, context windows, VAE adapter and the chunked sampler."""

from .sampler import GeneratedVideo, ProgressInfo, SamplingSettings, decode_latents, generate_video
from .vae import DiffusersVae, VaeAdapter, load_diffusers_vae

__all__ = [
    "DiffusersVae",
    "GeneratedVideo",
    "ProgressInfo",
    "SamplingSettings",
    "VaeAdapter",
    "decode_latents",
    "generate_video",
    "load_diffusers_vae",
]
