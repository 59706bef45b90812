"""V3 flash speed and memory: one ``generate_flash`` run, reported as seconds per video-second and peak memory.

    python benchmarks/bench_v3.py --config full --size 768 --frames 81 --dtype bf16 --device cuda
    python benchmarks/bench_v3.py --config tiny --frames 13            # the parity case's tiny models, CPU

``full`` builds the real-size transformer (from the release manifest's config and shapes), Wan VAE and CLIP-H
with random weights (the speed and memory do not depend on the values); ``tiny`` loads the first flash case of
../shared/parity_v3. The audio features and prompt embeddings are random tensors of the real shapes, so the
timing covers what runs per video: CLIP once, per chunk the VAE encode of the inpainting input, the 8 steps
(two transformer calls each, TeaCache as asked) and the chunked VAE decode. The last stdout line is JSON
(``benchmarks/gpu_suite.py`` reads it).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MANIFEST = REPO.parent / "shared" / "parity" / "manifests" / "echomimic_v3_flash.json"


def full_models(device, dtype):
    import torch
    from transformers import CLIPVisionConfig

    from echomimic.v3 import image_encoder, transformer, vae
    from echomimic.v3.pipeline import FlashModels

    entry = json.loads(MANIFEST.read_text())["files"]["transformer/diffusion_pytorch_model.safetensors"]
    shapes = {key: tuple(shape) for key, shape in entry["keys"].items()}
    config = transformer.flash_config(entry["real_config"], shapes)
    with torch.device(device):
        model = transformer.FlashTransformer(config).to(dtype)
        for parameter in model.parameters():  # small random values: finite activations at any depth
            torch.nn.init.normal_(parameter, std=0.02)
        wan_vae = vae.build_wan_vae({"base_dim": 96, "z_dim": 16}).to(dtype)
        clip = image_encoder.build_clip_vision(
            CLIPVisionConfig(
                hidden_size=1280,
                intermediate_size=5120,
                num_hidden_layers=32,
                num_attention_heads=16,
                image_size=224,
                patch_size=14,
                hidden_act="gelu",
                layer_norm_eps=1e-5,
            )
        ).to(dtype)
    return FlashModels(model.eval(), vae.WanVAE(wan_vae), image_encoder.ClipVisionEncoder(clip)), 4096, (12, 768)


def tiny_models(device, dtype):
    import tempfile

    from echomimic.v3.files import load_flash_models
    from tests.v3_cases import make_v3_weights_folder, v3_cases

    folder = make_v3_weights_folder(v3_cases("flash")[0], Path(tempfile.mkdtemp(prefix="echomimic-bench-v3-")))
    models = load_flash_models(folder, device=device, dtype=dtype)
    return models, models.transformer.config.text_dim, (2, 32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=("full", "tiny"), default="tiny")
    parser.add_argument("--size", type=int, default=64, help="square video side, a multiple of 16")
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--chunk-frames", type=int, default=81)
    parser.add_argument("--chunk-overlap", type=int, default=9)
    parser.add_argument("--teacache", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save-frames", type=Path, default=None)
    opts = parser.parse_args(argv)

    import numpy as np
    import torch

    from echomimic.dtypes import torch_dtype
    from echomimic.v3 import pipeline as flash

    device, dtype = torch.device(opts.device), torch_dtype(opts.dtype)
    models, text_dim, (layers, width) = (full_models if opts.config == "full" else tiny_models)(device, dtype)
    settings = flash.with_defaults(
        steps=opts.steps, teacache=opts.teacache, chunk_frames=opts.chunk_frames, chunk_overlap=opts.chunk_overlap
    )
    chunks = flash.plan_chunks(opts.frames, settings.chunk_frames, settings.chunk_overlap)
    generator = torch.Generator().manual_seed(0)
    reference = (torch.rand((opts.size, opts.size, 3), generator=generator) * 255).to(torch.uint8).numpy()
    prompt = torch.randn((1, 12, text_dim), generator=generator)
    audio = torch.randn((flash.generated_frames(chunks), layers, width), generator=generator)
    kept: list[np.ndarray] = []
    finite = True

    def on_frames(frames: torch.Tensor) -> None:
        nonlocal finite
        finite = finite and bool(torch.isfinite(frames).all())
        if opts.save_frames is not None:
            kept.append(frames.numpy())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    delivered = flash.generate_flash(
        models.transformer,
        models.vae,
        reference,
        models.clip_features(reference),
        prompt,
        audio,
        opts.frames,
        settings,
        on_frames=on_frames,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    if opts.save_frames is not None:
        np.save(opts.save_frames, np.concatenate(kept))
    result = {
        "frames": delivered,
        "chunks": len(chunks),
        "seconds": seconds,
        "seconds_per_video_second": seconds / (delivered / settings.fps),
        "finite": finite,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if device.type == "cuda":
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    print(json.dumps(result))
    return 0 if finite else 1


if __name__ == "__main__":
    raise SystemExit(main())
