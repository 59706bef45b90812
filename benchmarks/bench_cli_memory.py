"""Peak memory of ``python -m echomimic generate`` against the video's length, output included.

    python benchmarks/bench_cli_memory.py [--size 512] [--lengths 24 96 384] [--steps 1] [--save-frames]
    python benchmarks/bench_cli_memory.py --mode v3_flash [--size 256] [--chunk-frames 41]  # 1, 3, 6 chunks

Each length runs the real command in a fresh process on the tiny models of the ``v1_audio`` parity case
(``../shared/parity``) with speech long enough for the longest video (the example speech repeated); the
process reports its own peak resident memory (``ru_maxrss``). Frames stream from the decoder into the mp4
(and ``--save-frames``), so the slope (MB per extra frame) should be near zero; before, every frame was held
as float32 until the end (3 MB per frame at 512x512). ``--mode v3_flash`` runs V3 flash on the tiny models of
the first ``../shared/parity_v3`` flash case with chunks of 41 frames overlapping by 5 (lengths 41, 113, 221
are 1, 3 and 6 chunks; chunks longer than the H.264 encoder's lookahead, whose frames it holds anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.parity_cases import MEDIAPIPE_ROOT, PARITY_ROOT  # noqa: E402
from tests.test_cli import make_weights_dir  # noqa: E402  # the v1_audio case in the release layout
from tests.v3_cases import make_v3_weights_folder, v3_cases  # noqa: E402

# glibc: large blocks through mmap, returned when freed, so the peak RSS is live memory rather than the
# allocator's free lists (without it the same run's peak varies by about 50 MB, more than the slope measured).
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}

# The child: run the CLI in-process, then print its own peak RSS (MB) as the last stderr line.
_CHILD = """
import json, resource, sys
from echomimic.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
      file=sys.stderr)
"""


def long_speech(seconds: float, target: Path) -> Path:
    """The example speech repeated to at least ``seconds`` (16-bit PCM wav)."""
    with wave.open(str(REPO / "example_inputs" / "speech.wav")) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    repeats = int(seconds * params.framerate // params.nframes) + 1
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(frames * repeats)
    return target


def run(length: int, opts: argparse.Namespace, work: Path, weights: Path, speech: Path) -> dict:
    out = work / f"out_{length}.mp4"
    argv = [
        "generate",
        "--mode",
        opts.mode,
        "--image",
        str(REPO / "example_inputs" / "portrait.png"),
        "--audio",
        str(speech),
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--width",
        str(opts.size),
        "--height",
        str(opts.size),
        "--steps",
        str(opts.steps),
        "--length",
        str(length),
        "--device",
        "cpu",
        "--quiet",
    ]
    if opts.mode == "v3_flash":
        argv += ["--chunk-frames", str(opts.chunk_frames), "--chunk-overlap", "5"]
    if opts.save_frames:
        argv += ["--save-frames", str(work / f"frames_{length}.npy")]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",  # MediaPipe files from ../shared
            "ECHOMIMIC_MEDIAPIPE_BASE_URL": MEDIAPIPE_ROOT.as_uri(),
            **ALLOCATOR_ENV,
        },
    )
    seconds = time.perf_counter() - started
    report = json.loads(result.stderr.strip().splitlines()[-1])
    if report["status"] != 0:
        raise SystemExit(f"generate failed for {length} frames:\n{result.stderr[-3000:]}")
    out.unlink()
    return {"frames": length, "peak_mb": report["peak_mb"], "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="audio", choices=("audio", "v3_flash"))
    parser.add_argument("--size", type=int, default=None, help="square side (default 512; v3_flash 256)")
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=None, help="frames per run (default 24 96 384; v3_flash 13 29 53)"
    )
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--save-frames", action="store_true", help="also write --save-frames")
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=41,
        help="v3_flash: frames per chunk (overlap 5); the default lengths are 1, 3 and 6 chunks",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per length; the lowest peak is kept (the allocator's noise is ~50 MB)",
    )
    opts = parser.parse_args(argv)
    v3 = opts.mode == "v3_flash"
    opts.size = opts.size or (256 if v3 else 512)
    step = opts.chunk_frames - 5
    opts.lengths = opts.lengths or ([opts.chunk_frames + step * (n - 1) for n in (1, 3, 6)] if v3 else [24, 96, 384])
    with tempfile.TemporaryDirectory(prefix="echomimic-bench-") as folder:
        work = Path(folder)
        if v3:
            weights = make_v3_weights_folder(v3_cases("flash")[0], work)
        else:
            weights = make_weights_dir(PARITY_ROOT / "v1_audio", work / "weights")
        speech = long_speech(max(opts.lengths) / (25 if v3 else 24) + 1, work / "speech.wav")
        rows = [
            min(
                (run(length, opts, work, weights, speech) for _ in range(max(1, opts.repeat))),
                key=lambda row: row["peak_mb"],
            )
            for length in sorted(opts.lengths)
        ]
    frame_mb = opts.size * opts.size * 3 * 4 / 2**20
    print(
        f"CLI peak memory ({opts.mode}), tiny models, {opts.size}x{opts.size}, {opts.steps} step(s), CPU "
        f"(a float32 frame is {frame_mb:.1f} MB)"
    )
    print("| frames | peak MB | s |")
    print("|---:|---:|---:|")
    for row in rows:
        print(f"| {row['frames']} | {row['peak_mb']:.0f} | {row['seconds']:.0f} |")
    first, last = rows[0], rows[-1]
    if last["frames"] > first["frames"]:
        slope = (last["peak_mb"] - first["peak_mb"]) / (last["frames"] - first["frames"])
        print(f"slope: {slope:+.3f} MB per extra frame ({first['frames']} -> {last['frames']} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
