"""One voice in the node texts: what ComfyUI's /object_info shows (descriptions, input and output tooltips)
and the errors a node raises speak of V1/V2 and of node things (models/echomimic folders, combo labels),
never of one release only where a node serves both, nor of the command line's flags and folders.

The extension is loaded with the ComfyUI stand-ins (tests/comfy_stubs), as ComfyUI loads it.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

from tests.comfy_stubs import REPO_ROOT, build_tiny_weights, extension_submodule, install_stub_modules, load_extension

# Command-line words that must not reach a ComfyUI user: flags, the CLI's default folders, its commands.
CLI_WORDS = re.compile(r"(?<![\w-])--\w|pretrained_weights|python -m echomimic")
V1_ONLY_WORDS = re.compile(r"\bV1\b|talking[- ]head", re.IGNORECASE)
TALKING_HEAD = re.compile(r"talking[- ]head", re.IGNORECASE)
V1_TALKING_HEAD = re.compile(r"\bV1\b[^;.]{0,20}talking[- ]head", re.IGNORECASE)  # said of V1 in the clause


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Any:
    models_dir = tmp_path_factory.mktemp("comfy_models")
    build_tiny_weights(models_dir)
    install_stub_modules(models_dir)
    return load_extension()


def node_texts(node_class: type) -> dict[str, str]:
    """The texts /object_info gives for a node: description, every input's tooltip, every output's tooltip."""
    texts = {"description": getattr(node_class, "DESCRIPTION", "")}
    for section, entries in node_class.INPUT_TYPES().items():
        for name, spec in entries.items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            texts[f"{section} input {name}"] = options.get("tooltip", "")
    for index, text in enumerate(getattr(node_class, "OUTPUT_TOOLTIPS", ())):
        texts[f"output {index}"] = text
    return texts


def serves_v2(node_class: type, common: Any) -> bool:
    """Every node outside the V1-only categories (V1 landmarks, compose: the face crop and paste back) and
    outside V3 (its own nodes; "Wan2.1-Fun-V1.1" in their texts is a file name)."""
    return node_class.CATEGORY not in (
        common.LANDMARKS_CATEGORY,
        common.COMPOSE_CATEGORY,
    ) and not node_class.__name__.startswith("EchoMimicV3")


def test_nodes_that_serve_v2_do_not_speak_of_v1_only(extension: Any) -> None:
    """Catches a text left from V1 in a node V2 uses too (e.g. the loader's "Which EchoMimic V1 weights" over a
    list with V2 variants, a sampler "talking-head video"): a text naming V1 must name V2 as well."""
    common = extension_submodule("nodes.common")
    problems = []
    for node_id, node_class in extension.NODE_CLASS_MAPPINGS.items():
        if not serves_v2(node_class, common):
            continue
        for where, text in node_texts(node_class).items():
            if V1_ONLY_WORDS.search(text) and "V2" not in text:
                problems.append(f"{node_id} {where}: {text!r}")
            elif TALKING_HEAD.search(text) and not V1_TALKING_HEAD.search(text):  # V2 is not a talking head
                problems.append(f"{node_id} {where}: {text!r}")
    assert problems == []
    assert sum(serves_v2(cls, common) for cls in extension.NODE_CLASS_MAPPINGS.values()) >= 10


def test_no_node_text_names_command_line_flags(extension: Any) -> None:
    """Catches CLI words (--weights, pretrained_weights_v2, python -m echomimic ...) in what the page shows."""
    problems = [
        f"{node_id} {where}: {text!r}"
        for node_id, node_class in extension.NODE_CLASS_MAPPINGS.items()
        for where, text in node_texts(node_class).items()
        if CLI_WORDS.search(text)
    ]
    assert problems == []


def _node_error_strings() -> list[tuple[str, str]]:
    """(file:line, text) of every string literal (f-string parts included) given to EchoMimicNodeError in
    nodes/*.py, and of the nodes.common constants those messages use (upper-case names)."""
    found: list[tuple[str, str]] = []
    for path in sorted((REPO_ROOT / "nodes").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "EchoMimicNodeError":
                for part in ast.walk(node):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        found.append((f"{path.name}:{part.lineno}", part.value))
                    elif isinstance(part, ast.Name) and part.id.isupper():
                        found.append((f"{path.name}:{part.lineno}", str(getattr(_common(), part.id, ""))))
    return found


def _common() -> Any:
    return extension_submodule("nodes.common")


def test_node_error_messages_speak_node_words(extension: Any) -> None:
    """Catches a node error that tells a ComfyUI user to pass a CLI flag or use the CLI's folder."""
    strings = _node_error_strings()
    assert len(strings) >= 20  # the walk found the messages (a rename of the error class would empty it)
    assert [item for item in strings if CLI_WORDS.search(item[1])] == []


def test_reached_library_errors_use_the_node_words(extension: Any) -> None:
    """Library errors the loader relays: a V2 variant on the V1 folder names the variant by its combo label and
    suggests the EchoMimicV2 folder, not the CLI's id (v2_acc) and folder (pretrained_weights_v2); missing
    files name the label and the folders of models/echomimic."""
    common = _common()
    loader = extension.NODE_CLASS_MAPPINGS["EchoMimicModelLoader"]()
    release = extension_submodule("echomimic.release")
    label = release.VARIANTS["v2_acc"].label
    with pytest.raises(common.EchoMimicNodeError) as caught:
        loader.load(label, "fp32", "tiny_audio", download_missing=False)
    message = str(caught.value)
    assert f"'{label}' is a V2 variant" in message and common.DEFAULT_V2_WEIGHTS_FOLDER in message
    assert not CLI_WORDS.search(message) and "v2_acc" not in message
    with pytest.raises(common.EchoMimicNodeError) as caught:
        loader.load("V1 audio", "fp32", "EchoMimic", download_missing=False)
    message = str(caught.value)
    assert "V1 audio weights are missing" in message and "models/echomimic/EchoMimic" in message
    assert not CLI_WORDS.search(message)


def test_the_cli_words_pattern_catches_what_it_should() -> None:
    """Catches a pattern that would pass everything (the tests above would then prove nothing)."""
    for text in ("pass --weights <folder>", "(for example pretrained_weights_v2)", "python -m echomimic download"):
        assert CLI_WORDS.search(text)
    for text in ("frames 1-2 -- fine", "V1 a face; V2 a half-body", "x--y"):
        assert not CLI_WORDS.search(text)
