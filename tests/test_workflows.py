"""Every workflow in workflows/ loads in a fresh ComfyUI with this extension, in every ComfyUI version we have
a snapshot of: each node type exists, every link joins matching types, and every widget value fits its
input (count, type, range, combo values). And it looks right when the page opens it: no node overlaps
another, no title is cut off, no node or reroute hides under the page's panels (as measured per frontend in
tests/comfyui_layout), the saved view shows the graph's left part, and no link runs behind another node.

Our nodes are read from their INPUT_TYPES. ComfyUI core nodes come from tests/comfyui_object_info/<version>.json,
generated from each real server's GET /object_info by scripts/dump_object_info.py, one record per snapshot
in ../shared/comfyui (a new snapshot without a record fails with the command that makes it). File combos
(the user's own files) accept any file name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_stubs import REPO_ROOT, install_stub_modules, load_extension
from tests.comfy_stubs.workflow_format import (
    CONTROL_VALUES,
    UI_ONLY_NODE_TYPES,
    check_widget_value,
    node_inputs,
    object_info_of,
    ui_to_api,
    widget_slots,
)
from tests.parity_cases import COMFYUI_SNAPSHOTS

WORKFLOWS_DIR = REPO_ROOT / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.json"))
RECORDS_DIR = REPO_ROOT / "tests" / "comfyui_object_info"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def snapshot_versions() -> list[str]:
    """ComfyUI versions of the snapshots in ../shared/comfyui (ComfyUI-<version>-<commit>.tar.gz), oldest first."""
    names = [path.name for path in COMFYUI_SNAPSHOTS.glob("ComfyUI-*.tar.gz")]
    versions = {match.group(1) for name in names if (match := re.match(r"ComfyUI-(\d[\d.]*)-", name))}
    return sorted(versions, key=_version_key)


def recorded_versions() -> list[str]:
    return sorted((path.stem for path in RECORDS_DIR.glob("*.json")), key=_version_key)


VERSIONS = sorted(set(snapshot_versions()) | set(recorded_versions()), key=_version_key)


def core_nodes(version: str) -> dict[str, dict[str, Any]]:
    """The recorded /object_info of ComfyUI `version` (core nodes only)."""
    path = RECORDS_DIR / f"{version}.json"
    if not path.is_file():
        pytest.fail(
            f"no record of ComfyUI {version}'s core nodes ({path}). Make it with: "
            f"scripts/setup_comfyui.sh DEST (or unpack the snapshot and use any ComfyUI venv), then "
            f"python scripts/dump_object_info.py --comfyui-dir DEST/ComfyUI --python DEST/venv/bin/python"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    record.pop("_record", None)
    return record


@pytest.fixture(scope="module")
def our_nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    install_stub_modules(tmp_path_factory.mktemp("models"))
    extension = load_extension()
    return {
        node_id: {**object_info_of(cls), "display_name": extension.NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id)}
        for node_id, cls in extension.NODE_CLASS_MAPPINGS.items()
    }


@pytest.fixture(scope="module", params=VERSIONS)
def object_info(request: pytest.FixtureRequest, our_nodes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Core nodes of one ComfyUI version plus ours, as that version's server would list them."""
    core = core_nodes(request.param)
    assert not set(our_nodes) & set(core)
    return {**core, **our_nodes}


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
                problems.append(
                    f"{where}: link {link_id} uses output {origin_slot} of {origin['type']}, which has "
                    f"{len(origin_info['output'])}"
                )
                continue
            output_type = origin_info["output"][origin_slot]
            if not (output_type == link_type == spec.type):
                problems.append(
                    f"{where}: {origin['type']} output {origin_slot} ({output_type}) -> {spec.name} "
                    f"({spec.type}) via a {link_type} link"
                )
            if link_id not in (origin["outputs"][origin_slot].get("links") or []):
                problems.append(f"{where}: link {link_id} missing from {origin['type']}'s output list")
        for spec in specs.values():
            if not spec.optional and not spec.is_widget and spec.name not in connected:
                problems.append(f"{where}: required input {spec.name} is not connected")
        # Output sockets as the node defines them; a workflow saved before an output was appended (the
        # sampler's audio) lists a prefix of them, which the frontend extends on load.
        declared = [(out["name"], out["type"]) for out in node.get("outputs", [])]
        expected = list(zip(info["output_name"], info["output"]))
        if declared != expected[: max(len(declared), 1)]:
            problems.append(f"{where}: outputs {declared} differ from the node's {expected}")
    for row in workflow["links"]:
        if row[1] not in nodes or row[3] not in nodes:
            problems.append(f"link {row[0]} joins missing nodes")
    return problems


def test_there_is_a_workflow_for_every_mode() -> None:
    """Catches a shipped V1 workflow going missing (V2 and other workflows are added beside them)."""
    names = {path.name for path in WORKFLOW_FILES}
    assert names >= {
        "EchoMimic V1 audio.json",
        "EchoMimic V1 audio, accelerated.json",
        "EchoMimic V1 landmarks from a video.json",
        "EchoMimic V1 landmarks, eyes from a video.json",
        "EchoMimic V1 audio, upscaled.json",
        "EchoMimic V1 audio, pasted into the full picture.json",
        "EchoMimic V3 flash.json",
        "EchoMimic V3 flash, speech from a video.json",
        "EchoMimic V3 flash, long speech, official files.json",
    }


def test_every_workflow_is_a_template_with_a_title_and_a_thumbnail() -> None:
    """ComfyUI's template browser (frontend 1.32.9) shows a custom node's workflows by file name, with
    `<name>.jpg` beside each as the thumbnail on a square card. Catches a workflow without its thumbnail (a
    placeholder in the browser), a thumbnail that is not a square JPEG, a stray thumbnail of a renamed
    workflow, and a title (the file name) that does not say which release it runs (EchoMimic V1 / V2 / V3, as its
    loader) or has a character Windows refuses in file names."""
    from PIL import Image

    assert len(WORKFLOW_FILES) >= 9
    for path in WORKFLOW_FILES:
        thumbnail = path.with_suffix(".jpg")
        assert thumbnail.is_file(), f"{path.name}: no thumbnail; make it with scripts/screenshot_comfyui.py --templates"
        with Image.open(thumbnail) as picture:
            assert picture.format == "JPEG" and picture.width == picture.height >= 256, thumbnail.name
        workflow = json.loads(path.read_text(encoding="utf-8"))
        releases = {
            node["widgets_values"][0].split()[0] for node in workflow["nodes"] if node["type"] == "EchoMimicModelLoader"
        }
        releases |= {"V3" for node in workflow["nodes"] if node["type"] == "EchoMimicV3ModelLoader"}
        assert len(releases) == 1 and path.stem.startswith(f"EchoMimic {releases.pop()} "), path.name
        assert not set(path.stem) & set('<>:"/\\|?*'), path.name
    assert {path.stem for path in WORKFLOWS_DIR.glob("*.jpg")} == {path.stem for path in WORKFLOW_FILES}


def test_every_comfyui_snapshot_has_a_record() -> None:
    """Catches a new ComfyUI snapshot in ../shared/comfyui that the validator would not check against."""
    assert snapshot_versions(), f"no ComfyUI-*.tar.gz snapshots in {COMFYUI_SNAPSHOTS}"
    for version in snapshot_versions():
        assert core_nodes(version), version
    for version in VERSIONS:
        record = json.loads((RECORDS_DIR / f"{version}.json").read_text(encoding="utf-8"))
        assert record["_record"]["comfyui_version"] == version
        assert {"LoadImage", "VAELoader", "SaveVideo", "CreateVideo"} <= set(record)


# Layout as the ComfyUI page draws a workflow (LiteGraph units at scale 1). ---------------------------------
TITLE_HEIGHT = 30  # title bar, drawn above a node's pos
SLOT_HEIGHT = 20  # one input/output socket row
WIDGET_HEIGHT = 24  # one widget row (20 px + 4 px spacing)
TITLE_CHAR_WIDTH = 8.4  # 14 px title font, LiteGraph's 0.6 em per character estimate
TITLE_PADDING = 40  # the collapse dot on the left, room for a badge on the right
BADGE_HEIGHT = 20  # the node-source badge ("EchoMimic") the page draws above a custom node's title bar
REROUTE_RADIUS = 10  # graph px: a native reroute's dot
LEFT_VIEW_MAX = 400  # canvas px: the leftmost node starts within this, so the graph's left part is in view
# Where each frontend's own panels cover the page, as measured in the real page (getBoundingClientRect) by
# `python scripts/screenshot_comfyui.py --measure-layout`, one record per frontend version: the canvas, the
# workflow tabs, the "Nodes 2.0" banner (a first visit shows it), the sidebar, the workflow breadcrumb (its
# widest, over the shipped workflows' names) and the Run toolbar, at the record's viewport.
LAYOUTS_DIR = REPO_ROOT / "tests" / "comfyui_layout"
PANEL_NAMES = {
    "tabs": "the workflow tabs",
    "banner": "the Nodes 2.0 banner",
    "sidebar": "the sidebar",
    "breadcrumb": "the workflow breadcrumb",
    "run_toolbar": "the Run toolbar",
}


def frontend_layouts() -> list[dict[str, Any]]:
    """The measured page layouts (tests/comfyui_layout/<frontend version>.json), oldest frontend first."""
    paths = sorted(LAYOUTS_DIR.glob("*.json"), key=lambda path: _version_key(path.stem))
    return [json.loads(path.read_text(encoding="utf-8")) for path in paths]


def _size(node: dict[str, Any]) -> tuple[float, float]:
    size = node["size"]
    return (size["0"], size["1"]) if isinstance(size, dict) else (size[0], size[1])


def _pos(node: dict[str, Any]) -> tuple[float, float]:
    pos = node["pos"]
    return (pos["0"], pos["1"]) if isinstance(pos, dict) else (pos[0], pos[1])


def node_title(node: dict[str, Any], object_info: dict[str, dict[str, Any]]) -> str:
    info = object_info.get(node["type"], {})
    return node.get("title") or info.get("display_name") or node["type"]


def min_body_height(node: dict[str, Any], object_info: dict[str, dict[str, Any]]) -> float:
    """Socket rows plus widget rows: the least body height that shows every input and widget."""
    info = object_info.get(node["type"])
    if info is None:
        return 0.0
    sockets = [spec for spec in node_inputs(info) if not spec.is_widget]
    widgets = [slot for slot in widget_slots(info) if slot[1] != "upload"]
    return max(len(sockets), len(info["output"])) * SLOT_HEIGHT + len(widgets) * WIDGET_HEIGHT


def node_boxes(
    workflow: dict[str, Any], object_info: dict[str, dict[str, Any]]
) -> dict[int, tuple[float, float, float, float]]:
    """Node id -> (x0, y0, x1, y1) in graph px, title bar included, at least as tall as its widgets need."""
    boxes = {}
    for node in workflow["nodes"]:
        if node["type"] in ("Reroute",):
            continue
        (x, y), (width, height) = _pos(node), _size(node)
        boxes[node["id"]] = (x, y - TITLE_HEIGHT, x + width, y + max(height, min_body_height(node, object_info)))
    return boxes


def _intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def reroute_boxes(workflow: dict[str, Any]) -> dict[int, tuple[float, float, float, float]]:
    """Reroute id -> the box of its dot (graph px) of the native reroutes in extra.reroutes."""
    radius = REROUTE_RADIUS
    return {
        reroute["id"]: (
            reroute["pos"][0] - radius,
            reroute["pos"][1] - radius,
            reroute["pos"][0] + radius,
            reroute["pos"][1] + radius,
        )
        for reroute in (workflow.get("extra") or {}).get("reroutes") or []
    }


def view_problems(
    boxes: dict[int, tuple[float, float, float, float]],
    view: dict[str, Any],
    layout: dict[str, Any],
    badge: bool = True,
) -> list[str]:
    """What the saved view hides or misses on one frontend: node boxes (graph px) under one of the page's
    panels or past the canvas's top / left edge, and a leftmost node beyond LEFT_VIEW_MAX."""
    problems: list[str] = []
    frontend = layout["_record"]["frontend"]
    scale, (offset_x, offset_y) = view["scale"], view["offset"]
    canvas = layout["canvas"]

    def on_page(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = ((value + offset) * scale for value, offset in zip(box, (offset_x, offset_y) * 2))
        return (canvas["x"] + x0, canvas["y"] + y0, canvas["x"] + x1, canvas["y"] + y1)

    for node_id, box in sorted(boxes.items()):
        page = on_page((box[0], box[1] - BADGE_HEIGHT * badge, box[2], box[3]))  # the badge may not hide either
        if page[1] < canvas["y"] or page[0] < canvas["x"]:
            problems.append(
                f"frontend {frontend}: node {node_id} starts off the canvas (page {page[0]:.0f}, {page[1]:.0f})"
            )
        for name, panel in layout["panels"].items():
            if panel is None:
                continue
            rect = (panel["x"], panel["y"], panel["x"] + panel["width"], panel["y"] + panel["height"])
            if _intersects(page, rect):
                problems.append(
                    f"frontend {frontend}: node {node_id} is under {PANEL_NAMES.get(name, name)} (node at page "
                    f"{page[0]:.0f}..{page[2]:.0f} x {page[1]:.0f}..{page[3]:.0f}, panel {rect[0]:.0f}..{rect[2]:.0f} "
                    f"x {rect[1]:.0f}..{rect[3]:.0f}); move the nodes or set extra.ds.offset"
                )
    if boxes:
        left = (min(box[0] for box in boxes.values()) + offset_x) * scale
        if left > LEFT_VIEW_MAX:
            problems.append(
                f"frontend {frontend}: the saved view does not show the graph's left part (leftmost node at canvas "
                f"x {left:.0f}, wanted at most {LEFT_VIEW_MAX})"
            )
    return problems


SLOT_INSET = 10  # graph px from a node's side to the centre of its sockets


def slot_position(
    node: dict[str, Any], kind: str, index: int, object_info: dict[str, dict[str, Any]]
) -> tuple[float, float]:
    """Graph px of output / input `index` of a node: socket rows under the title, outputs at the right edge,
    inputs at the left; an input that replaces a widget sits on that widget's row, below the socket rows."""
    (x, y), (width, _height) = _pos(node), _size(node)
    if kind == "output":
        return (x + width - SLOT_INSET, y + (index + 0.5) * SLOT_HEIGHT)
    entries = node.get("inputs") or []
    entry = entries[index]
    if entry.get("widget"):
        info = object_info.get(node["type"])
        names = [spec.name for spec, role in widget_slots(info) if spec and role == "value"] if info else []
        sockets = sum(1 for other in entries if not other.get("widget"))
        rows = max(sockets, len(node.get("outputs") or []))
        row = names.index(entry["name"]) if entry["name"] in names else 0
        return (x + SLOT_INSET, y + rows * SLOT_HEIGHT + (row + 0.5) * WIDGET_HEIGHT)
    row = sum(1 for other in entries[:index] if not other.get("widget"))
    return (x + SLOT_INSET, y + (row + 0.5) * SLOT_HEIGHT)


def _segment_crosses_box(
    start: tuple[float, float], end: tuple[float, float], box: tuple[float, float, float, float]
) -> bool:
    """Whether the straight segment start-end passes through the box's inside (Liang-Barsky clipping)."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    low, high = 0.0, 1.0
    for p, q in ((-dx, x0 - box[0]), (dx, box[2] - x0), (-dy, y0 - box[1]), (dy, box[3] - y0)):
        if p == 0:
            if q <= 0:
                return False
            continue
        ratio = q / p
        if p < 0:
            low = max(low, ratio)
        else:
            high = min(high, ratio)
        if low >= high:
            return False
    return True


def link_routes(workflow: dict[str, Any]) -> dict[int, list[tuple[float, float]]]:
    """Link id -> the positions of its native reroutes (extra.reroutes, joined to a link by
    extra.linkExtensions), from the output's end to the input's; [] for a link drawn straight."""
    extra = workflow.get("extra") or {}
    reroutes = {reroute["id"]: reroute for reroute in extra.get("reroutes") or []}
    routes: dict[int, list[tuple[float, float]]] = {}
    for extension in extra.get("linkExtensions") or []:
        points, reroute_id, seen = [], extension["parentId"], set()
        while reroute_id is not None:  # each reroute names the one before it, towards the output
            if reroute_id in seen or reroute_id not in reroutes:
                raise ValueError(f"link {extension['id']}: broken reroute chain at reroute {reroute_id}")
            seen.add(reroute_id)
            points.insert(0, tuple(reroutes[reroute_id]["pos"]))
            reroute_id = reroutes[reroute_id].get("parentId")
        routes[extension["id"]] = points
    return routes


def link_problems(workflow: dict[str, Any], object_info: dict[str, dict[str, Any]]) -> list[str]:
    """Links drawn through a node other than their two ends. A link is taken as straight lines from its
    output socket through its reroutes (if any) to its input socket; the page draws curves that leave and
    enter horizontally, close to those lines between the sockets' columns, so this is an approximation.
    Node boxes include the title bar."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    boxes = node_boxes(workflow, object_info)
    routes = link_routes(workflow)
    problems = []
    for link_id, origin, origin_slot, target, target_slot, _type in workflow["links"]:
        if origin not in nodes or target not in nodes:
            continue
        points = [
            slot_position(nodes[origin], "output", origin_slot, object_info),
            *routes.get(link_id, []),
            slot_position(nodes[target], "input", target_slot, object_info),
        ]
        for node_id, box in sorted(boxes.items()):
            if node_id in (origin, target):
                continue
            if any(_segment_crosses_box(a, b, box) for a, b in zip(points, points[1:])):
                name, behind = nodes[target]["inputs"][target_slot]["name"], nodes[node_id]["type"]
                problems.append(f"link {link_id} ({origin} -> {target}.{name}) runs behind node {node_id} ({behind})")
    return problems


def layout_problems(
    workflow: dict[str, Any], object_info: dict[str, dict[str, Any]], layouts: list[dict[str, Any]] | None = None
) -> list[str]:
    """What looks wrong when the page opens the workflow (its saved view, extra.ds), on every measured frontend
    (``layouts``: default all of tests/comfyui_layout)."""
    problems: list[str] = []
    for node in workflow["nodes"]:
        if node["type"] in ("Reroute",):
            continue
        where = f"node {node['id']} ({node['type']})"
        (width, height), title = _size(node), node_title(node, object_info)
        needed_width = len(title) * TITLE_CHAR_WIDTH + TITLE_PADDING
        if width < needed_width:
            problems.append(f"{where}: width {width} cuts its title {title!r} (needs {needed_width:.0f})")
        needed_height = min_body_height(node, object_info)
        if height < needed_height:
            problems.append(f"{where}: height {height} hides inputs or widgets (needs {needed_height})")
    boxes = node_boxes(workflow, object_info)
    ordered = sorted(boxes.items())
    for index, (first_id, first) in enumerate(ordered):
        for second_id, second in ordered[index + 1 :]:
            if _intersects(first, second):
                problems.append(f"nodes {first_id} and {second_id} overlap (title bars included)")
    view = workflow.get("extra", {}).get("ds")
    if not view:
        problems.append("no saved view (extra.ds): the page would open at its default offset")
    else:
        for layout in frontend_layouts() if layouts is None else layouts:
            problems += view_problems(boxes, view, layout)
            problems += [  # a reroute's dot under a panel cannot be grabbed
                problem.replace("node ", "reroute ", 1)
                for problem in view_problems(reroute_boxes(workflow), view, layout, badge=False)
                if "left part" not in problem
            ]
    return problems


def test_every_comfyui_version_has_a_measured_page_layout() -> None:
    """Catches a ComfyUI snapshot whose frontend's panels were never measured (the layout check would not know
    where they sit), and a layout record without the panels the check needs."""
    layouts = frontend_layouts()
    assert {layout["_record"]["comfyui"] for layout in layouts} >= set(VERSIONS), (
        "measure the new frontend: python scripts/screenshot_comfyui.py --measure-layout"
    )
    for layout in layouts:
        assert layout["panels"]["tabs"] and layout["panels"]["run_toolbar"] and layout["panels"]["breadcrumb"], layout
        assert layout["canvas"]["width"] > 0, layout


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.stem)
def test_workflow_layout_reads_well_in_the_page(path: Path, object_info: dict[str, dict[str, Any]]) -> None:
    """Catches overlapping nodes, titles cut off, nodes too short for their widgets, and, on every measured
    frontend (tests/comfyui_layout), a saved view that puts nodes under the page's panels (tabs, Nodes 2.0
    banner, sidebar, workflow breadcrumb, Run toolbar) or opens away from the graph."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert layout_problems(workflow, object_info) == []


def test_layout_check_catches_bad_layouts(object_info: dict[str, dict[str, Any]]) -> None:
    """The layout check itself fails on each kind of mistake it is meant to catch."""
    original = json.loads((WORKFLOWS_DIR / "EchoMimic V1 audio.json").read_text(encoding="utf-8"))

    def problems_after(change) -> list[str]:
        workflow = json.loads(json.dumps(original))
        change(workflow)
        return layout_problems(workflow, object_info)

    def first_two(w: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return w["nodes"][0], w["nodes"][1]

    def overlap(w: dict[str, Any]) -> None:
        a, b = first_two(w)
        b["pos"] = [_pos(a)[0] + 10, _pos(a)[1] + 10]

    def title_bar_overlap(w: dict[str, Any]) -> None:  # b's title bar sits on a's bottom edge
        a, b = first_two(w)
        b["pos"] = [_pos(a)[0], _pos(a)[1] + max(_size(a)[1], min_body_height(a, object_info)) + 5]

    assert problems_after(lambda w: None) == []
    assert any("overlap" in p for p in problems_after(overlap))
    assert any("overlap" in p for p in problems_after(title_bar_overlap))
    assert any(
        "under the workflow tabs" in p for p in problems_after(lambda w: w["extra"]["ds"].update(offset=[60, 0]))
    )
    assert any("off the canvas" in p for p in problems_after(lambda w: w["extra"]["ds"].update(offset=[-900, 80])))
    assert any("left part" in p for p in problems_after(lambda w: w["extra"]["ds"].update(offset=[900, 300])))
    newest = frontend_layouts()[-1]

    def under(panel_name: str):  # the first node moved so that its title sits on that panel of the newest frontend
        def change(w: dict[str, Any]) -> None:
            panel, canvas, view = newest["panels"][panel_name], newest["canvas"], w["extra"]["ds"]
            x = (panel["x"] + panel["width"] / 2 - canvas["x"]) / view["scale"] - view["offset"][0]
            y = (panel["y"] + panel["height"] / 2 - canvas["y"]) / view["scale"] - view["offset"][1] + TITLE_HEIGHT / 2
            w["nodes"][0]["pos"] = [x - _size(w["nodes"][0])[0] / 2, y]

        return change

    assert any("under the Run toolbar" in p for p in problems_after(under("run_toolbar")))
    assert any("under the workflow breadcrumb" in p for p in problems_after(under("breadcrumb")))
    assert any("no saved view" in p for p in problems_after(lambda w: w["extra"].pop("ds")))
    assert any("cuts its title" in p for p in problems_after(lambda w: w["nodes"][0].__setitem__("size", [60, 400])))
    assert any(
        "hides inputs" in p
        for p in problems_after(
            lambda w: next(n for n in w["nodes"] if n["type"] == "EchoMimicSampler").__setitem__("size", [400, 60])
        )
    )


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.stem)
def test_no_link_runs_behind_a_node(path: Path, object_info: dict[str, dict[str, Any]]) -> None:
    """Catches a link drawn through a node other than its two ends (straight lines from socket through its
    reroutes to socket, an approximation of the page's curves), and reroutes that do not belong to real links:
    `python scripts/fix_workflow_layout.py --route-links` routes such links around the nodes."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert link_problems(workflow, object_info) == []
    links = {row[0] for row in workflow["links"]}
    routes = link_routes(workflow)
    assert set(routes) <= links
    for reroute in (workflow.get("extra") or {}).get("reroutes") or []:
        assert set(reroute.get("linkIds") or []) <= set(routes), reroute


def test_link_check_catches_links_behind_nodes(object_info: dict[str, dict[str, Any]]) -> None:
    """The link check fails on the V2 graph drawn without its reroutes (hand_pose_images runs backwards across
    the Extract node into Audio Features, and through Align Hand Poses and Load VAE into the sampler), and a
    broken reroute chain or a reroute under the Run toolbar is reported, not ignored."""
    original = json.loads((WORKFLOWS_DIR / "EchoMimic V2 hands from a video.json").read_text(encoding="utf-8"))
    straight = json.loads(json.dumps(original))
    straight["extra"].pop("reroutes", None)
    straight["extra"].pop("linkExtensions", None)
    problems = link_problems(straight, object_info)
    assert any(p.startswith("link 11 (10 -> 8.driving_images) runs behind node 6 ") for p in problems), problems
    assert any(p.startswith("link 16 (10 -> 14.hand_pose_images) runs behind node 9 ") for p in problems), problems
    broken = json.loads(json.dumps(original))
    broken["extra"]["reroutes"][-1]["parentId"] = 10_000
    with pytest.raises(ValueError, match="broken reroute chain"):
        link_problems(broken, object_info)
    hidden = json.loads(json.dumps(original))
    newest, view = frontend_layouts()[-1], hidden["extra"]["ds"]
    toolbar = newest["panels"]["run_toolbar"]
    hidden["extra"]["reroutes"][0]["pos"] = [
        (toolbar["x"] + toolbar["width"] / 2 - newest["canvas"]["x"]) / view["scale"] - view["offset"][0],
        (toolbar["y"] + toolbar["height"] / 2 - newest["canvas"]["y"]) / view["scale"] - view["offset"][1],
    ]
    assert any(
        p.startswith(f"frontend {newest['_record']['frontend']}: reroute ") and "Run toolbar" in p
        for p in layout_problems(hidden, object_info)
    )


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.stem)
def test_workflow_matches_the_node_definitions(path: Path, object_info: dict[str, dict[str, Any]]) -> None:
    """Catches a workflow that a ComfyUI version we support would refuse: unknown node, wrong widget count or
    value, a link between mismatched types, an unconnected required input."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert workflow.get("version") == 0.4 and isinstance(workflow["nodes"], list)
    assert validate_workflow(workflow, object_info) == []


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda path: path.stem)
def test_workflow_saves_an_mp4_with_the_trimmed_sound(path: Path, object_info: dict[str, dict[str, Any]]) -> None:
    """Catches a workflow that saves untrimmed sound (or sound not from the sampler, which trims it to its own
    frames), the wrong frame rate, or pairs a variant with the wrong conditioning input."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    prompt = ui_to_api(workflow, object_info)
    types = {node_id: node["class_type"] for node_id, node in prompt.items()}
    assert set(types.values()) <= set(object_info)
    saves = [node for node in prompt.values() if node["class_type"] == "SaveVideo"]
    assert len(saves) == 1 and saves[0]["inputs"]["format"] in ("auto", "mp4")
    video = prompt[saves[0]["inputs"]["video"][0]]
    assert video["class_type"] == "CreateVideo"
    audio_source, audio_slot = video["inputs"]["audio"]
    fps_source, fps_slot = video["inputs"]["fps"]
    if "EchoMimicV3Sampler" in types.values():  # V3: the sampler returns the speech trimmed to its frames
        assert (types[audio_source], audio_slot) == ("EchoMimicV3Sampler", 2), "mux the trimmed audio"
        assert (types[fps_source], fps_slot) == ("EchoMimicV3Sampler", 1), "use the sampler's fps"
        assert [t for t in types.values() if t == "EchoMimicV3ModelLoader"] == ["EchoMimicV3ModelLoader"]
        return
    # The sampler's own audio output: trimmed to the frames it made, so length lives in one node.
    assert (types[audio_source], audio_slot) == ("EchoMimicSampler", 3), "mux the sampler's trimmed audio"
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
    original = json.loads((WORKFLOWS_DIR / "EchoMimic V1 audio.json").read_text(encoding="utf-8"))

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
