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

from tests.comfy_stubs import install_stub_modules, load_extension  # noqa: E402

# ComfyUI's Wan 2.1 files (Comfy-Org/Wan_2.1_ComfyUI_repackaged), as its own Wan templates name them.
UMT5_FILE = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
CLIP_VISION_FILE = "clip_vision_h.safetensors"
WAN_VAE_FILE = "wan_2.1_vae.safetensors"
PROMPT = "A person is speaking."

CORE.update({
    "CLIPLoader": {"inputs": [], "outputs": [("CLIP", "CLIP")], "widgets": ["clip_name", "type", "device"],
                   "size": (380, 110)},
    "CLIPTextEncode": {"inputs": [("clip", "CLIP", False)], "outputs": [("CONDITIONING", "CONDITIONING")],
                       "widgets": ["text"], "size": (380, 140)},
    "CLIPVisionLoader": {"inputs": [], "outputs": [("CLIP_VISION", "CLIP_VISION")], "widgets": ["clip_name"],
                         "size": (380, 60)},
    "CLIPVisionEncode": {"inputs": [("clip_vision", "CLIP_VISION", False), ("image", "IMAGE", False)],
                         "outputs": [("CLIP_VISION_OUTPUT", "CLIP_VISION_OUTPUT")], "widgets": ["crop"],
                         "size": (300, 80)},
})


def build(name: str, title: str, speech: str, wan: str, classes: dict[str, Any], display: dict[str, str],
          sampler_widgets: dict[str, Any]) -> dict[str, Any]:
    """speech: 'file' (Load Audio) or 'video' (the sound of a video); wan: 'comfy' (core loaders, ComfyUI's
    files) or 'official' (the project's nodes on the official release layout)."""
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
    if wan == "comfy":
        clip = flow.add("CLIPLoader", 1, {"clip_name": UMT5_FILE, "type": "wan", "device": "default"})
        text = flow.add("CLIPTextEncode", 2, {"text": PROMPT}, title="Prompt")
        flow.link(clip, "CLIP", text, "clip")
        vision = flow.add("CLIPVisionLoader", 2, {"clip_name": CLIP_VISION_FILE})
        encode = flow.add("CLIPVisionEncode", 2, {"crop": "none"})
        flow.link(vision, "CLIP_VISION", encode, "clip_vision")
        flow.link(portrait, "IMAGE", encode, "image")
        vae = flow.add("VAELoader", 2, {"vae_name": WAN_VAE_FILE})
        positive, clip_output, vae_output = (text, "CONDITIONING"), (encode, "CLIP_VISION_OUTPUT"), (vae, "VAE")
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
        "EchoMimic V3 flash": ("EchoMimic V3 flash: a portrait, speech and a prompt (ComfyUI's Wan files)",
                               "file", "comfy", {}),
        "EchoMimic V3 flash, speech from a video": ("EchoMimic V3 flash: speech from any AUDIO node (a video's sound)",
                                                    "video", "comfy", {}),
        "EchoMimic V3 flash, long speech, official files": (
            "EchoMimic V3 flash: long speech in chunks, official file layout", "file", "official",
            {"chunk_frames": 81, "chunk_overlap": 9}),
    }
    for name, (title, speech, wan, widgets) in flows.items():
        workflow = build(name, title, speech, wan, classes, display, widgets)
        path = REPO_ROOT / "workflows" / f"{name}.json"
        path.write_text(json.dumps(workflow, indent=1) + "\n", encoding="utf-8")
        print("wrote", path.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
