"""Every shell command of README.md, run as written, the way a newcomer runs it.

The commands are read from README.md's fenced ``bash`` blocks, so a README edit cannot drift from what is
tested: the Quick start block, every ``python -m echomimic ...`` line and every ``hf ...`` line. They run
from an empty folder, in a fresh virtual environment the Quick start itself creates, against

- a loopback Hugging Face endpoint (``HF_ENDPOINT``) serving the tiny parity weights under the official
  repositories' file names, and
- a loopback MediaPipe base URL serving ``../shared/mediapipe``,

with an empty Hugging Face cache. What the test changes, and nothing else: the ``git clone`` URL points at
a snapshot of this working tree (no network), and ``generate`` lines get size/step flags plus
``--config-dir`` with the tiny architecture configs, so that the run finishes on a CPU.

The ComfyUI install commands (``git clone`` into ``custom_nodes`` + ``pip install -r requirements.txt`` with
ComfyUI's Python) are proven by the real-ComfyUI setup of CI (``scripts/setup_comfyui.sh`` installs this
extension that way, and ``tests/test_comfyui_e2e.py`` runs it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import probe_mp4
from tests.loopback_http import hub_server, mediapipe_server
from tests.parity_cases import MEDIAPIPE_ROOT, PARITY_ROOT, REPO_ROOT
from tests.v3_cases import tiny_clip_heads, tiny_tokenizer_folder, v3_cases

README = REPO_ROOT / "README.md"
CLONE_URL = "https://github.com/echomimic-comfyui/ComfyUI-EchoMimic"
CLONE_FOLDER = "ComfyUI-EchoMimic"
# Flags added to `generate` so the tiny models run in seconds (the only change to a command besides the URL).
TINY_FLAGS = ["--width", "64", "--height", "64", "--steps", "1"]
V3_TINY_FLAGS = ["--width", "64", "--height", "48", "--steps", "1", "--length", "13"]  # one chunk, 0.52 s
SHELL_FENCE = re.compile(r"^```(?:bash|sh|shell)\s*\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, list[str]]]:
    """(heading above it, its commands) for every fenced shell block; ``\\`` continuations joined, comments
    dropped."""
    text = README.read_text()
    blocks = []
    for match in SHELL_FENCE.finditer(text):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)
        joined = match.group(1).replace("\\\n", " ")
        commands = [line.split("  #")[0].strip() for line in joined.splitlines()]
        blocks.append((headings[-1] if headings else "", [c for c in commands if c and not c.startswith("#")]))
    return blocks


def quick_start() -> list[str]:
    """The first bash block under the 'Quick start' heading: the newcomer's first commands."""
    found = [commands for heading, commands in readme_blocks() if heading.strip().lower() == "quick start"]
    assert found, "README.md needs a bash block under a 'Quick start' heading"
    return found[0]


def other_commands() -> list[str]:
    """Every ``python -m echomimic`` and ``hf`` command outside the Quick start."""
    first = quick_start()
    return [
        command
        for _, commands in readme_blocks()
        if commands is not first and commands != first
        for command in commands
        if command.startswith(("python -m echomimic", "hf "))
    ]


def _v3_hub_files(scratch: Path) -> dict[str, dict[str, Path]]:
    """The three V3 repositories, served from the first flash case's tiny models (+ a tiny tokenizer)."""
    from echomimic import release

    case = v3_cases("flash")[0]
    tokenizer = tiny_tokenizer_folder(scratch / "tokenizer")
    repos: dict[str, dict[str, Path]] = {}
    for item in release.V3_FLASH_FILES:
        name = Path(item.relative_path).name
        local = tokenizer / name if item.role.startswith("tokenizer:") else case / "models" / item.relative_path
        assert local.is_file(), f"{local} is missing"
        repos.setdefault(item.repo_id, {})[item.repo_filename] = local
    # ComfyUI's repackaged Wan files (the README's hf command for ComfyUI users): a tiny .safetensors each.
    stand_in = case / "models" / release.V3_FLASH_FILES[0].relative_path
    repos[release.COMFY_WAN_REPO] = {
        f"split_files/{kind}/{name}": stand_in for kind, name in release.COMFY_WAN_FILES.items()
    }
    return repos


def _hub_files() -> dict[str, dict[str, Path]]:
    """The official repositories' files, served from the tiny parity weights (release names)."""
    from echomimic.release import VARIANTS

    v1_audio, v1_pose, v2 = PARITY_ROOT / "v1_audio", PARITY_ROOT / "v1_pose_acc", PARITY_ROOT / "v2_hands"
    whisper = PARITY_ROOT / "common" / "whisper_tiny_random.pt"
    v1: dict[str, Path] = {"audio_processor/whisper_tiny.pt": whisper}
    for name, case in (("audio", v1_audio), ("audio_acc", v1_audio), ("pose", v1_pose), ("pose_acc", v1_pose)):
        for role, stem in VARIANTS[name].stems.items():
            v1[f"{stem}.pth"] = case / "weights" / f"{dict(VARIANTS['audio'].stems)[role]}.pth"
    v2_files: dict[str, Path] = {"audio_processor/tiny.pt": whisper}
    for name in ("v2", "v2_acc"):
        for role, stem in VARIANTS[name].stems.items():
            v2_files[f"{stem}.pth"] = v2 / "weights" / f"{dict(VARIANTS['v2'].stems)[role]}.pth"
    vae = {
        "config.json": v1_audio / "vae" / "config.json",
        "diffusion_pytorch_model.safetensors": v1_audio / "vae" / "diffusion_pytorch_model.safetensors",
    }
    original_vae = {
        "vae-ft-mse-840000-ema-pruned.safetensors": v1_audio / "vae" / "diffusion_pytorch_model.safetensors"
    }
    for files in (v1, v2_files, vae):
        for local in files.values():
            assert local.is_file(), f"{local} is missing from ../shared/parity"
    return {
        "BadToBest/EchoMimic": v1,
        "BadToBest/EchoMimicV2": v2_files,
        "stabilityai/sd-vae-ft-mse": vae,
        "stabilityai/sd-vae-ft-mse-original": original_vae,
    }


def _snapshot_of_this_tree(target: Path) -> Path:
    """A git repository holding this working tree's files (tracked and untracked-not-ignored): what a clone
    of the published repository gets, without the network."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-C", str(target), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], check=True)
    return target


def _as_tested(command: str, source: Path, tiny_config: Path) -> str:
    """The command with the test's only changes: the clone URL (-> ``source``), and tiny flags on ``generate``."""
    command = command.replace(CLONE_URL, f"{source} {CLONE_FOLDER}", 1)
    if command.startswith("python -m echomimic generate") and "v3_flash" in command:
        command += " " + shlex.join(V3_TINY_FLAGS)
    elif command.startswith("python -m echomimic generate"):
        command += " " + shlex.join([*TINY_FLAGS, "--config-dir", str(tiny_config)])
    return command


def _run(script: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run commands as one ``bash -e`` script (``cd`` and ``. activate`` carry over, as in a terminal)."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def _check_mp4(path: Path, frames: int, seconds: float) -> None:
    info = probe_mp4(path)
    assert info["frames"].shape[0] == frames, info["frames"].shape
    assert abs(info["video_seconds"] - seconds) < 0.05, info["video_seconds"]
    assert info["audio"] is not None and info["audio"]["codec"] == "aac", info["audio"]
    assert abs(info["audio"]["seconds"] - seconds) < 0.1, info["audio"]


def test_readme_commands_run_as_written_from_an_empty_folder(tmp_path: Path) -> None:
    """Catches a README command that does not work for a newcomer: the Quick start from an empty folder in a
    fresh venv (e.g. ``generate --download`` refusing the folder it is meant to create), a ``python -m
    echomimic`` or ``hf`` example that fails, an mp4 without the right frames or sound, a second run that
    downloads again, or a README whose commands are no longer picked up by this test."""
    commands = quick_start()
    assert any(c.startswith("git clone ") and CLONE_URL in c for c in commands), commands
    assert any(c.startswith("python -m echomimic generate") for c in commands), commands
    extra = other_commands()
    assert any(c.startswith("hf download") for c in extra) and any("echomimic check" in c for c in extra), extra

    source = _snapshot_of_this_tree(tmp_path / "published")
    user = tmp_path / "user"
    user.mkdir()
    tiny_config = PARITY_ROOT / "v1_audio" / "config"
    with hub_server({**_hub_files(), **_v3_hub_files(tmp_path)}) as hub, mediapipe_server(MEDIAPIPE_ROOT) as mediapipe:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ECHOMIMIC_", "VIRTUAL_ENV", "PYTHON", "HF_", "PIP_REQUIRE"))
        }
        env.update(
            HF_ENDPOINT=hub.url,
            HF_HOME=str(tmp_path / "hf_home"),
            HF_HUB_DISABLE_TELEMETRY="1",
            ECHOMIMIC_MEDIAPIPE_BASE_URL=mediapipe.url,
            PATH=os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p),
        )
        script = [_as_tested(c, source, tiny_config) for c in commands]
        first = _run(script, user, env, timeout=1800)
        assert first.returncode == 0, f"Quick start failed:\n{first.stdout[-3000:]}\n{first.stderr[-5000:]}"
        clone = user / CLONE_FOLDER
        _check_mp4(clone / "out.mp4", frames=96, seconds=4.0)
        assert "no GPU found" in first.stderr and "estimate on the CPU" in first.stderr, first.stderr[-3000:]
        assert hub.requests and mediapipe.requests  # it really fetched the weights and the MediaPipe files

        hub.requests.clear()
        mediapipe.requests.clear()
        (clone / "out.mp4").unlink()
        # The same command again, in a new terminal: into the clone, the venv on, generate.
        rerun = [c for c in script if c.startswith("cd ")] + [". .venv/bin/activate", script[-1]]
        second = _run(rerun, user, env, timeout=900)
        assert second.returncode == 0, second.stderr[-3000:]
        assert (clone / "out.mp4").is_file()
        assert hub.requests == [] and mediapipe.requests == [], (hub.requests, mediapipe.requests)

        for command in extra:
            folder = tmp_path / f"cmd{len(list(tmp_path.iterdir()))}"
            if command.startswith("hf "):  # ComfyUI users fetch into their models folder: an empty one here
                folder.mkdir()
                cwd = folder
            else:  # the CLI runs in the clone
                cwd = clone
            if "v3_flash" in command:  # the tiny CLIP's head count (not derivable from its 48-wide weights)
                _write_v3_override(clone / release_folder("v3"), v3_cases("flash")[0])
            result = _run(
                [f". {clone}/.venv/bin/activate", _as_tested(command, source, tiny_config)], cwd, env, timeout=900
            )
            assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            if command.startswith("hf "):
                assert any(path.is_file() for path in folder.rglob("*")), f"{command} fetched nothing"
            match = re.search(r"--out (\S+)", command)
            if match and "v3_flash" in command:
                _check_mp4(cwd / match.group(1), frames=13, seconds=0.52)
            elif match:
                _check_mp4(cwd / match.group(1), frames=96, seconds=4.0)


def release_folder(version: str) -> str:
    from echomimic.release import DEFAULT_WEIGHTS_FOLDER

    return DEFAULT_WEIGHTS_FOLDER[version]


def _write_v3_override(folder: Path, case: Path) -> None:
    import json

    from echomimic.v3.files import OVERRIDES_FILE

    folder.mkdir(parents=True, exist_ok=True)
    (folder / OVERRIDES_FILE).write_text(json.dumps({"clip_num_heads": tiny_clip_heads(case)}))


def test_readme_names_every_config_override() -> None:
    """Catches the README naming only some of the config files the loader reads from a weights folder (V2
    reads pose_encoder.json, the V1 landmark modes face_locator_pose.json)."""
    from echomimic.models.config import INFERENCE_CONFIG_NAME, UNET_CONFIG_NAME
    from echomimic.release import ROLES, VARIANTS

    text = README.read_text()
    names = {UNET_CONFIG_NAME, INFERENCE_CONFIG_NAME} | {f"{v.stems[ROLES[3]]}.json" for v in VARIANTS.values()}
    assert {"pose_encoder.json", "face_locator_pose.json", "face_locator.json"} <= names
    assert [name for name in sorted(names) if f"`{name}`" not in text] == []


@pytest.mark.parametrize(
    "pattern",
    ["/pretrained_weights/x.pth", "/pretrained_weights_v2/x.pth", "/out_previews/step_001.png", "/clip_previews/a.png"],
)
def test_gitignore_covers_what_the_cli_writes(pattern: str) -> None:
    """Catches .gitignore missing a folder the CLI creates in the clone (weights folders, preview folders)."""
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", pattern.lstrip("/")], cwd=REPO_ROOT)
    assert result.returncode == 0, f"{pattern} is not ignored by .gitignore"
