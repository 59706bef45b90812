"""Every workflow in workflows/ loads in a fresh ComfyUI with this extension: each node type exists, every
link joins matching types, and every widget value fits its input (count, type, range, combo values).

Our nodes are read from their INPUT_TYPES; ComfyUI core nodes from CORE_NODES, recorded from ComfyUI
0.3.64 (Comfy-Org/ComfyUI a125cd8) GET /object_info, trimmed to the fields checked here. File combos
(the user's own files) accept any file name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_stubs import REPO_ROOT, install_stub_modules, load_extension
from tests.comfy_stubs.workflow_format import (
    CONTROL_VALUES,
    FILE_COMBO,
    UI_ONLY_NODE_TYPES,
    check_widget_value,
    node_inputs,
    object_info_of,
    ui_to_api,
    widget_slots,
)

WORKFLOWS_DIR = REPO_ROOT / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.json"))


def _core(required: dict[str, Any], outputs: list[tuple[str, str]], optional: dict[str, Any] | None = None,
          output_node: bool = False) -> dict[str, Any]:
    inputs = {"required": required, **({"optional": optional} if optional else {})}
    return {"input": inputs, "input_order": {key: list(value) for key, value in inputs.items()},
            "output": [t for _, t in outputs], "output_name": [n for n, _ in outputs], "output_node": output_node}


CORE_NODES: dict[str, dict[str, Any]] = {
    "LoadImage": _core({"image": [FILE_COMBO, {"image_upload": True}]}, [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "LoadAudio": _core({"audio": [FILE_COMBO, {"audio_upload": True}]}, [("AUDIO", "AUDIO")]),
    "LoadVideo": _core({"file": ["COMBO", {"options": FILE_COMBO, "video_upload": True}]}, [("VIDEO", "VIDEO")]),
    "GetVideoComponents": _core({"video": ["VIDEO", {}]},
                                [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "VAELoader": _core({"vae_name": [FILE_COMBO, {}]}, [("VAE", "VAE")]),
    "UpscaleModelLoader": _core({"model_name": ["COMBO", {"options": FILE_COMBO}]},
                                [("UPSCALE_MODEL", "UPSCALE_MODEL")]),
    "ImageUpscaleWithModel": _core({"upscale_model": ["UPSCALE_MODEL", {}], "image": ["IMAGE", {}]},
                                   [("IMAGE", "IMAGE")]),
    "CreateVideo": _core({"images": ["IMAGE", {}], "fps": ["FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0}]},
                         [("VIDEO", "VIDEO")], optional={"audio": ["AUDIO", {}]}),
    "SaveVideo": _core({"video": ["VIDEO", {}], "filename_prefix": ["STRING", {"default": "video/ComfyUI"}],
                        "format": ["COMBO", {"options": ["auto", "mp4"]}],
                        "codec": ["COMBO", {"options": ["auto", "h264"]}]}, [], output_node=True),
    "PreviewImage": _core({"images": ["IMAGE", {}]}, [], output_node=True),
}


@pytest.fixture(scope="module")
def object_info(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    install_stub_modules(tmp_path_factory.mktemp("models"))
    ours = {node_id: object_info_of(cls) for node_id, cls in load_extension().NODE_CLASS_MAPPINGS.items()}
    assert not set(ours) & set(CORE_NODES)
    return {**CORE_NODES, **ours}


def validate_workflow(workflow: dict[str, Any], object_info: dict[str, dict[str, Any]]) -> list[str]:
    """Every problem that would stop the workflow from loading or running in a fresh ComfyUI."""
    problems: list[str] = []
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = {row[0]: row for row in workflow["links"]}
    if len(nodes) != len(workflow["nodes"]) or len(links) != len(workflow["links"]):
        problems.append("duplicate node or link ids")
    for node in workflow["nodes"]:
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in UI_ONLY_NODE_TYPES:
            continue
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"{where}: unknown node type")
            continue
        specs = {spec.name: spec for spec in node_inputs(info)}
        # Widget values: count, then each value against its input.
        slots = widget_slots(info)
        values = node.get("widgets_values") or []
        if len(values) != len(slots):
            problems.append(f"{where}: {len(values)} widget values for {len(slots)} widgets")
        for (spec, role), value in zip(slots, values):
            if role == "value":
                problem = check_widget_value(spec, value)
                if problem:
                    problems.append(f"{where}: {problem}")
            elif role == "control" and value not in CONTROL_VALUES:
                problems.append(f"{where}: {spec.name} control {value!r} is not one of {CONTROL_VALUES}")
        # Input sockets: known names, declared types, every required socket connected.
        connected = set()
        for slot, entry in enumerate(node.get("inputs", [])):
            spec = specs.get(entry["name"])
            if spec is None:
                problems.append(f"{where}: unknown input {entry['name']!r}")
                continue
            if entry.get("type") != spec.type:
                problems.append(f"{where}: input {spec.name} declared {entry.get('type')}, node says {spec.type}")
            if spec.is_widget and "widget" not in entry:
                problems.append(f"{where}: widget input {spec.name} lacks its 'widget' marker")
            link_id = entry.get("link")
            if link_id is None:
                continue
            row = links.get(link_id)
            if row is None:
                problems.append(f"{where}: input {spec.name} uses missing link {link_id}")
                continue
            connected.add(spec.name)
            _, origin_id, origin_slot, target_id, target_slot, link_type = row
            if (target_id, target_slot) != (node["id"], slot):
                problems.append(f"{where}: link {link_id} targets {target_id}:{target_slot}, not {node['id']}:{slot}")
            origin = nodes.get(origin_id)
            if origin is None:
                problems.append(f"{where}: link {link_id} comes from missing node {origin_id}")
                continue
            origin_info = object_info.get(origin["type"])
            if origin_info is None:
                continue
            if origin_slot >= len(origin_info["output"]):
                problems.append(f"{where}: link {link_id} uses output {origin_slot} of {origin['type']}, which has "
                                f"{len(origin_info['output'])}")
                continue
            output_type = origin_info["output"][origin_slot]
            if not (output_type == link_type == spec.type):
                problems.append(f"{where}: {origin['type']} output {origin_slot} ({output_type}) -> {spec.name} "
                                f"({spec.type}) via a {link_type} link")
            if link_id not in (origin["outputs"][origin_slot].get("links") or []):
                problems.append(f"{where}: link {link_id} missing from {origin['type']}'s output list")
        for spec in specs.values():
            if not spec.optional and not spec.is_widget and spec.name not in connected:
                problems.append(f"{where}: required input {spec.name} is not connected")
        # Output sockets as the node defines them.
        declared = [(out["name"], out["type"]) for out in node.get("outputs", [])]
        expected = list(zip(info["output_name"], info["output"]))
        if declared != expected:
            problems.append(f"{where}: outputs {declared} differ from the node's {expected}")
    for row in workflow["links"]:
        if row[1] not in nodes or row[3] not in nodes:
            problems.append(f"link {row[0]} joins missing nodes")
    return problems


def test_there_is_a_workflow_for_every_mode() -> None:
    names = {path.name for path in WORKFLOW_FILES}
    assert names == {
        "echomimic_v1_audio.json", "echomimic_v1_audio_accelerated.json", "echomimic_v1_landmarks_from_video.json",
        "echomimic_v1_audio_selected_landmarks.json", "echomimic_v1_audio_upscaled.json",
    }


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.stem)
def test_workflow_matches_the_node_definitions(path: Path, object_info: dict[str, dict[str, Any]]) -> None:
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert workflow.get("version") == 0.4 and isinstance(workflow["nodes"], list)
    assert validate_workflow(workflow, object_info) == []


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.stem)
def test_workflow_saves_an_mp4_with_the_trimmed_sound(path: Path, object_info: dict[str, dict[str, Any]]) -> None:
    workflow = json.loads(path.read_text(encoding="utf-8"))
    prompt = ui_to_api(workflow, object_info)
    types = {node_id: node["class_type"] for node_id, node in prompt.items()}
    assert set(types.values()) <= set(object_info)
    saves = [node for node in prompt.values() if node["class_type"] == "SaveVideo"]
    assert len(saves) == 1 and saves[0]["inputs"]["format"] in ("auto", "mp4")
    video = prompt[saves[0]["inputs"]["video"][0]]
    assert video["class_type"] == "CreateVideo"
    audio_source, audio_slot = video["inputs"]["audio"]
    assert (types[audio_source], audio_slot) == ("EchoMimicAudioFeatures", 2), "mux the trimmed audio"
    fps_source, fps_slot = video["inputs"]["fps"]
    assert (types[fps_source], fps_slot) == ("EchoMimicSampler", 1), "use the sampler's fps"
    samplers = [node for node in prompt.values() if node["class_type"] == "EchoMimicSampler"]
    loaders = [node for node in prompt.values() if node["class_type"] == "EchoMimicModelLoader"]
    assert len(samplers) == len(loaders) == 1
    variant = loaders[0]["inputs"]["variant"]
    uses_landmarks = "landmark_images" in samplers[0]["inputs"]
    assert uses_landmarks == variant.startswith("V1 landmarks")
    if variant.endswith("accelerated"):
        assert (samplers[0]["inputs"]["steps"], samplers[0]["inputs"]["cfg"]) in ((0, 0.0), (6, 1.0))


def test_validator_catches_broken_workflows(object_info: dict[str, dict[str, Any]]) -> None:
    """The validator itself must fail on each kind of mistake it is meant to catch."""
    original = json.loads((WORKFLOWS_DIR / "echomimic_v1_audio.json").read_text(encoding="utf-8"))

    def problems_after(change) -> list[str]:
        workflow = json.loads(json.dumps(original))
        change(workflow)
        return validate_workflow(workflow, object_info)

    def node(workflow: dict[str, Any], node_type: str) -> dict[str, Any]:
        return next(n for n in workflow["nodes"] if n["type"] == node_type)

    assert problems_after(lambda w: None) == []
    assert problems_after(lambda w: node(w, "EchoMimicModelLoader")["widgets_values"].__setitem__(0, "V1 Audio"))
    assert problems_after(lambda w: node(w, "EchoMimicSampler")["widgets_values"].pop())
    assert problems_after(lambda w: node(w, "EchoMimicSampler")["widgets_values"].__setitem__(3, 1000))
    assert problems_after(lambda w: node(w, "EchoMimicSampler")["widgets_values"].__setitem__(6, "sometimes"))
    assert problems_after(lambda w: node(w, "EchoMimicFaceMaskCrop")["widgets_values"].__setitem__(0, "yes"))
    assert problems_after(lambda w: node(w, "SaveVideo")["widgets_values"].__setitem__(1, "webm"))
    assert problems_after(lambda w: node(w, "EchoMimicSampler").__setitem__("type", "EchoMimicSamplerV2"))
    # A link whose type does not match the socket it enters (MASK into reference_image).
    def swap_reference_for_mask(w: dict[str, Any]) -> None:
        sampler = node(w, "EchoMimicSampler")
        reference_link = next(e["link"] for e in sampler["inputs"] if e["name"] == "reference_image")
        row = next(r for r in w["links"] if r[0] == reference_link)
        row[2], row[5] = 1, "MASK"
    assert problems_after(swap_reference_for_mask)
    # A required socket left unconnected.
    def unplug_vae(w: dict[str, Any]) -> None:
        entry = next(e for e in node(w, "EchoMimicSampler")["inputs"] if e["name"] == "vae")
        w["links"] = [r for r in w["links"] if r[0] != entry["link"]]
        entry["link"] = None
    assert any("required input vae" in p for p in problems_after(unplug_vae))
