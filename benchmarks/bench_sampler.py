"""Speed and peak memory of the EchoMimic V1 / V2 sampler (``echomimic.pipeline.sampler.generate_video``).

Prints, for one configuration:

1. seconds per denoising step, seconds per generated video-second and peak memory for a
   ``--frames``-frame video;
2. the peak memory for each of ``--lengths`` (default 24, 96 and 384 frames) at the same settings,
   and how much "peak minus the output frames" grows per extra frame.

Every measurement runs in a fresh subprocess, so each peak belongs to one run only. On CPU the peak
is the process's peak resident memory during ``generate_video`` (Linux ``VmHWM``, reset just before
the call through ``/proc/self/clear_refs``; ``ru_maxrss`` where that is not possible, which then
also covers loading). On a GPU it is ``torch.cuda.max_memory_allocated`` during the call.

Configurations (``--config``):

- ``tiny``: a parity case's tiny configs and weights (``$ECHOMIMIC_PARITY_CASES/<case>``; the
  default case v1_audio), its tiny VAE and the random Whisper tiny. The variant is the case's own
  (``--mode`` must match it): a V2 case (v2_hands, v2_hands_acc) runs V2.
- ``full``: the shipped full-size configs (SD1.5-sized UNets, the sd-vae-ft-mse architecture),
  randomly initialised: no download, only the speed and memory are meaningful.
- ``real``: the real weights in ``--weights`` (the BadToBest/EchoMimic layout).

V2 (``--mode v2|v2_acc``): the hand poses are the case's ``inputs/pose_keypoints.json`` (for
``--config full``/``real``: those of ``--case``, default v2_hands) drawn with ``echomimic.poses`` at
``--size``; the few drawn frames go to ``generate_video(hand_pose_images=...)`` and the library's length policy
(``loop``) extends them to each length, as a user's short pose sequence would be.

Comparison mode (``--compare REF``): the same job on this checkout and on REF (a git ref of this
repository, exported with ``git archive`` to a temporary folder, or the path of another checkout), in
alternating fresh processes (ABBA order), ``--runs`` runs each. Every child is this script; only the
``echomimic`` package it imports differs. Each run records the total ``generate_video`` time, the time
inside the denoising UNet calls, inside ``vae.decode``, the peak memory, and the other processes' share
of the machine's CPU time during the call (from ``/proc/stat`` minus the run's own CPU time). Runs where
that share exceeds ``--busy-threshold`` are flagged and left out of the medians (unless every run of a
side is flagged: then all are used and the table says so). It prints per-phase medians and the ratios
this / REF.

Examples::

    python benchmarks/bench_sampler.py                                  # tiny, 64x64
    python benchmarks/bench_sampler.py --size 512 --steps 1             # tiny models, 512x512 memory
    python benchmarks/bench_sampler.py --config full --size 256 --steps 1 --frames 12 --lengths 12 24
    python benchmarks/bench_sampler.py --config real --weights pretrained_weights --device cuda --size 512
    python benchmarks/bench_sampler.py --config full --size 256 --frames 12 --steps 1 --compare 7c45a1a --runs 3
    python benchmarks/bench_sampler.py --config tiny --case v2_hands --mode v2 --size 768 --steps 1 --lengths 24 96
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# The checkout whose ``echomimic`` package a run measures (compare mode sets it for the other side).
CODE_ROOT = Path(os.environ.get("ECHOMIMIC_BENCH_CODE", REPO_ROOT)).resolve()
if str(CODE_ROOT) not in sys.path:
    sys.path.insert(0, str(CODE_ROOT))

MB = 1024 * 1024


def parity_cases_dir() -> Path:
    return Path(os.environ.get("ECHOMIMIC_PARITY_CASES", REPO_ROOT / ".." / "shared" / "parity")).resolve()


def _variant_names() -> tuple[str, ...]:
    """The release's variants (``echomimic.release``, torch-free), V1 and V2; the V1 ones for --compare runs
    of checkouts from before release.py."""
    try:
        from echomimic import release
    except ImportError:
        return ("audio", "audio_acc", "pose", "pose_acc")
    return tuple(release.VARIANTS)


def _case_variant(case: dict[str, Any]) -> str:
    """The release variant a parity case was made with (its case.json ``mode``, the official code's name)."""
    mode = str(case["mode"])
    base, accelerated = mode.removesuffix("_acc"), mode.endswith("_acc")
    variants = {"audio": "audio", "pose": "pose", "v2_pose": "v2"}  # official mode -> our variant
    if base not in variants:
        raise SystemExit(f"benchmark: parity case mode {mode!r} is no release variant")
    return variants[base] + ("_acc" if accelerated else "")


def _is_v2(mode: str) -> bool:
    return mode.startswith("v2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        choices=("tiny", "full", "real"),
        default="tiny",
        help="tiny parity-case models (default), full-size random weights, or real weights",
    )
    parser.add_argument(
        "--case",
        default=None,
        help="parity case for --config tiny (default v1_audio; v2_hands for --mode v2*) and the hand poses of V2 runs",
    )
    parser.add_argument("--weights", type=Path, default=None, help="weights folder for --config real")
    parser.add_argument(
        "--mode",
        default="audio",
        choices=_variant_names(),
        help="variant (default audio); tiny supports the case's own mode only",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="width = height in pixels (default: 64 tiny, 256 full, 512 real)"
    )
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (default 2)")
    parser.add_argument("--cfg", type=float, default=2.5, help="guidance scale (default 2.5: CFG on)")
    parser.add_argument("--frames", type=int, default=24, help="video length of the timing run (default 24)")
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="*",
        default=[24, 96, 384],
        help="video lengths of the memory runs (default 24 96 384; none: skip)",
    )
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--context-frames", type=int, default=12)
    parser.add_argument("--context-overlap", type=int, default=3)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when present)")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"), help="auto: fp16 on a GPU, fp32 on CPU"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--window-batch", type=int, default=0, help="context windows per UNet call (0: auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoising UNet's blocks")
    parser.add_argument("--save-frames", type=Path, default=None, help="also save the frames (.npy) of the run")
    parser.add_argument("--json", type=Path, default=None, help="also write all results to this json file")
    parser.add_argument(
        "--compare",
        default=None,
        metavar="REF",
        help="compare with REF: a git ref of this repository or the path of another checkout",
    )
    parser.add_argument("--runs", type=int, default=3, help="compare mode: runs per checkout (default 3)")
    parser.add_argument(
        "--busy-threshold",
        type=float,
        default=0.10,
        help="compare mode: flag a run when other processes used more than this share of all "
        "cores during it (default 0.10)",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # internal: one run
    return parser


# ----------------------------------------------------------------------------------------------
# One measured run (inside a child process)
# ----------------------------------------------------------------------------------------------


def _peak_rss_bytes() -> tuple[int, str]:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)\s+kB", status).group(1)) * 1024, "VmHWM"
    except (OSError, AttributeError):
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "ru_maxrss"


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``); nan where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    ticks = [int(value) for value in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _PhaseTimer:
    """Wraps a callable and sums the wall time spent inside it (synchronising CUDA around each call)."""

    def __init__(self, function, sync) -> None:
        self.function, self.sync, self.seconds, self.calls = function, sync, 0.0, 0

    def __call__(self, *args, **kwargs):
        self.sync()
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.sync()
            self.seconds += time.perf_counter() - started
            self.calls += 1


def _build_models(opts: argparse.Namespace, device, dtype):
    """Returns ``(models, vae, whisper_encoder)`` for the chosen configuration."""
    import torch

    from echomimic.audio import load_whisper_encoder
    from echomimic.pipeline.vae import DiffusersVae, load_diffusers_vae

    if opts.config == "tiny":
        from echomimic import release
        from echomimic.models.loading import load_echomimic

        case = parity_cases_dir() / opts.case
        info = json.loads((case / "case.json").read_text())
        mode = _case_variant(info)
        weights = case / "weights"
        # The case's files are named by role (reference_unet.pth, ...); the release table names them per variant.
        names = {
            Path(old).stem: Path(new).stem for old, new in info.get("model", {}).get("release_names", {}).items()
        } or dict(release.VARIANTS[mode].stems)
        if any(old != new for old, new in names.items()):
            # the case stores its files under other names (e.g. the audio ones): link them under the release names
            linked = Path(tempfile.mkdtemp(prefix="bench_weights_"))
            for weight in weights.glob("*.pth"):
                (linked / f"{names.get(weight.stem, weight.stem)}.pth").symlink_to(weight)
            weights = linked
        models = load_echomimic(weights, mode, config_dir=case / "config", device=device, dtype=dtype)
        vae = load_diffusers_vae(case / "vae", device, dtype)
        encoder = load_whisper_encoder(case.parent / "common" / "whisper_tiny_random.pt", device=device)
        return models, vae, encoder

    if opts.config == "real":
        from echomimic.models.loading import load_echomimic
        from echomimic.weights_download import check_weights

        files = check_weights(opts.weights, opts.mode)
        models = load_echomimic(opts.weights, opts.mode, device=device, dtype=dtype)
        vae = load_diffusers_vae(files["vae_config"].parent, device, dtype)
        encoder = load_whisper_encoder(files["whisper"], device=device)
        return models, vae, encoder

    # full: shipped configs, random weights. Built on the meta device, then every matrix/kernel is
    # filled from one shared block of N(0, 0.02) values (tiled; much faster than per-tensor init on
    # CPU), norm weights 1, biases 0, the motion modules' sinusoid tables exact.
    from diffusers import AutoencoderKL

    from echomimic.models.config import load_config
    from echomimic.models.loading import EchoMimicModels, build_models
    from echomimic.models.motion_module import sinusoidal_positions

    generator = torch.Generator().manual_seed(0)
    noise_block = torch.randn(1 << 22, generator=generator) * 0.02
    config = load_config(None, conditioning_channels=3 if opts.mode.startswith(("pose", "v2")) else 1)
    reference_unet, denoising_unet, face_locator = build_models(config, "meta")
    for module in (reference_unet, denoising_unet, face_locator):
        module.to_empty(device=device)
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                if parameter.ndim > 1:
                    flat = parameter.view(-1)
                    for offset in range(0, flat.numel(), noise_block.numel()):
                        chunk = flat[offset : offset + noise_block.numel()]
                        chunk.copy_(noise_block[: chunk.numel()])
                else:
                    parameter.fill_(1.0 if name.endswith("weight") else 0.0)
            for name, buffer in module.named_buffers():
                if name.endswith("pos_encoder.pe"):
                    buffer.copy_(sinusoidal_positions(buffer.shape[1], buffer.shape[2]))
                else:
                    raise SystemExit(f"benchmark: do not know how to fill the buffer {name}")
        module.to(dtype=dtype).eval().requires_grad_(False)
    models = EchoMimicModels(reference_unet, denoising_unet, face_locator, opts.mode, config)
    vae_model = (
        AutoencoderKL(  # the sd-vae-ft-mse architecture
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            layers_per_block=2,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            sample_size=512,
            norm_num_groups=32,
        )
        .to(device=device, dtype=dtype)
        .eval()
        .requires_grad_(False)
    )
    vae = DiffusersVae(vae_model)
    common = parity_cases_dir() / "common" / "whisper_tiny_random.pt"  # real Whisper-tiny dimensions
    encoder = load_whisper_encoder(common, device=device)
    return models, vae, encoder


def _pose_images(opts: argparse.Namespace, size: int):
    """The hand poses of ``--case`` (``inputs/pose_keypoints.json``) drawn at size x size: [D, H, W, 3] float 0..1.

    D is the case's few frames; the sampler extends them to the video length with its length policy.
    """
    import numpy as np
    import torch

    from echomimic.poses import HandPoseSequence, draw_hand_poses, hand_poses_from_keypoint_records
    from echomimic.release import POSE_REF_W

    case = parity_cases_dir() / opts.case
    info = json.loads((case / "case.json").read_text())
    records = json.loads((case / "inputs" / "pose_keypoints.json").read_text())
    poses = hand_poses_from_keypoint_records(records, info["width"], info["height"])
    # Normalised points: drawn on the square benchmark canvas (as the other-size parity drawings are).
    square = HandPoseSequence(poses.points, size, size, poses.scores)
    drawn = draw_hand_poses(square, size, size, ref_w=POSE_REF_W)
    return torch.from_numpy(drawn.astype(np.float32) / 255.0)


def _inputs(opts: argparse.Namespace, length: int, size: int):
    """Reference [H, W, 3], face mask [H, W], waveform [1, T] covering ``length`` frames, landmarks / hand poses."""
    import numpy as np
    import torch
    from PIL import Image

    from echomimic.cli import EXAMPLE_AUDIO, EXAMPLE_IMAGE
    from echomimic.video_io import read_audio

    # Resized here with PIL, not by the library: --compare runs older checkouts whose helpers differ.
    image = Image.open(EXAMPLE_IMAGE).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    reference = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
    mask = torch.zeros(size, size)
    mask[size // 8 : size - size // 8, size // 5 : size - size // 5] = 1.0  # the face region of the example
    speech, sample_rate = read_audio(EXAMPLE_AUDIO)
    needed = int((length / opts.fps + 1.0) * sample_rate)
    repeats = -(-needed // speech.shape[1])
    waveform = speech.repeat(1, repeats)[:, :needed]
    landmarks = None
    if opts.mode.startswith("pose"):
        rng = np.random.default_rng(0)
        landmarks = torch.zeros(length, size, size, 3)
        for frame in range(length):  # sparse dots, like drawn landmarks
            ys, xs = rng.integers(0, size, 200), rng.integers(0, size, 200)
            landmarks[frame, ys, xs] = 1.0
    elif _is_v2(opts.mode):
        landmarks = _pose_images(opts, size)
    return reference, mask, waveform, sample_rate, landmarks


def run_child(opts: argparse.Namespace, length: int) -> dict[str, Any]:
    import torch

    from echomimic.audio import compute_audio_features
    from echomimic.cli import _pick_device, _pick_dtype
    from echomimic.pipeline.sampler import SamplingSettings, generate_video

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = _pick_device(opts.device)
    dtype = _pick_dtype(opts.dtype, device)
    size = opts.size
    started = time.perf_counter()
    models, vae, encoder = _build_models(opts, device, dtype)
    opts.mode = models.variant
    reference, mask, waveform, sample_rate, landmarks = _inputs(opts, length, size)
    features = compute_audio_features(waveform, sample_rate, encoder, opts.fps)
    del encoder
    load_seconds = time.perf_counter() - started

    v2 = _is_v2(models.variant)
    # V2: the drawn poses are shorter than the video; the library's default length policy (loop) extends them.
    extra = {"length_policy": "loop"} if v2 else {}
    settings = SamplingSettings(
        width=size,
        height=size,
        length=length,
        steps=opts.steps,
        cfg=opts.cfg,
        seed=420,
        fps=opts.fps,
        context_frames=opts.context_frames,
        context_overlap=opts.context_overlap,
        **extra,
    )
    if getattr(opts, "window_batch", 0):
        settings = dataclasses.replace(settings, window_batch=opts.window_batch)
    if getattr(opts, "compile", False):
        from echomimic.models.compile import compile_unet_blocks

        compile_unet_blocks(models.denoising_unet)
    step_done_at: dict[int, float] = {}

    def progress(info) -> None:
        step_done_at[info.step] = time.perf_counter()

    is_cuda = device.type == "cuda"

    def sync() -> None:
        if is_cuda:
            torch.cuda.synchronize()

    # Phase timers: instance attributes shadow the methods, so both checkouts' code is measured alike.
    unet_timer = _PhaseTimer(models.denoising_unet.forward, sync)
    models.denoising_unet.forward = unet_timer
    decode_timer = _PhaseTimer(vae.decode, sync)
    vae.decode = decode_timer
    if is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    reset_ok = _reset_peak_rss()
    baseline_rss, _ = _peak_rss_bytes()
    busy_before, own_before = _busy_cpu_seconds(), _own_cpu_seconds()
    t0 = time.perf_counter()
    # A --compare checkout from before 2026-12-04 calls the hand poses pose_images.
    hands = "hand_pose_images" if "hand_pose_images" in inspect.signature(generate_video).parameters else "pose_images"
    driving = {hands: landmarks} if v2 else {"landmark_images": landmarks}
    video = generate_video(
        models,
        vae,
        reference,
        audio_features=features,
        face_mask=None if landmarks is not None else mask,
        **driving,
        settings=settings,
        progress=progress,
    )
    if is_cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    # Other processes' CPU time during the call, as a share of all cores' time.
    others = (_busy_cpu_seconds() - busy_before) - (_own_cpu_seconds() - own_before)
    others_share = max(0.0, others) / (total * (os.cpu_count() or 1))
    peak_rss, rss_source = _peak_rss_bytes()
    frames = video.frames
    assert frames is not None
    if getattr(opts, "save_frames", None) is not None:
        import numpy as np

        np.save(opts.save_frames, frames.numpy())
    denoise_end = max(step_done_at.values()) if step_done_at else t0 + total
    result = {
        "config": opts.config,
        "mode": models.variant,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "size": size,
        "length": int(frames.shape[0]),
        "driving_frames": None if landmarks is None else int(landmarks.shape[0]),
        "steps": opts.steps,
        "cfg": opts.cfg,
        "context_frames": opts.context_frames,
        "context_overlap": opts.context_overlap,
        "threads": torch.get_num_threads(),
        "load_seconds": load_seconds,
        "total_seconds": total,
        # Denoising time per step (the reference-UNet pass, the windows and the scheduler; not the
        # VAE decode that follows the last step).
        "seconds_per_step": (denoise_end - t0) / opts.steps,
        "seconds_per_video_second": total / (frames.shape[0] / opts.fps),
        "output_frames_bytes": frames.numel() * frames.element_size(),
        "peak_rss_bytes": peak_rss,
        "baseline_rss_bytes": baseline_rss,
        "rss_source": rss_source if reset_ok else "ru_maxrss (includes loading)",
        "unet_seconds": unet_timer.seconds,
        "unet_calls": unet_timer.calls,
        "decode_seconds": decode_timer.seconds,
        "decode_calls": decode_timer.calls,
        "others_cpu_share": others_share,
        "code_root": str(CODE_ROOT),
        "finite": bool(torch.isfinite(frames).all()),
        "window_batch": settings.window_batch,
        "compiled": bool(getattr(opts, "compile", False)),
    }
    if is_cuda:
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
        result["baseline_cuda_bytes"] = baseline
    return result


# ----------------------------------------------------------------------------------------------
# Orchestration (parent process)
# ----------------------------------------------------------------------------------------------


def _spawn(opts: argparse.Namespace, argv: list[str], length: int, code_root: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", str(length)]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    env = dict(os.environ)
    if code_root is not None:
        env["ECHOMIMIC_BENCH_CODE"] = str(code_root)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"benchmark run for {length} frames failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # 1-minute load average before the run: above the core count, the timings include contention.
    result["load_average_before"] = load_before
    print(
        f"  {length} frames: {result['total_seconds']:.1f} s, peak {_peak(result) / MB:.1f} MB",
        file=sys.stderr,
        flush=True,
    )
    return result


def _peak(result: dict[str, Any]) -> int:
    return result.get("peak_cuda_bytes", result["peak_rss_bytes"])


def _checkout_of(ref: str) -> Path:
    """REF as a folder holding an ``echomimic`` package: a path as given, or a git ref of this repository
    exported (``git archive``, no worktree metadata) to a temporary folder named after its commit."""
    path = Path(ref).expanduser()
    if (path / "echomimic" / "__init__.py").is_file():
        return path.resolve()
    found = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise SystemExit(f"--compare {ref!r} is neither a checkout folder nor a git ref of {REPO_ROOT}")
    commit = found.stdout.strip()
    target = Path(tempfile.gettempdir()) / f"echomimic-bench-{commit[:12]}"
    if not (target / "echomimic" / "__init__.py").is_file():
        partial = Path(tempfile.mkdtemp(prefix="echomimic-bench-partial-"))
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        partial.rename(target)
    return target


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if not ordered:
        return float("nan")
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def run_compare(opts: argparse.Namespace, argv: list[str]) -> int:
    """Alternating fresh-process runs on this checkout and on ``--compare``; prints medians and ratios."""
    other = _checkout_of(opts.compare)
    child_argv = argv  # a child runs one job (--child) and ignores the comparison options
    sides = {"this": REPO_ROOT, "ref": other}
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "ref": []}
    print(f"this = {REPO_ROOT}\nref  = {other} ({opts.compare})", file=sys.stderr, flush=True)
    for index in range(opts.runs):
        order = ("this", "ref") if index % 2 == 0 else ("ref", "this")  # ABBA: drift hits both sides alike
        for side in order:
            result = _spawn(opts, child_argv, opts.frames, sides[side])
            result["busy"] = result["others_cpu_share"] > opts.busy_threshold
            runs[side].append(result)
            print(
                f"    [{side}] run {index + 1}: unet {result['unet_seconds']:.1f} s, decode "
                f"{result['decode_seconds']:.1f} s, others' CPU {100 * result['others_cpu_share']:.0f}%"
                f"{' BUSY' if result['busy'] else ''}",
                file=sys.stderr,
                flush=True,
            )

    def medians(side: str) -> tuple[dict[str, float], str]:
        clean = [r for r in runs[side] if not r["busy"]]
        used, note = (clean, f"{len(clean)} clean") if clean else (runs[side], "all busy")
        return {
            "total": _median([r["total_seconds"] for r in used]),
            "unet": _median([r["unet_seconds"] for r in used]),
            "decode": _median([r["decode_seconds"] for r in used]),
            "peak": _median([_peak(r) / MB for r in used]),
        }, note

    mine, mine_note = medians("this")
    theirs, their_note = medians("ref")
    first = runs["this"][0]
    print(
        f"\nconfig {opts.config}, mode {first['mode']}, {opts.size}x{opts.size}, {first['length']} frames, "
        f"{opts.steps} steps, cfg {opts.cfg}, context {opts.context_frames}/{opts.context_overlap}, "
        f"{first['device']} {first['dtype']}, {first['threads']} threads"
    )
    print(
        f"CPU: {_cpu_model()} ({os.cpu_count()} cores); {opts.runs} runs per side, alternating (ABBA); "
        f"a run is busy when other processes used > {100 * opts.busy_threshold:.0f}% of all cores during it"
    )
    print(f"medians over: this {mine_note}, {opts.compare} {their_note}\n")
    targets = {"total": 0.85, "unet": 0.92, "decode": 0.85, "peak": 1.0}
    names = {"total": "total (s)", "unet": "UNet calls (s)", "decode": "VAE decode (s)", "peak": "peak memory (MB)"}
    print(f"| phase | this | {opts.compare} | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for key, name in names.items():
        ratio = mine[key] / theirs[key] if theirs[key] else float("nan")
        print(f"| {name} | {mine[key]:.2f} | {theirs[key]:.2f} | {ratio:.3f} | <= {targets[key]} |")
    print("\n| side | run | total (s) | UNet (s) | decode (s) | peak (MB) | others' CPU | busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for side in ("this", "ref"):
        for index, r in enumerate(runs[side]):
            print(
                f"| {side if side == 'this' else opts.compare} | {index + 1} | {r['total_seconds']:.2f} | "
                f"{r['unet_seconds']:.2f} | {r['decode_seconds']:.2f} | {_peak(r) / MB:.0f} | "
                f"{100 * r['others_cpu_share']:.0f}% | {'yes' if r['busy'] else ''} |"
            )
    print(f"\nrerun: python benchmarks/bench_sampler.py {' '.join(argv)}")
    if opts.json is not None:
        opts.json.write_text(json.dumps({"this": runs["this"], "ref": runs["ref"]}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = build_parser().parse_args(argv)
    if opts.size is None:
        opts.size = {"tiny": 64, "full": 256, "real": 512}[opts.config]
        argv += ["--size", str(opts.size)]
    if opts.case is None:
        opts.case = "v2_hands" if _is_v2(opts.mode) else "v1_audio"
        argv += ["--case", opts.case]
    if opts.config == "tiny" and opts.child is None:
        case_variant = _case_variant(json.loads((parity_cases_dir() / opts.case / "case.json").read_text()))
        if case_variant != opts.mode:
            raise SystemExit(
                f"--config tiny runs the case's own variant: case {opts.case} is {case_variant!r}, "
                f"not --mode {opts.mode!r} (pass --mode {case_variant})"
            )
    if opts.config == "real" and opts.weights is None:
        raise SystemExit("--config real needs --weights <folder with the BadToBest/EchoMimic files>")
    if opts.child is not None:
        print(json.dumps(run_child(opts, opts.child)))
        return 0
    if opts.compare is not None:
        return run_compare(opts, argv)

    timing = _spawn(opts, argv, opts.frames)
    memory = [timing if length == opts.frames else _spawn(opts, argv, length) for length in opts.lengths]
    on_gpu = "peak_cuda_bytes" in timing
    kind = "GPU max_memory_allocated" if on_gpu else f"peak RSS ({timing['rss_source']})"
    print(
        f"\nconfig {opts.config}, mode {timing['mode']}, {opts.size}x{opts.size}, {opts.steps} steps, cfg {opts.cfg}, "
        f"context {opts.context_frames}/{opts.context_overlap}, {timing['device']} {timing['dtype']}, "
        f"{timing['threads']} threads; memory = {kind} during generate_video\n"
    )
    print(
        f"CPU cores: {os.cpu_count()}; 'load avg' = 1-minute load average before the run (timings above "
        "the core count include other processes' contention)\n"
    )
    print("| frames | s / denoising step | s / video-second | peak memory (MB) | model load (s) | load avg |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {timing['length']} | {timing['seconds_per_step']:.3f} | {timing['seconds_per_video_second']:.3f} | "
        f"{_peak(timing) / MB:.0f} | {timing['load_seconds']:.1f} | {timing['load_average_before']:.1f} |"
    )
    if memory:
        print(
            "\n| frames | peak memory (MB) | of which before the call (MB) | output frames (MB) | "
            "peak - frames (MB) | s / video-second | load avg |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for result in memory:
            before = result.get("baseline_cuda_bytes", result["baseline_rss_bytes"])
            print(
                f"| {result['length']} | {_peak(result) / MB:.1f} | {before / MB:.1f} | "
                f"{result['output_frames_bytes'] / MB:.1f} | "
                f"{(_peak(result) - result['output_frames_bytes']) / MB:.1f} | "
                f"{result['seconds_per_video_second']:.3f} | {result['load_average_before']:.1f} |"
            )
        if len(memory) >= 2:
            first, last = memory[0], memory[-1]
            growth = ((_peak(last) - last["output_frames_bytes"]) - (_peak(first) - first["output_frames_bytes"])) / (
                last["length"] - first["length"]
            )
            print(
                f"\npeak - output frames grows by {growth / MB:.3f} MB per extra frame "
                f"({first['length']} -> {last['length']} frames; target < 1 MB/frame at "
                f"{'768x768' if _is_v2(timing['mode']) else '512x512'})"
            )
    if opts.json is not None:
        opts.json.write_text(json.dumps({"timing": timing, "memory": memory}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
