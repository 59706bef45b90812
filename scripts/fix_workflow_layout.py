"""Lay out workflow files so they pass the layout checks in tests/test_workflows.py.

    python scripts/fix_workflow_layout.py "workflows/NAME.json" [...]

Keeps the layout's columns (nodes whose x differs by <= 60 px) and their top-to-bottom order; widens each
node to fit its title, makes it tall enough for its sockets and widgets (plus one spare widget row), moves
nodes down within a column and columns right so nothing overlaps (title bars included), and saves a view
(extra.ds) that opens on the graph's left part clear of every measured frontend's panels
(tests/comfyui_layout: tabs, Nodes 2.0 banner, sidebar, workflow breadcrumb, Run toolbar). Everything else
in the file is kept. ``--view-only`` saves that view and moves nothing. Run it after adding widgets or
nodes; then check with `python -m pytest -q tests/test_workflows.py`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests import test_workflows as checks  # noqa: E402 - the repository root must be importable first
from tests.comfy_stubs import install_stub_modules, load_extension  # noqa: E402
from tests.comfy_stubs.workflow_format import object_info_of  # noqa: E402

COLUMN_TOLERANCE = 60
GAP_X, GAP_Y = 40, 30
VIEW_SCALE = 0.8
PANEL_MARGIN = 8  # page px between the graph and the nearest panel or canvas edge


def node_definitions() -> dict[str, dict[str, Any]]:
    """The newest recorded ComfyUI core nodes plus this extension's nodes (display names included)."""
    install_stub_modules(Path(tempfile.mkdtemp(prefix="layout_models_")))
    extension = load_extension()
    info = dict(checks.core_nodes(checks.VERSIONS[-1]))
    for node_id, node_class in extension.NODE_CLASS_MAPPINGS.items():
        info[node_id] = {
            **object_info_of(node_class),
            "display_name": extension.NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id),
        }
    return info


def relayout(workflow: dict[str, Any], info: dict[str, dict[str, Any]]) -> None:
    nodes = workflow["nodes"]
    for node in nodes:
        width, height = checks._size(node)
        title_width = len(checks.node_title(node, info)) * checks.TITLE_CHAR_WIDTH + checks.TITLE_PADDING
        width = max(width, int(-(-title_width // 10) * 10))
        height = max(height, int(checks.min_body_height(node, info) + checks.WIDGET_HEIGHT))
        node["size"] = [width, height]
    columns: list[list[dict[str, Any]]] = []
    for node in sorted(nodes, key=lambda n: checks._pos(n)):
        if columns and checks._pos(node)[0] - checks._pos(columns[-1][0])[0] <= COLUMN_TOLERANCE:
            columns[-1].append(node)
        else:
            columns.append([node])
    x = 0
    for column in columns:
        column.sort(key=lambda n: checks._pos(n)[1])
        bottom = None
        for node in column:
            y = checks._pos(node)[1]
            if bottom is not None:
                y = max(y, bottom + checks.TITLE_HEIGHT + GAP_Y)
            node["pos"] = [x, y]
            bottom = y + node["size"][1]
        x += max(node["size"][0] for node in column) + GAP_X
    workflow.setdefault("extra", {})["ds"] = saved_view(workflow, info)


ROUTE_MARGIN = 16  # graph px between a routed link's horizontal run and the nodes it passes


def _columns(nodes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Nodes grouped into columns (x within COLUMN_TOLERANCE of the column's first node), left to right."""
    columns: list[list[dict[str, Any]]] = []
    for node in sorted(nodes, key=lambda n: checks._pos(n)):
        if columns and checks._pos(node)[0] - checks._pos(columns[-1][0])[0] <= COLUMN_TOLERANCE:
            columns[-1].append(node)
        else:
            columns.append([node])
    return columns


def route_links(workflow: dict[str, Any], info: dict[str, dict[str, Any]]) -> None:
    """Native reroutes (extra.reroutes / extra.linkExtensions; node ids and links stay as they are) for every
    link whose straight line runs behind another node: out of its socket into the gap after the output's
    column, along that gap to a free horizontal run across the columns in between, along the gap before the
    input's column, and into the socket. The graph's earlier reroutes are replaced."""
    extra = workflow.setdefault("extra", {})
    extra.pop("reroutes", None)
    extra.pop("linkExtensions", None)
    crossing = {int(problem.split()[1]) for problem in checks.link_problems(workflow, info)}
    if not crossing:
        return
    nodes = {node["id"]: node for node in workflow["nodes"]}
    boxes = checks.node_boxes(workflow, info)
    columns = _columns([node for node in workflow["nodes"] if node["id"] in boxes])
    column_of = {node["id"]: index for index, column in enumerate(columns) for node in column}
    lefts = [min(boxes[n["id"]][0] for n in column) for column in columns]
    rights = [max(boxes[n["id"]][2] for n in column) for column in columns]
    # gap g lies between column g - 1 and column g
    gaps = (
        [lefts[0] - GAP_X / 2]
        + [(right + left) / 2 for right, left in zip(rights, lefts[1:])]
        + [rights[-1] + GAP_X / 2]
    )
    new_reroutes: list[dict[str, Any]] = []
    extensions: list[dict[str, Any]] = []
    for link_id, origin, origin_slot, target, target_slot, _type in workflow["links"]:
        if link_id not in crossing:
            continue
        start = checks.slot_position(nodes[origin], "output", origin_slot, info)
        end = checks.slot_position(nodes[target], "input", target_slot, info)
        gap_out, gap_in = column_of[origin] + 1, column_of[target]
        points = [(gaps[gap_out], start[1])]
        if gap_out != gap_in:  # a horizontal run across the columns between the two gaps
            spanned = range(min(gap_out, gap_in), max(gap_out, gap_in))
            blocked = sorted(
                (boxes[n["id"]][1] - ROUTE_MARGIN, boxes[n["id"]][3] + ROUTE_MARGIN)
                for index in spanned
                for n in columns[index]
            )
            wanted = (start[1] + end[1]) / 2
            free, low = [], -float("inf")
            for top, bottom in blocked:
                if top > low:
                    free.append((low, top))
                low = max(low, bottom)
            free.append((low, float("inf")))
            run_y = min((min(max(wanted, a), b) for a, b in free), key=lambda y: abs(y - wanted))
            points += [(gaps[gap_out], run_y), (gaps[gap_in], run_y)]
        points.append((gaps[gap_in], end[1]))
        parent = None
        for point in points:
            reroute_id = len(new_reroutes) + 1
            reroute: dict[str, Any] = {"id": reroute_id, "pos": [round(point[0], 1), round(point[1], 1)]}
            if parent is not None:
                reroute["parentId"] = parent
            reroute["linkIds"] = [link_id]
            new_reroutes.append(reroute)
            parent = reroute_id
        extensions.append({"id": link_id, "parentId": parent})
    extra["reroutes"] = new_reroutes
    extra["linkExtensions"] = extensions


def saved_view(workflow: dict[str, Any], info: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A view at VIEW_SCALE whose top-left node box sits PANEL_MARGIN clear of the canvas edges, of the left
    sidebar and below every panel over the top of the page, on every measured frontend."""
    import math

    nodes, reroutes = checks.node_boxes(workflow, info).values(), checks.reroute_boxes(workflow).values()
    left = min(box[0] for box in [*nodes, *reroutes])
    top = min([*(box[1] - checks.BADGE_HEIGHT for box in nodes), *(box[1] for box in reroutes)])
    offset_x = offset_y = -math.inf
    for layout in checks.frontend_layouts():
        canvas, panels = layout["canvas"], [panel for panel in layout["panels"].values() if panel]
        sidebars = [p for p in panels if p["height"] > p["width"]]  # tall panels on the left, the rest on top
        page_left = max([canvas["x"], *(p["x"] + p["width"] for p in sidebars)]) + PANEL_MARGIN
        page_top = max([canvas["y"], *(p["y"] + p["height"] for p in panels if p not in sidebars)]) + PANEL_MARGIN
        offset_x = max(offset_x, (page_left - canvas["x"]) / VIEW_SCALE - left)
        offset_y = max(offset_y, (page_top - canvas["y"]) / VIEW_SCALE - top)
    return {"scale": VIEW_SCALE, "offset": [math.ceil(offset_x), math.ceil(offset_y)]}


def main(paths: list[str]) -> int:
    view_only, routes = "--view-only" in paths, "--route-links" in paths
    paths = [path for path in paths if path not in ("--view-only", "--route-links")]
    info = node_definitions()
    failed = False
    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        workflow = json.loads(text)
        if view_only:
            workflow.setdefault("extra", {})["ds"] = saved_view(workflow, info)
        else:
            relayout(workflow, info)
        if routes:
            route_links(workflow, info)
            workflow["extra"]["ds"] = saved_view(workflow, info)  # the reroutes in view too
        indent = 1 if text.startswith('{\n "') else 2  # keep the file's own indentation
        path.write_text(json.dumps(workflow, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
        problems = checks.layout_problems(workflow, info) + checks.link_problems(workflow, info)
        failed |= bool(problems)
        print(f"{path}: {'; '.join(problems) or 'layout ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
