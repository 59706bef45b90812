"""The deep-feature cache against the exact path, side by side in one process (same models, inputs and seed).

Runs ``generate_video`` twice, exact (``deep_cache_interval`` 0) and cached (``--interval``, ``--depth``), and
prints the time inside the denoising UNet calls, the total time, their ratios exact / cached, and the deviation of
the cached frames from the exact ones (max and mean absolute, frames in 0..1). The models are built as
``bench_sampler.py`` builds them (``--config full``: the shipped full-size configs with random weights, no
download; ``tiny``: a parity case's tiny models), with CFG and window batching as given.

Examples::

    python benchmarks/bench_deep_cache.py                                   # full size, 256x256, 30 steps, CPU
    python benchmarks/bench_deep_cache.py --device cuda --size 512 --frames 24 --dtype fp16
    python benchmarks/bench_deep_cache.py --config tiny --size 64 --frames 8  # seconds, for CI

On CPU a full-size 30-step run at 256x256 takes about an hour per 12 frames; ``--steps 6`` keeps the same
pattern (one full step, then ``interval - 1`` cached ones) and so the same UNet-time ratio, in a fifth of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sampler  # noqa: E402  # the models and inputs of the sampler benchmark

MB = 1024 * 1024


class _CallTimer(bench_sampler._PhaseTimer):
    """The sampler benchmark's UNet timer, also keeping each call's seconds by kind (full or cached)."""

    def __init__(self, function, sync) -> None:
        super().__init__(function, sync)
        self.by_kind: dict[str, list[float]] = {"full": [], "cached": []}

    def __call__(self, *args, **kwargs):
        call = kwargs.get("deep_cache")
        kind = "cached" if call is not None and call.features is not None else "full"  # a full call fills it in
        before = self.seconds
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.by_kind[kind].append(self.seconds - before)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=("full", "tiny"), default="full")
    parser.add_argument("--case", default="v1_audio", help="parity case of --config tiny (default v1_audio)")
    parser.add_argument("--mode", default="audio", help="variant of --config full (default audio)")
    parser.add_argument("--size", type=int, default=256, help="width = height in pixels (default 256)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cfg", type=float, default=2.5)
    parser.add_argument("--frames", type=int, default=4, help="video length (default 4: two windows of 3)")
    parser.add_argument("--context-frames", type=int, default=3)
    parser.add_argument("--context-overlap", type=int, default=1)
    parser.add_argument("--window-batch", type=int, default=2, help="context windows per UNet call (default 2)")
    parser.add_argument("--interval", type=int, default=3, help="deep_cache_interval of the cached run (default 3)")
    parser.add_argument("--depth", type=int, default=None, help="deep_cache_depth (default: the library's)")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this json file")
    return parser


def run(opts: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    import torch

    from echomimic.audio import compute_audio_features
    from echomimic.cli import _pick_device, _pick_dtype
    from echomimic.pipeline.sampler import SamplingSettings, generate_video

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = _pick_device(opts.device)
    dtype = _pick_dtype(opts.dtype, device)
    models, vae, encoder = bench_sampler._build_models(opts, device, dtype)
    opts.mode = models.variant
    reference, mask, waveform, sample_rate, driving = bench_sampler._inputs(opts, opts.frames, opts.size)
    features = compute_audio_features(waveform, sample_rate, encoder, opts.fps)
    del encoder
    v2 = bench_sampler._is_v2(models.variant)
    base = SamplingSettings(
        width=opts.size,
        height=opts.size,
        length=opts.frames,
        steps=opts.steps,
        cfg=opts.cfg,
        seed=420,
        fps=opts.fps,
        context_frames=opts.context_frames,
        context_overlap=opts.context_overlap,
        window_batch=opts.window_batch,
        **({"length_policy": "loop"} if v2 else {}),
    )
    cached_settings = dataclasses.replace(base, deep_cache_interval=opts.interval)
    if opts.depth is not None:
        cached_settings = dataclasses.replace(cached_settings, deep_cache_depth=opts.depth)
    is_cuda = device.type == "cuda"

    def sync() -> None:
        if is_cuda:
            torch.cuda.synchronize()

    unet_forward = models.denoising_unet.forward
    results: dict[str, Any] = {}
    frames: dict[str, torch.Tensor] = {}
    for name, settings in (("exact", base), ("cached", cached_settings)):
        timer = _CallTimer(unet_forward, sync)
        models.denoising_unet.forward = timer
        if is_cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        started = time.perf_counter()
        driving_kwargs = {"hand_pose_images": driving} if v2 else {"landmark_images": driving}
        video = generate_video(
            models,
            vae,
            reference,
            audio_features=features,
            face_mask=None if driving is not None else mask,
            **driving_kwargs,
            settings=settings,
        )
        sync()
        total = time.perf_counter() - started
        models.denoising_unet.forward = unet_forward
        assert video.frames is not None
        frames[name] = video.frames
        results[name] = {
            "total_seconds": total,
            "unet_seconds": timer.seconds,
            "unet_calls": timer.calls,
            "full_call_seconds": timer.by_kind["full"],
            "cached_call_seconds": timer.by_kind["cached"],
            "seconds_per_video_second": total / (video.frames.shape[0] / opts.fps),
            "finite": bool(torch.isfinite(video.frames).all()),
            **({"peak_cuda_bytes": torch.cuda.max_memory_allocated()} if is_cuda else {}),
        }
        print(f"  {name}: {total:.1f} s, UNet {timer.seconds:.1f} s", file=sys.stderr, flush=True)
    difference = (frames["cached"] - frames["exact"]).abs()
    # The same ratio from the cached run alone: its full and cached calls alternate in time, so a machine whose load
    # changes between the two runs (shared CPUs) moves both alike. interval x full / (full + (interval - 1) x cached).
    full_call = _median(results["cached"]["full_call_seconds"])
    cached_call = _median(results["cached"]["cached_call_seconds"])
    interleaved = opts.interval * full_call / (full_call + (opts.interval - 1) * cached_call)
    return {
        "config": opts.config,
        "mode": models.variant,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "size": opts.size,
        "frames": int(frames["exact"].shape[0]),
        "steps": opts.steps,
        "cfg": opts.cfg,
        "context_frames": opts.context_frames,
        "context_overlap": opts.context_overlap,
        "window_batch": opts.window_batch,
        "interval": opts.interval,
        "depth": cached_settings.deep_cache_depth,
        "threads": torch.get_num_threads(),
        "exact": results["exact"],
        "cached": results["cached"],
        "unet_speedup": results["exact"]["unet_seconds"] / results["cached"]["unet_seconds"],
        "total_speedup": results["exact"]["total_seconds"] / results["cached"]["total_seconds"],
        "median_full_call_seconds": full_call,
        "median_cached_call_seconds": cached_call,
        "unet_speedup_interleaved": interleaved,
        "max_abs_deviation": float(difference.max()),
        "mean_abs_deviation": float(difference.mean()),
        "finite": results["exact"]["finite"] and results["cached"]["finite"],
    }


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    result = run(opts)
    exact, cached = result["exact"], result["cached"]
    print(
        f"\nconfig {result['config']}, mode {result['mode']}, {result['size']}x{result['size']}, {result['frames']} "
        f"frames, {result['steps']} steps, cfg {result['cfg']}, context {result['context_frames']}/"
        f"{result['context_overlap']}, window_batch {result['window_batch']}, {result['device']} {result['dtype']}, "
        f"{result['threads']} threads; cache interval {result['interval']}, depth {result['depth']}\n"
    )
    print("| run | UNet (s) | UNet calls | total (s) |")
    print("|---|---:|---:|---:|")
    for name, values in (("exact", exact), (f"cache interval {result['interval']}", cached)):
        print(f"| {name} | {values['unet_seconds']:.2f} | {values['unet_calls']} | {values['total_seconds']:.2f} |")
    print(
        f"\nspeed-up exact / cached: UNet {result['unet_speedup']:.2f}x, total {result['total_speedup']:.2f}x; "
        f"deviation of the frames (0..1): max {result['max_abs_deviation']:.4f}, "
        f"mean {result['mean_abs_deviation']:.5f}; finite: {'yes' if result['finite'] else 'NO'}"
    )
    print(
        f"within the cached run: median full call {result['median_full_call_seconds']:.2f} s, cached call "
        f"{result['median_cached_call_seconds']:.2f} s -> UNet speed-up {result['unet_speedup_interleaved']:.2f}x "
        "at this interval (robust to load changes between the two runs)"
    )
    if opts.json is not None:
        opts.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0 if result["finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
