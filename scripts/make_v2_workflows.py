"""Write the shipped EchoMimic V2 workflows ("workflows/EchoMimic V2 *.json", ComfyUI UI format).

Our nodes' sockets and widget order are read from the extension's INPUT_TYPES, so running this again after
a node gains an input keeps the workflows loadable. Core nodes are written as the V1 workflows have them.
Run from the repository root:  python scripts/make_v2_workflows.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.comfy_stubs import install_stub_modules, load_extension  # noqa: E402

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
SOCKET_HEIGHT, WIDGET_HEIGHT, TITLE_HEIGHT, GAP = 20, 24, 30, 40

# Core nodes: sockets (name, type, optional), outputs (name, type), widgets, as in the V1 workflows.
CORE: dict[str, dict[str, Any]] = {
    "LoadImage": {
        "inputs": [],
        "outputs": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
        "widgets": ["image", "upload"],
        "size": (320, 360),
    },
    "LoadVideo": {"inputs": [], "outputs": [("VIDEO", "VIDEO")], "widgets": ["file", "upload"], "size": (320, 360)},
    "LoadAudio": {
        "inputs": [],
        "outputs": [("AUDIO", "AUDIO")],
        "widgets": ["audio", "audioUI", "upload"],
        "size": (320, 140),
    },
    "GetVideoComponents": {
        "inputs": [("video", "VIDEO", False)],
        "outputs": [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")],
        "widgets": [],
        "size": (260, 90),
    },
    "VAELoader": {"inputs": [], "outputs": [("VAE", "VAE")], "widgets": ["vae_name"], "size": (340, 60)},
    "PreviewImage": {"inputs": [("images", "IMAGE", False)], "outputs": [], "widgets": [], "size": (300, 300)},
    "CreateVideo": {
        "inputs": [("images", "IMAGE", False), ("audio", "AUDIO", True)],
        "outputs": [("VIDEO", "VIDEO")],
        "widgets": ["fps"],
        "size": (270, 80),
    },
    "SaveVideo": {
        "inputs": [("video", "VIDEO", False)],
        "outputs": [],
        "widgets": ["filename_prefix", "format", "codec"],
        "size": (400, 420),
    },
}


def our_node_spec(node_class: Any) -> dict[str, Any]:
    """Sockets, outputs and widget slots ('fixed' after a seed) of one of our nodes, from INPUT_TYPES."""
    inputs, widgets = [], []
    for section, entries in node_class.INPUT_TYPES().items():
        for name, spec in entries.items():
            kind = spec[0]
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                widgets.append((name, spec[1]))
                if spec[1].get("control_after_generate"):
                    widgets.append(("control_after_generate", {}))
            else:
                inputs.append((name, kind, section == "optional"))
    if node_class.__name__ == "EchoMimicSampler" and not any(name == "hand_pose_images" for name, *_ in inputs):
        print("warning: EchoMimicSampler has no hand_pose_images input yet; written as an optional IMAGE input")
        inputs.append(("hand_pose_images", "IMAGE", True))
    outputs = list(zip(node_class.RETURN_NAMES, node_class.RETURN_TYPES, strict=True))
    return {"inputs": inputs, "outputs": outputs, "widgets": widgets}


class Workflow:
    def __init__(self, title: str, classes: dict[str, Any], display: dict[str, str]) -> None:
        self.title, self.classes, self.display = title, classes, display
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.column_bottom: dict[int, float] = {}

    def add(
        self,
        node_type: str,
        column: int,
        widgets: dict[str, Any] | None = None,
        *,
        title: str | None = None,
        widget_inputs: tuple[str, ...] = (),
        x_step: int = 460,
    ) -> int:
        """Add a node below the previous one in `column`; widget values by name (others: their defaults)."""
        widgets = widgets or {}
        ours = node_type.startswith("EchoMimic")
        spec = our_node_spec(self.classes[node_type]) if ours else CORE[node_type]
        node_id = len(self.nodes) + 1
        inputs = [
            {"name": name, "type": kind, "link": None, **({"shape": 7} if optional else {})}
            for name, kind, optional in spec["inputs"]
        ]
        values: list[Any] = []
        for slot in spec["widgets"]:
            name, options = slot if isinstance(slot, tuple) else (slot, {})
            if name == "control_after_generate":
                values.append("fixed")
            elif name in widgets:
                values.append(widgets[name])
            elif "default" in options:
                values.append(options["default"])
            else:
                raise KeyError(f"{node_type}: give a value for widget {name!r}")
            if name in widget_inputs:
                inputs.append({"name": name, "type": "FLOAT", "link": None, "widget": {"name": name}})
        if ours:
            sockets = len(spec["inputs"])
            body = max(sockets, len(spec["outputs"])) * SOCKET_HEIGHT + len(spec["widgets"]) * WIDGET_HEIGHT + 20
            name = title or self.display.get(node_type, node_type)
            size = [max(320, int(len(name) * 8.4 + 60)), body]
        else:
            size = list(spec["size"])
            if title:  # the page cuts a title wider than the node
                size[0] = max(size[0], int(len(title) * 8.4 + 60))
        y = self.column_bottom.get(column, 0.0)
        self.column_bottom[column] = y + size[1] + TITLE_HEIGHT + GAP
        node = {
            "id": node_id,
            "type": node_type,
            "pos": [column * x_step, y],
            "size": size,
            "flags": {},
            "order": node_id - 1,
            "mode": 0,
            "inputs": inputs,
            "outputs": [
                {"name": name, "type": kind, "links": None, "slot_index": index}
                for index, (name, kind) in enumerate(spec["outputs"])
            ],
            "properties": {"cnr_id": "comfyui-echomimic" if ours else "comfy-core", "Node name for S&R": node_type},
            "widgets_values": values,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node_id

    def link(self, source: int, output: str, target: int, input_name: str) -> None:
        src, dst = self.nodes[source - 1], self.nodes[target - 1]
        slot = next(i for i, out in enumerate(src["outputs"]) if out["name"] == output)
        index = next(i for i, inp in enumerate(dst["inputs"]) if inp["name"] == input_name)
        link_id = len(self.links) + 1
        kind = src["outputs"][slot]["type"]
        self.links.append([link_id, source, slot, target, index, kind])
        src["outputs"][slot]["links"] = (src["outputs"][slot]["links"] or []) + [link_id]
        dst["inputs"][index]["link"] = link_id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"echomimic/{self.title}")),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": self.nodes,
            "links": self.links,
            "groups": [],
            "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [100, 110]}, "title": self.title},
            "version": 0.4,
        }


def build(
    name: str,
    title: str,
    variant: str,
    source: str,
    steps_cfg_seed: tuple[int, float, int],
    classes: dict[str, Any],
    display: dict[str, str],
) -> dict[str, Any]:
    """source: 'video' (driving video's hands, speech from a file) or 'poses' (a saved pose JSON, looped)."""
    flow = Workflow(title, classes, display)
    portrait = flow.add("LoadImage", 0, {"image": "half_body.png", "upload": "image"})
    speech = flow.add("LoadAudio", 0, {"audio": "speech.wav", "audioUI": None, "upload": None})
    encoder = flow.add("EchoMimicAudioEncoderLoader", 0, {"weights_folder": "EchoMimicV2"})
    if source == "video":
        video = flow.add("LoadVideo", 1, {"file": "driving_video.mp4", "upload": "image"})
        components = flow.add("GetVideoComponents", 1)
        flow.link(video, "VIDEO", components, "video")
        extract = flow.add("EchoMimicExtractHandPoses", 1, {"find_body": True})
        flow.link(components, "images", extract, "images")
        preview = flow.add("PreviewImage", 2, title="Hands found in the driving video")
        flow.link(extract, "preview", preview, "images")
        poses, poses_output = extract, "hand_poses"
    else:
        poses = flow.add("EchoMimicLoadHandPoses", 1, {"file": "hand_poses.json"})
        poses_output = "hand_poses"
    features = flow.add("EchoMimicAudioFeatures", 1, {"fps": 24.0}, widget_inputs=("fps",) if source == "video" else ())
    if source == "video":  # the hands play at the driving clip's own speed
        flow.link(components, "fps", features, "fps")
    flow.link(speech, "AUDIO", features, "audio")
    flow.link(encoder, "audio_encoder", features, "audio_encoder")
    align = flow.add("EchoMimicAlignHandPoses", 2, {"align": True})
    flow.link(poses, poses_output, align, "hand_poses")
    flow.link(portrait, "IMAGE", align, "reference_image")
    draw = flow.add("EchoMimicDrawHandPoses", 2, {"width": 768, "height": 768, "ref_w": 800})
    flow.link(align, "hand_poses", draw, "hand_poses")
    drawn_preview = flow.add("PreviewImage", 2, title="Hand pose images")
    flow.link(draw, "hand_pose_images", drawn_preview, "images")
    # The speech is trimmed to the frames the sampler makes from these poses (same length policy).
    flow.link(draw, "hand_pose_images", features, "driving_images")
    model = flow.add("EchoMimicModelLoader", 3, {"variant": variant, "weights_folder": "EchoMimicV2"})
    vae = flow.add("VAELoader", 3, {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"})
    steps, cfg, seed = steps_cfg_seed
    sampler_widgets = {
        "width": 768,
        "height": 768,
        "length": 0,
        "steps": steps,
        "cfg": cfg,
        "seed": seed,
        "context_frames": 12,
        "context_overlap": 3,
    }
    sampler_class = classes["EchoMimicSampler"]
    optional = sampler_class.INPUT_TYPES().get("optional", {})
    for input_name, spec in {**sampler_class.INPUT_TYPES()["required"], **optional}.items():
        if "policy" in input_name and isinstance(spec[0], list) and "loop" in spec[0]:
            sampler_widgets[input_name] = "loop"  # poses shorter than the speech start again
    sampler = flow.add("EchoMimicSampler", 4, sampler_widgets)
    flow.link(model, "model", sampler, "model")
    flow.link(vae, "VAE", sampler, "vae")
    flow.link(portrait, "IMAGE", sampler, "reference_image")
    flow.link(features, "audio_features", sampler, "audio_features")
    flow.link(draw, "hand_pose_images", sampler, "hand_pose_images")
    create = flow.add("CreateVideo", 5, {"fps": 24}, widget_inputs=("fps",))
    flow.link(sampler, "images", create, "images")
    flow.link(sampler, "audio", create, "audio")
    flow.link(sampler, "fps", create, "fps")
    save = flow.add("SaveVideo", 5, {"filename_prefix": f"echomimic/{name}", "format": "auto", "codec": "auto"})
    flow.link(create, "VIDEO", save, "video")
    return flow.to_json()


def main() -> None:
    install_stub_modules(Path(tempfile.mkdtemp(prefix="echomimic-workflows-")))
    extension = load_extension()
    classes, display = extension.NODE_CLASS_MAPPINGS, extension.NODE_DISPLAY_NAME_MAPPINGS
    flows = {  # file name = the title ComfyUI's template browser shows
        "EchoMimic V2 hands from a video": (
            "EchoMimic V2: half-body from a portrait, speech and a driving video's hands",
            "V2 semi-body",
            "video",
            (0, 0.0, 3407),
        ),
        "EchoMimic V2 hands from a video, accelerated": (
            "EchoMimic V2 accelerated: half-body from a driving video's hands",
            "V2 semi-body accelerated",
            "video",
            (0, 0.0, 420),
        ),
        "EchoMimic V2 looped hand poses": (
            "EchoMimic V2: speech from any audio, a saved hand pose sequence looped",
            "V2 semi-body accelerated",
            "poses",
            (0, 0.0, 420),
        ),
    }
    for name, (title, variant, source, numbers) in flows.items():
        workflow = build(name, title, variant, source, numbers, classes, display)
        path = REPO_ROOT / "workflows" / f"{name}.json"
        path.write_text(json.dumps(workflow, indent=1) + "\n", encoding="utf-8")
        print("wrote", path.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
