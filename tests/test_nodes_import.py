"""Importing the extension is cheap and safe: no folders, no downloads, no heavy libraries, and one broken
node group never hides the others. Each check runs in a fresh interpreter, as ComfyUI's start-up would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.comfy_stubs import REPO_ROOT, STUB_MODULES_DIR

HEAVY_MODULES = ("mediapipe", "diffusers", "transformers", "cv2", "av", "skimage", "scipy", "huggingface_hub")
EXPECTED_NODE_IDS = {
    "EchoMimicModelLoader",
    "EchoMimicAudioEncoderLoader",
    "EchoMimicAudioFeatures",
    "EchoMimicFaceMaskCrop",
    "EchoMimicExtractLandmarks",
    "EchoMimicAlignLandmarks",
    "EchoMimicSelectLandmarkParts",
    "EchoMimicDrawLandmarks",
    "EchoMimicSampler",
    "EchoMimicExtractHandPoses",
    "EchoMimicAlignHandPoses",
    "EchoMimicDrawHandPoses",
    "EchoMimicImportOfficialPoses",
    "EchoMimicPasteBack",
    "EchoMimicSaveLandmarks",
    "EchoMimicLoadLandmarks",
    "EchoMimicSaveHandPoses",
    "EchoMimicLoadHandPoses",
    "EchoMimicV3ModelLoader",
    "EchoMimicV3AudioEncoderLoader",
    "EchoMimicV3AudioFeatures",
    "EchoMimicV3Sampler",
    "EchoMimicV3TextEncode",
    "EchoMimicV3ClipVisionEncode",
    "EchoMimicV3VAELoader",
    "EchoMimicV3WanFiles",
}


def _run_import(tmp_path: Path, prelude: str = "") -> dict:
    """Import the extension like ComfyUI's load_custom_node in a new interpreter; report what happened."""
    script = textwrap.dedent(f"""
        import importlib.util, json, os, sys
        sys.path.insert(0, {str(STUB_MODULES_DIR)!r})
        {prelude}
        before = set(sys.modules)
        spec = importlib.util.spec_from_file_location("ComfyUI-EchoMimic", os.path.join({str(REPO_ROOT)!r}, "__init__.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        import folder_paths
        print(json.dumps({{
            "nodes": sorted(module.NODE_CLASS_MAPPINGS),
            "display": module.NODE_DISPLAY_NAME_MAPPINGS,
            "failed": module.FAILED_NODE_GROUPS,
            "new_modules": sorted(set(sys.modules) - before),
            "echomimic_paths": folder_paths.get_folder_paths("echomimic"),
        }}))
    """)
    env = {**os.environ, "ECHOMIMIC_TEST_COMFY_BASE": str(tmp_path / "comfy")}
    env.pop("ECHOMIMIC_TEST_MODELS_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_registers_every_node_without_side_effects(tmp_path: Path) -> None:
    report = _run_import(tmp_path)
    assert set(report["nodes"]) == EXPECTED_NODE_IDS
    assert report["failed"] == {}
    assert set(report["display"]) == EXPECTED_NODE_IDS
    assert all(" " in name and "EchoMimic" in name for name in report["display"].values()), report["display"]
    heavy = [name for name in report["new_modules"] if name.split(".")[0] in HEAVY_MODULES]
    assert heavy == [], f"importing the extension loaded heavy modules: {heavy}"
    # The models folder is registered (so extra_model_paths.yaml can move it) but never created.
    expected = str(tmp_path / "comfy" / "models" / "echomimic")
    assert report["echomimic_paths"] == [expected]
    assert not (tmp_path / "comfy").exists(), "importing the extension created folders"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "importing the extension wrote files"


def test_extra_model_paths_entry_keeps_priority(tmp_path: Path) -> None:
    # extra_model_paths.yaml is applied before custom nodes load; its folder must stay first.
    prelude = "import folder_paths; folder_paths.add_model_folder_path('echomimic', '/data/echomimic')"
    report = _run_import(tmp_path, prelude)
    assert report["echomimic_paths"][0] == "/data/echomimic"
    assert report["echomimic_paths"][1].endswith(os.path.join("models", "echomimic"))


def test_a_broken_node_group_does_not_hide_the_others(tmp_path: Path) -> None:
    # Make the landmark library unimportable, as a broken mediapipe/cv2 install would.
    prelude = textwrap.dedent("""
        import importlib.abc
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.endswith("nodes.landmark_nodes"):
                    raise ImportError("simulated broken landmark stack")
                return None
        sys.meta_path.insert(0, _Block())
    """).replace("\n", "\n        ")
    report = _run_import(tmp_path, prelude)
    assert "landmark_nodes" in report["failed"]
    assert "simulated broken landmark stack" in report["failed"]["landmark_nodes"]
    landmark_ids = {
        "EchoMimicExtractLandmarks",
        "EchoMimicAlignLandmarks",
        "EchoMimicSelectLandmarkParts",
        "EchoMimicDrawLandmarks",
    }
    assert set(report["nodes"]) == EXPECTED_NODE_IDS - landmark_ids


# The menu a user browses (ids never change with it).
NODE_CATEGORIES = (
    "EchoMimic",
    "EchoMimic/loaders",
    "EchoMimic/V1 landmarks",
    "EchoMimic/V2 hands",
    "EchoMimic/compose",
    "EchoMimic/V3 flash",
)


def test_nodes_sit_in_subcategories_and_errors_have_a_clean_name() -> None:
    """Catches all nodes in one flat category, hand-pose nodes outside V2, or ComfyUI's error dialog naming the
    error by a temporary-looking module path."""
    sys.path.insert(0, str(STUB_MODULES_DIR))
    from tests.comfy_stubs import load_extension

    extension = load_extension()
    categories = {node_id: cls.CATEGORY for node_id, cls in extension.NODE_CLASS_MAPPINGS.items()}
    assert categories["EchoMimicModelLoader"] == "EchoMimic/loaders" and categories["EchoMimicSampler"] == "EchoMimic"
    assert categories["EchoMimicLoadHandPoses"] == categories["EchoMimicDrawHandPoses"] == "EchoMimic/V2 hands"
    assert categories["EchoMimicLoadLandmarks"] == categories["EchoMimicDrawLandmarks"] == "EchoMimic/V1 landmarks"
    assert categories["EchoMimicPasteBack"] == "EchoMimic/compose"
    hand_names = [name for node_id, name in extension.NODE_DISPLAY_NAME_MAPPINGS.items() if "HandPoses" in node_id]
    assert hand_names and all(name.endswith("(V2)") for name in hand_names), hand_names
    from tests.comfy_stubs import extension_submodule

    error = extension_submodule("nodes.common").EchoMimicNodeError
    assert f"{error.__module__}.{error.__qualname__}" == "EchoMimic.EchoMimicNodeError"


def test_node_definitions_are_complete() -> None:
    """Every node: category, function, outputs, and a tooltip on every input."""
    sys.path.insert(0, str(STUB_MODULES_DIR))
    from tests.comfy_stubs import load_extension

    extension = load_extension()
    for node_id, node_class in extension.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("EchoMimic")
        assert node_class.CATEGORY in NODE_CATEGORIES, (node_id, node_class.CATEGORY)
        assert callable(getattr(node_class, node_class.FUNCTION))
        assert len(node_class.RETURN_TYPES) == len(node_class.RETURN_NAMES) == len(node_class.OUTPUT_TOOLTIPS)
        inputs = node_class.INPUT_TYPES()
        for section in inputs.values():
            for name, spec in section.items():
                assert len(spec) == 2 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert node_class.DESCRIPTION


def test_stable_combo_values() -> None:
    """Combo values are saved in shared workflows: these exact strings must stay."""
    sys.path.insert(0, str(STUB_MODULES_DIR))
    from tests.comfy_stubs import load_extension

    nodes = load_extension().NODE_CLASS_MAPPINGS
    loader = nodes["EchoMimicModelLoader"].INPUT_TYPES()["required"]
    assert loader["variant"][0][:4] == ["V1 audio", "V1 audio accelerated", "V1 landmarks", "V1 landmarks accelerated"]
    assert loader["variant"][0][4:] == ["V2 semi-body", "V2 semi-body accelerated"]  # appended, never reordered
    assert loader["precision"][0] == ["auto", "fp16", "bf16", "fp32"]
    assert "EchoMimic" in loader["weights_folder"][0]
    select = nodes["EchoMimicSelectLandmarkParts"].INPUT_TYPES()["required"]
    assert [name for name in select if name != "landmarks"] == ["eyebrows", "eyes", "pupils", "nose", "mouth"]
    from echomimic.landmarks import PART_NAMES

    assert tuple(name for name in select if name != "landmarks") == PART_NAMES


LOAD_FROM_CUSTOM_NODES = r"""
import importlib, importlib.util, json, os, sys
stubs, custom_nodes = sys.argv[1:3]
sys.path.insert(0, stubs)
path_before = list(sys.path)
# ComfyUI's load_custom_node: the folder becomes a package named after it, loaded from its __init__.py.
module_path = os.path.join(custom_nodes, "ComfyUI-EchoMimic")
spec = importlib.util.spec_from_file_location("ComfyUI-EchoMimic", os.path.join(module_path, "__init__.py"))
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
# Run one lazy library import inside a node module, as a node's function does on first use.
common = importlib.import_module("ComfyUI-EchoMimic.nodes.common")
importlib.import_module("ComfyUI-EchoMimic.echomimic.errors")
top_level = {}
for name in ("echomimic", "nodes", "tests", "benchmarks"):
    try:
        importlib.import_module(name)
        top_level[name] = True
    except ModuleNotFoundError:
        top_level[name] = False
print(json.dumps({"path_unchanged": sys.path == path_before, "nodes": len(module.NODE_CLASS_MAPPINGS),
                  "failed": module.FAILED_NODE_GROUPS, "importable": top_level,
                  "errors_from": common.EchoMimicError.__module__}))
"""


def test_loading_from_custom_nodes_leaves_sys_path_unchanged(tmp_path: Path) -> None:
    """Catches the extension putting its folder on sys.path (which exposed this repository's `tests`,
    `nodes` and `echomimic` to every other extension) and node modules importing the library by its
    absolute name (which only worked because of that sys.path entry)."""
    custom_nodes = tmp_path / "custom_nodes"
    custom_nodes.mkdir()
    (custom_nodes / "ComfyUI-EchoMimic").symlink_to(REPO_ROOT, target_is_directory=True)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {**os.environ, "ECHOMIMIC_TEST_COMFY_BASE": str(tmp_path / "comfy")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_FROM_CUSTOM_NODES, str(STUB_MODULES_DIR), str(custom_nodes)],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["path_unchanged"], "loading the extension changed sys.path"
    assert report["failed"] == {} and report["nodes"] >= len(EXPECTED_NODE_IDS)
    assert report["importable"] == {"echomimic": False, "nodes": False, "tests": False, "benchmarks": False}
    assert report["errors_from"] == "ComfyUI-EchoMimic.echomimic.errors"


def test_node_modules_import_the_library_relative_to_the_extension() -> None:
    """Catches a node module (also one added later, and imports inside functions that run only on first
    use) importing `echomimic` by its absolute name: inside ComfyUI that name is not importable."""
    import ast

    offenders = []
    for path in sorted((REPO_ROOT / "nodes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").split(".")[0] in ("echomimic", "nodes", "tests")
            ):
                offenders.append(f"{path.name}:{node.lineno} from {node.module}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.name}:{node.lineno} import {alias.name}"
                    for alias in node.names
                    if alias.name.split(".")[0] in ("echomimic", "nodes", "tests")
                ]
    assert offenders == [], f"use `from ..echomimic...` (relative) in nodes/: {offenders}"
