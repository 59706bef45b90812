"""The GPU suite: one command that measures what the README's hardware table needs, in one short window.

    python benchmarks/gpu_suite.py [--out gpu_suite.md]     # on a CUDA machine, about 5-8 minutes
    python benchmarks/gpu_suite.py --quick                  # tiny models, a few frames, on CPU (CI)

Each row is one run of ``benchmarks/bench_sampler.py`` in a fresh process (full-size random weights, the
shipped configs; ``--quick``: the tiny parity models), so peak memory is the run's own. It writes a table of
seconds per video-second, peak memory (``torch.cuda.max_memory_allocated`` on a GPU, peak RSS on CPU) and,
for the half-precision rows, the largest deviation of their frames from the fp32 frames of the same run. A
NaN or inf anywhere in a run's frames fails the suite (exit 1).

Rows: V1 audio at 512x512 (30 steps) and accelerated (6 steps), V2 at 768x768 (30) and accelerated (6), in
fp16 and bf16; ``window_batch`` auto against 1; ``torch.compile`` off against on; the deviation runs; V3 flash
(``benchmarks/bench_v3.py``) at 768x768 with 81 frames, TeaCache on and off, two chunks at 512x512, and its
bf16 deviation; the deep-feature cache (``benchmarks/bench_deep_cache.py``): V1 audio 30 steps at 512x512, fp16,
cache interval 3 against off in one process, with its UNet and total speed-up and the deviation of its frames from
the exact ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench_sampler.py"
BENCH_V3 = Path(__file__).resolve().parent / "bench_v3.py"
BENCH_DEEP_CACHE = Path(__file__).resolve().parent / "bench_deep_cache.py"
MB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    label: str
    mode: str
    size: int
    steps: int
    frames: int
    dtype: str
    extra: tuple[str, ...] = ()
    deviation_of: str | None = None  # label of the fp32 row whose frames this row is compared with


def full_rows() -> list[Row]:
    rows: list[Row] = []
    for mode, label, size, steps in (
        ("audio", "V1 audio", 512, 30),
        ("audio_acc", "V1 audio accelerated", 512, 6),
        ("v2", "V2", 768, 30),
        ("v2_acc", "V2 accelerated", 768, 6),
    ):
        for dtype in ("fp16", "bf16"):
            rows.append(Row(f"{label}, {dtype}", mode, size, steps, 24, dtype))
    rows.append(Row("V1 audio, fp16, window_batch 1", "audio", 512, 30, 24, "fp16", ("--window-batch", "1")))
    rows.append(Row("V1 audio, fp16, torch.compile", "audio", 512, 30, 24, "fp16", ("--compile",)))
    # The deep-feature cache, on (interval 3) against off in one process: 24 frames = 3 windows, window_batch auto.
    rows.append(
        Row(
            "V1 audio, fp16, deep-feature cache interval 3 vs off",
            "deep_cache",
            512,
            30,
            24,
            "fp16",
            ("--context-frames", "12", "--context-overlap", "3", "--window-batch", "0"),
        )
    )
    for mode, label, size in (("audio", "V1 audio", 512), ("v2", "V2", 768)):  # deviation: short, same noise
        reference = f"{label}, fp32 (2 steps, 12 frames)"
        rows.append(Row(reference, mode, size, 2, 12, "fp32"))
        for dtype in ("fp16", "bf16"):
            rows.append(Row(f"{label}, {dtype} (2 steps, 12 frames)", mode, size, 2, 12, dtype, deviation_of=reference))
    # V3 flash: the official claim is 12 GB at 768x768 with 81 frames (bf16, TeaCache on).
    rows.append(Row("V3 flash 768x768, 81 frames, bf16, TeaCache", "v3_flash", 768, 8, 81, "bf16"))
    rows.append(
        Row("V3 flash 768x768, 81 frames, bf16, no TeaCache", "v3_flash", 768, 8, 81, "bf16", ("--no-teacache",))
    )
    rows.append(Row("V3 flash 512x512, 161 frames (2 chunks), bf16", "v3_flash", 512, 8, 161, "bf16"))
    rows.append(Row("V3 flash 512x512, fp32 (2 steps, 21 frames)", "v3_flash", 512, 2, 21, "fp32"))
    rows.append(
        Row(
            "V3 flash 512x512, bf16 (2 steps, 21 frames)",
            "v3_flash",
            512,
            2,
            21,
            "bf16",
            deviation_of="V3 flash 512x512, fp32 (2 steps, 21 frames)",
        )
    )
    return rows


def quick_rows() -> list[Row]:
    rows = [
        Row("V1 audio (tiny), fp32", "audio", 64, 2, 8, "fp32", ("--config", "tiny", "--case", "v1_audio")),
        Row(
            "V1 audio (tiny), fp32, window_batch 1",
            "audio",
            64,
            2,
            8,
            "fp32",
            ("--config", "tiny", "--case", "v1_audio", "--window-batch", "1"),
        ),
        Row("V2 (tiny), fp32", "v2", 64, 2, 8, "fp32", ("--config", "tiny", "--case", "v2_hands")),
        Row(
            "V1 audio (tiny), bf16",
            "audio",
            64,
            2,
            8,
            "bf16",
            ("--config", "tiny", "--case", "v1_audio"),
            deviation_of="V1 audio (tiny), fp32",
        ),
        Row(
            "V1 audio (tiny), fp32, deep-feature cache interval 3 vs off",
            "deep_cache",
            64,
            6,
            8,
            "fp32",
            ("--config", "tiny", "--case", "v1_audio", "--context-frames", "4", "--context-overlap", "1"),
        ),
        Row(
            "V3 flash (tiny), fp32, 3 chunks",
            "v3_flash",
            64,
            2,
            29,
            "fp32",
            ("--config", "tiny", "--chunk-frames", "13", "--chunk-overlap", "5"),
        ),
    ]
    return rows


def run_row(index: int, row: Row, device: str, work: Path) -> dict:
    frames_file = work / f"run{index}.npy"
    if row.mode == "v3_flash":
        argv = [
            sys.executable,
            str(BENCH_V3),
            "--size",
            str(row.size),
            "--steps",
            str(row.steps),
            "--frames",
            str(row.frames),
            "--dtype",
            row.dtype,
            "--device",
            device,
            "--save-frames",
            str(frames_file),
        ]
        argv += row.extra if "--config" in row.extra else ("--config", "full", *row.extra)
        return _finish(row, argv, frames_file)
    if row.mode == "deep_cache":
        argv = [
            sys.executable,
            str(BENCH_DEEP_CACHE),
            "--size",
            str(row.size),
            "--steps",
            str(row.steps),
            "--frames",
            str(row.frames),
            "--dtype",
            row.dtype,
            "--device",
            device,
            *row.extra,
        ]
        return _finish(row, argv, frames_file)
    argv = [
        sys.executable,
        str(BENCH),
        "--mode",
        row.mode,
        "--size",
        str(row.size),
        "--steps",
        str(row.steps),
        "--frames",
        str(row.frames),
        "--lengths",
        "--dtype",
        row.dtype,
        "--device",
        device,
        "--save-frames",
        str(frames_file),
    ]
    if "--config" not in row.extra:
        argv += ["--config", "full"]
    argv += [*row.extra, "--child", str(row.frames)]
    return _finish(row, argv, frames_file)


def _finish(row: Row, argv: list[str], frames_file: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        return {
            "label": row.label,
            "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed",
            "wall": time.perf_counter() - started,
        }
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(label=row.label, frames_file=str(frames_file), wall=time.perf_counter() - started)
    return result


def deviation(result: dict, reference: dict) -> float:
    import numpy as np

    return float(np.abs(np.load(result["frames_file"]) - np.load(reference["frames_file"])).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models, a few frames, CPU (CI)")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --quick")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    opts = parser.parse_args(argv)
    device = opts.device or ("cpu" if opts.quick else "cuda")
    rows = quick_rows() if opts.quick else full_rows()
    results: dict[str, dict] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="echomimic-gpu-suite-") as folder:
        for index, row in enumerate(rows):
            result = run_row(index, row, device, Path(folder))
            results[row.label] = result
            if "error" in result:
                print(f"{row.label}: failed: {result['error']}", file=sys.stderr, flush=True)
                failed = True
                continue
            if not result.get("finite", False):
                print(f"{row.label}: NaN or inf in the frames", file=sys.stderr, flush=True)
                failed = True
            if row.deviation_of and "error" not in results.get(row.deviation_of, {"error": 1}):
                result["deviation"] = deviation(result, results[row.deviation_of])
            print(f"{row.label}: {result['wall']:.0f} s", file=sys.stderr, flush=True)
    lines = [
        f"GPU suite ({'quick, tiny models' if opts.quick else 'full-size random weights'}), device {device}, "
        f"{os.cpu_count()} CPU cores",
        "",
        "| run | s / video-second | peak memory (MB) | max deviation from fp32 | finite |",
        "|---|---:|---:|---:|---|",
    ]
    cache_rows: list[str] = []
    for label, result in results.items():
        if "error" in result:
            lines.append(f"| {label} | failed: {result['error'][:80]} | | | |")
            continue
        if "unet_speedup" in result:  # a deep-feature cache row: on and off, side by side
            exact, cached = result["exact"], result["cached"]
            peak = {key: values.get("peak_cuda_bytes", 0) / MB for key, values in (("on", cached), ("off", exact))}
            lines.append(
                f"| {label}: off | {exact['seconds_per_video_second']:.2f} | {peak['off']:.0f} | | "
                f"{'yes' if exact['finite'] else 'NO'} |"
            )
            lines.append(
                f"| {label}: on | {cached['seconds_per_video_second']:.2f} | {peak['on']:.0f} | | "
                f"{'yes' if cached['finite'] else 'NO'} |"
            )
            cache_rows.append(
                f"| {label} | {result['unet_speedup']:.2f}x | {result['total_speedup']:.2f}x | "
                f"{result['max_abs_deviation']:.4f} | {result['mean_abs_deviation']:.5f} |"
            )
            continue
        peak = result.get("peak_cuda_bytes", result["peak_rss_bytes"]) / MB
        dev = f"{result['deviation']:.2e}" if "deviation" in result else ""
        lines.append(
            f"| {label} | {result['seconds_per_video_second']:.2f} | {peak:.0f} | {dev} | "
            f"{'yes' if result['finite'] else 'NO'} |"
        )
    if cache_rows:
        lines += [
            "",
            "| deep-feature cache run | UNet speed-up (off / on) | total speed-up | max abs deviation from off "
            "(0..1) | mean abs deviation |",
            "|---|---:|---:|---:|---:|",
            *cache_rows,
        ]
    table = "\n".join(lines)
    print(table)
    if opts.out is not None:
        opts.out.write_text(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
