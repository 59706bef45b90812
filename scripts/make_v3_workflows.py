"""Write the shipped EchoMimic V3 flash workflows (workflows/echomimic_v3_*.json, ComfyUI UI format).

The Wan parts are ComfyUI's own core loaders (the Comfy-Org repackaged files other Wan workflows use), except
in the official-layout workflow, which uses the project's own text / CLIP / VAE nodes. Our nodes' sockets and
widgets come from their INPUT_TYPES (scripts/make_v2_workflows.py's builder). Run from the repository root:
python scripts/make_v3_workflows.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from make_v2_workflows import CORE, Workflow  # noqa: E402

from echomimic.release import COMFY_WAN_FILES  # noqa: E402
from tests.comfy_stubs import install_stub_modules, load_extension  # noqa: E402

UMT5_FILE, CLIP_VISION_FILE, WAN_VAE_FILE = (COMFY_WAN_FILES[kind] for kind in ("text_encoders", "clip_vision", "vae"))
PROMPT = "A person is speaking."

CORE.update(
    {
        "CLIPLoader": {
            "inputs": [],
            "outputs": [("CLIP", "CLIP")],
            "widgets": ["clip_name", "type", "device"],
            "size": (380, 110),
        },
        "CLIPTextEncode": {
            "inputs": [("clip", "CLIP", False)],
            "outputs": [("CONDITIONING", "CONDITIONING")],
            "widgets": ["text"],
            "size": (380, 140),
        },
        "CLIPVisionLoader": {
            "inputs": [],
            "outputs": [("CLIP_VISION", "CLIP_VISION")],
            "widgets": ["clip_name"],
            "size": (380, 60),
        },
        "CLIPVisionEncode": {
            "inputs": [("clip_vision", "CLIP_VISION", False), ("image", "IMAGE", False)],
            "outputs": [("CLIP_VISION_OUTPUT", "CLIP_VISION_OUTPUT")],
            "widgets": ["crop"],
            "size": (300, 80),
        },
    }
)


def build(
    name: str,
    title: str,
    speech: str,
    wan: str,
    classes: dict[str, Any],
    display: dict[str, str],
    sampler_widgets: dict[str, Any],
) -> dict[str, Any]:
    """speech: 'file' (Load Audio) or 'video' (the sound of a video); wan: 'files' (ComfyUI's Wan files through
    our one loader that downloads them), 'comfy' (ComfyUI's core loaders) or 'official' (the project's nodes
    on the official release layout)."""
    flow = Workflow(title, classes, display)
    portrait = flow.add("LoadImage", 0, {"image": "portrait.png", "upload": "image"})
    if speech == "video":
        video = flow.add("LoadVideo", 0, {"file": "driving_video.mp4", "upload": "image"})
        components = flow.add("GetVideoComponents", 0)
        flow.link(video, "VIDEO", components, "video")
        audio_node, audio_output = components, "audio"
    else:
        audio_node = flow.add("LoadAudio", 0, {"audio": "speech.wav", "audioUI": None, "upload": None})
        audio_output = "AUDIO"
    encoder = flow.add("EchoMimicV3AudioEncoderLoader", 1)
    features = flow.add("EchoMimicV3AudioFeatures", 1, {"fps": 25.0})
    flow.link(audio_node, audio_output, features, "audio")
    flow.link(encoder, "audio_encoder", features, "audio_encoder")
    if wan in ("comfy", "files"):
        if wan == "files":  # one node: ComfyUI's files, downloaded into its folders on first use
            files = flow.add("EchoMimicV3WanFiles", 1)
            clip, clip_socket, vision, vision_socket, vae, vae_socket = (
                files,
                "clip",
                files,
                "clip_vision",
                files,
                "vae",
            )
        else:
            clip = flow.add("CLIPLoader", 1, {"clip_name": UMT5_FILE, "type": "wan", "device": "default"})
            vision = flow.add("CLIPVisionLoader", 2, {"clip_name": CLIP_VISION_FILE})
            vae = flow.add("VAELoader", 2, {"vae_name": WAN_VAE_FILE})
            clip_socket, vision_socket, vae_socket = "CLIP", "CLIP_VISION", "VAE"
        text = flow.add("CLIPTextEncode", 2, {"text": PROMPT}, title="Prompt")
        flow.link(clip, clip_socket, text, "clip")
        encode = flow.add("CLIPVisionEncode", 2, {"crop": "none"})
        flow.link(vision, vision_socket, encode, "clip_vision")
        flow.link(portrait, "IMAGE", encode, "image")
        positive, clip_output, vae_output = (text, "CONDITIONING"), (encode, "CLIP_VISION_OUTPUT"), (vae, vae_socket)
    else:
        text = flow.add("EchoMimicV3TextEncode", 2, {"text": PROMPT})
        encode = flow.add("EchoMimicV3ClipVisionEncode", 2)
        flow.link(portrait, "IMAGE", encode, "image")
        vae = flow.add("EchoMimicV3VAELoader", 2)
        positive, clip_output, vae_output = (text, "conditioning"), (encode, "clip_vision_output"), (vae, "vae")
    model = flow.add("EchoMimicV3ModelLoader", 3)
    sampler = flow.add("EchoMimicV3Sampler", 3, sampler_widgets)
    flow.link(model, "model", sampler, "model")
    flow.link(portrait, "IMAGE", sampler, "reference_image")
    flow.link(features, "audio_features", sampler, "audio_features")
    flow.link(*positive, sampler, "positive")
    flow.link(*clip_output, sampler, "clip_vision_output")
    flow.link(*vae_output, sampler, "vae")
    create = flow.add("CreateVideo", 4, {"fps": 25}, widget_inputs=("fps",))
    flow.link(sampler, "images", create, "images")
    flow.link(sampler, "audio", create, "audio")
    flow.link(sampler, "fps", create, "fps")
    prefix = "echomimic/" + name.lower().replace("echomimic ", "").replace(", ", "_").replace(" ", "_")
    save = flow.add("SaveVideo", 4, {"filename_prefix": prefix, "format": "auto", "codec": "auto"})
    flow.link(create, "VIDEO", save, "video")
    return flow.to_json()


def main() -> None:
    install_stub_modules(Path(tempfile.mkdtemp(prefix="echomimic-workflows-")))
    extension = load_extension()
    classes, display = extension.NODE_CLASS_MAPPINGS, extension.NODE_DISPLAY_NAME_MAPPINGS
    flows = {
        # The file name is the title in ComfyUI's template browser (A-Z order).
        "EchoMimic V3 flash": (
            "EchoMimic V3 flash: a portrait, speech and a prompt (ComfyUI's Wan files)",
            "file",
            "files",
            {},
        ),
        "EchoMimic V3 flash, speech from a video": (
            "EchoMimic V3 flash: speech from any AUDIO node (a video's sound)",
            "video",
            "comfy",
            {},
        ),
        "EchoMimic V3 flash, long speech, official files": (
            "EchoMimic V3 flash: long speech in chunks, official file layout",
            "file",
            "official",
            {"chunk_frames": 81, "chunk_overlap": 9},
        ),
    }
    for name, (title, speech, wan, widgets) in flows.items():
        workflow = build(name, title, speech, wan, classes, display, widgets)
        path = REPO_ROOT / "workflows" / f"{name}.json"
        path.write_text(json.dumps(workflow, indent=1) + "\n", encoding="utf-8")
        print("wrote", path.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
