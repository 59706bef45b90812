"""ComfyUI's two workflow formats, as far as the tests need them.

UI format (what users save and drag into the editor): nodes with positional `widgets_values`, and
`links` rows [id, origin node, origin slot, target node, target slot, type]. The widget values follow
the node's inputs in definition order (required, then optional), skipping socket-only types, plus
extra values the editor adds: a "control after generate" value after an INT with
control_after_generate (or named seed / noise_seed), and the upload widgets of file loaders.

API format (what POST /prompt takes): {node id: {"class_type", "inputs": {name: value | [node id, slot]}}}.

Node definitions come in the shape of ComfyUI's GET /object_info entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
# Extra editor-only widget values added after a file combo with these flags.
UPLOAD_WIDGETS = {"image_upload": 1, "video_upload": 1, "audio_upload": 2}
# Nodes that exist only in the editor and never reach the server.
UI_ONLY_NODE_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
FILE_COMBO = "__files__"  # marker in recorded core definitions: options are files on the user's disk


@dataclass
class InputSpec:
    name: str
    type: str  # INT, FLOAT, STRING, BOOLEAN, COMBO or a socket type (IMAGE, AUDIO, ...)
    optional: bool
    options: dict[str, Any] = field(default_factory=dict)
    choices: list[Any] | None = None  # COMBO values; None = any file name

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES

    @property
    def has_control_widget(self) -> bool:
        return self.type == "INT" and (
            bool(self.options.get("control_after_generate")) or self.name in ("seed", "noise_seed")
        )

    @property
    def extra_widget_count(self) -> int:
        extra = 1 if self.has_control_widget else 0
        return extra + sum(count for flag, count in UPLOAD_WIDGETS.items() if self.options.get(flag))


def node_inputs(info: dict[str, Any]) -> list[InputSpec]:
    """The inputs of an /object_info entry in the editor's order."""
    specs = []
    for section in ("required", "optional"):
        entries = info["input"].get(section, {})
        order = info.get("input_order", {}).get(section, list(entries))
        for name in order:
            raw = entries[name]
            kind, options = raw[0], (raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {})
            if isinstance(kind, (list, tuple)):
                specs.append(InputSpec(name, "COMBO", section == "optional", options, list(kind)))
            elif kind == "COMBO":
                choices = options.get("options")
                specs.append(
                    InputSpec(
                        name,
                        "COMBO",
                        section == "optional",
                        options,
                        None if choices == FILE_COMBO else list(choices or []),
                    )
                )
            elif kind == FILE_COMBO:
                specs.append(InputSpec(name, "COMBO", section == "optional", options, None))
            else:
                specs.append(InputSpec(name, kind, section == "optional", options))
    return specs


def object_info_of(node_class: type) -> dict[str, Any]:
    """An /object_info entry for a classic (NODE_CLASS_MAPPINGS) node, as ComfyUI's server builds it.

    A combo input named in the node's VALIDATE_INPUTS arguments is checked by that function instead of
    against its options (ComfyUI's execution.validate_inputs): marked as a file combo here (any value).
    """
    inputs = node_class.INPUT_TYPES()
    validate = getattr(node_class, "VALIDATE_INPUTS", None)
    if validate is not None:
        import inspect

        checked = set(inspect.signature(validate).parameters)
        inputs = {
            section: {
                name: ([FILE_COMBO, *spec[1:]] if name in checked and isinstance(spec[0], (list, tuple)) else spec)
                for name, spec in entries.items()
            }
            for section, entries in inputs.items()
        }
    return {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "output": list(node_class.RETURN_TYPES),
        "output_name": list(getattr(node_class, "RETURN_NAMES", node_class.RETURN_TYPES)),
        "output_node": bool(getattr(node_class, "OUTPUT_NODE", False)),
    }


def widget_slots(info: dict[str, Any]) -> list[tuple[InputSpec | None, str]]:
    """One entry per widgets_values position: (input, "value") or (input, "control"/"upload")."""
    slots: list[tuple[InputSpec | None, str]] = []
    for spec in node_inputs(info):
        if not spec.is_widget:
            continue
        slots.append((spec, "value"))
        if spec.has_control_widget:
            slots.append((spec, "control"))
        for flag, count in UPLOAD_WIDGETS.items():
            if spec.options.get(flag):
                slots.extend((spec, "upload") for _ in range(count))
    return slots


def check_widget_value(spec: InputSpec, value: Any) -> str | None:
    """Why `value` does not fit `spec`, or None when it fits."""
    if spec.type == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{spec.name}: {value!r} is not an integer"
    elif spec.type == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{spec.name}: {value!r} is not a number"
    elif spec.type == "BOOLEAN":
        if not isinstance(value, bool):
            return f"{spec.name}: {value!r} is not a boolean"
    elif spec.type == "STRING":
        if not isinstance(value, str):
            return f"{spec.name}: {value!r} is not a string"
    elif spec.type == "COMBO":
        if spec.choices is None:
            if not isinstance(value, str) or not value:
                return f"{spec.name}: {value!r} is not a file name"
        elif value not in spec.choices:
            return f"{spec.name}: {value!r} is not one of {spec.choices}"
    if spec.type in ("INT", "FLOAT"):
        low, high = spec.options.get("min"), spec.options.get("max")
        if low is not None and value < low or high is not None and value > high:
            return f"{spec.name}: {value} is outside [{low}, {high}]"
    return None


def ui_to_api(workflow: dict[str, Any], object_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Convert a UI-format workflow to the API format (what the editor's "queue" sends)."""
    links = {row[0]: row for row in workflow["links"]}
    prompt: dict[str, Any] = {}
    for node in workflow["nodes"]:
        if node["type"] in UI_ONLY_NODE_TYPES or node.get("mode", 0) in (2, 4):  # muted / bypassed
            continue
        info = object_info[node["type"]]
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        for (spec, role), value in zip(widget_slots(info), values):
            if role == "value" and spec is not None:
                inputs[spec.name] = value
        for entry in node.get("inputs", []):
            link_id = entry.get("link")
            if link_id is not None:
                row = links[link_id]
                inputs[entry["name"]] = [str(row[1]), row[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
