"""Convert between ComfyUI's two graph formats, using a live server's /object_info.

* UI format (what the canvas saves and loads, and what workflows/ ships): nodes with positions,
  ``widgets_values`` (widget inputs by position) and a ``links`` table.
* API format (what POST /prompt takes): ``{id: {"class_type", "inputs"}}`` with every input by name,
  links as ``[source_id, output_index]``.

Which inputs are widgets, and their order, comes from /object_info: inputs of type INT, FLOAT,
STRING, BOOLEAN or a combo (a list of options, or "COMBO"), required before optional, in the
order the node declares them. An INT marked ``control_after_generate`` (seeds) is followed in
``widgets_values`` by its control value ("fixed", "randomize", ...), which the API format omits.

Standard library only.
"""

from __future__ import annotations

from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = {"seed", "noise_seed"}
# A V3 dynamic combo (ComfyUI 0.33's SaveVideo ``format``): a combo whose chosen option adds its own
# inputs after it, named "<combo>.<input>" in the API format (ComfyUI nests them again).
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


def _inputs(node_info: dict) -> list[tuple[str, list]]:
    spec = node_info.get("input", {})
    order = node_info.get("input_order", {})
    result = []
    for section in ("required", "optional"):
        entries = spec.get(section, {})
        names = order.get(section, list(entries))
        result += [(name, entries[name]) for name in names if name in entries]
    return result


def _expanded(name: str, spec: list, chosen) -> list[tuple[str, list]]:
    """``(name, spec)`` and, for a dynamic combo, the inputs its chosen option adds (``chosen(name)``
    is the option's key), each expanded the same way, named "<name>.<input>"."""
    result = [(name, spec)]
    if spec[0] != DYNAMIC_COMBO:
        return result
    key = chosen(name)
    if key is None:  # not given: the combo's default
        key = default_value(spec)
    for option in spec[1].get("options", []):
        if option["key"] == key:
            for section in ("required", "optional"):
                for child, child_spec in option["inputs"].get(section, {}).items():
                    result += _expanded(f"{name}.{child}", child_spec, chosen)
    return result


def is_widget(spec: list) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    # A V3 MultiType input (LTX-2's LTXVEmptyLatentAudio frame_rate, "FLOAT,INT") is drawn as its
    # ``widgetType``'s widget.
    return (
        isinstance(kind, list)
        or kind in WIDGET_TYPES
        or kind == DYNAMIC_COMBO
        or (options.get("widgetType") in WIDGET_TYPES)
    )


def has_control_value(name: str, spec: list) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return spec[0] == "INT" and (options.get("control_after_generate") or name in SEED_NAMES)


def input_type(spec: list) -> str:
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def combo_options(spec: list) -> list | None:
    """The options of a combo input (old style: a list as the type; new style: "COMBO")."""
    if isinstance(spec[0], list):
        return spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if spec[0] == DYNAMIC_COMBO:
        return [option["key"] for option in options.get("options", [])]
    return options.get("options") if spec[0] == "COMBO" else None


def default_value(spec: list) -> Any:
    """What the web UI puts in a new node's widget: the declared default, else a combo's first option."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in options:
        return options["default"]
    choices = combo_options(spec)
    return choices[0] if choices else None


def widget_names(node_info: dict) -> list[str]:
    return [name for name, spec in _inputs(node_info) if is_widget(spec)]


def input_specs(node_info: dict, inputs: dict[str, Any]) -> dict[str, list]:
    """Every input's spec by name, with the inputs that the dynamic combos' chosen options (their
    values in the API-format ``inputs``) add."""
    specs: dict[str, list] = {}
    for name, spec in _inputs(node_info):
        specs.update(_expanded(name, spec, inputs.get))
    return specs


def api_from_ui(workflow: dict, object_info: dict[str, dict]) -> dict[str, dict]:
    """The API-format graph that queuing ``workflow`` in the web UI would send.

    Muted (mode 2) and bypassed (mode 4) nodes are left out; a bypassed node's links are not
    rewired, so workflows meant for this converter do not bypass nodes.
    """
    links = {link[0]: link for link in workflow.get("links", [])}
    graph: dict[str, dict] = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (2, 4):
            continue
        node_type = node["type"]
        if node_type not in object_info:
            raise KeyError(f"node {node['id']} has type {node_type!r}, which this ComfyUI does not have")
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        position = 0
        for top_name, top_spec in _inputs(object_info[node_type]):
            if not is_widget(top_spec):
                continue
            for name, spec in _expanded(top_name, top_spec, inputs.get):  # reads each combo's value first
                if position >= len(values):
                    raise ValueError(f"node {node['id']} ({node_type}) has no widget value for {name!r}")
                inputs[name] = values[position]
                position += 2 if has_control_value(name, spec) else 1
        for slot in node.get("inputs", []):
            link_id = slot.get("link")
            if link_id is None:
                continue
            _, source, source_slot, _, _, _ = links[link_id]
            inputs[slot["name"]] = [str(source), source_slot]
        title = node.get("title") or object_info[node_type].get("display_name") or node_type
        graph[str(node["id"])] = {"class_type": node_type, "inputs": inputs, "_meta": {"title": title}}
    return graph


# Node geometry of the ComfyUI frontend (1.32, canvas mode): a node's height is a fixed margin, one
# row per linked slot (inputs or outputs, whichever are more), one row per widget; a multiline text
# box takes what it is given (at least MULTILINE_MIN_HEIGHT), so we give it room to show a few lines.
NODE_MARGIN = 14
SLOT_HEIGHT = 20
WIDGET_HEIGHT = 24
MULTILINE_HEIGHT = 96
NODE_WIDTH = 320
WIDE_NODE_WIDTH = 400  # nodes with a multiline text box
TITLE_HEIGHT = 30  # drawn above a node's position
BAND_GAP = 110  # between horizontal bands: room for a group's title


def is_multiline(spec: list) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return spec[0] == "STRING" and bool(options.get("multiline"))


def node_size(node_info: dict) -> list[int]:
    """[width, height] that shows every slot and widget of a node of this type."""
    inputs = _inputs(node_info)
    slots = sum(not is_widget(spec) for _, spec in inputs)
    widgets = [spec for name, spec in inputs if is_widget(spec)]
    multiline = sum(is_multiline(spec) for spec in widgets)
    rows = len(widgets) - multiline + sum(has_control_value(n, s) for n, s in inputs if is_widget(s))
    height = NODE_MARGIN + SLOT_HEIGHT * max(slots, len(node_info.get("output", [])))
    height += WIDGET_HEIGHT * rows + MULTILINE_HEIGHT * multiline
    return [WIDE_NODE_WIDTH if multiline else NODE_WIDTH, height]


def column_layout(
    graph: dict[str, dict],
    object_info: dict[str, dict],
    columns: dict[str, int] | None = None,
    bands: dict[str, int] | None = None,
    gap: tuple[int, int] = (60, 50),
) -> dict[str, tuple[int, int]]:
    """Positions for a left-to-right drawing of ``graph``.

    A node goes one column right of its rightmost input (a node without inputs: one column left of
    its first consumer); ``columns`` fixes the column of given nodes. ``bands`` puts nodes in
    horizontal strips (default 0) stacked top-down, so that parallel branches line up as rows; within
    a column and band, nodes are stacked in the graph's order.
    """
    bands, columns = bands or {}, columns or {}
    sources = {
        node_id: [v[0] for v in node["inputs"].values() if _is_link(v)] for node_id, node in graph.items()
    }
    depth: dict[str, int] = dict(columns)

    def visit(node_id: str) -> int:
        if node_id not in depth:
            depth[node_id] = max((visit(s) + 1 for s in sources[node_id]), default=0)
        return depth[node_id]

    for node_id in graph:
        visit(node_id)
    for node_id in graph:
        consumers = [c for c, srcs in sources.items() if node_id in srcs]
        if not sources[node_id] and consumers and node_id not in columns:
            depth[node_id] = max(0, min(depth[c] for c in consumers) - 1)
    size = {node_id: node_size(object_info[node["class_type"]]) for node_id, node in graph.items()}
    widths: dict[int, int] = {}
    for node_id in graph:
        widths[depth[node_id]] = max(widths.get(depth[node_id], 0), size[node_id][0])
    lefts, x = {}, 20
    for column in range(max(widths) + 1):
        lefts[column] = x
        x += widths.get(column, 0) + gap[0]
    offsets: dict[tuple[int, int], int] = {}  # (band, column) -> next y within the band
    within: dict[str, int] = {}
    for node_id in graph:
        key = (bands.get(node_id, 0), depth[node_id])
        within[node_id] = offsets.get(key, 0)
        offsets[key] = within[node_id] + TITLE_HEIGHT + size[node_id][1] + gap[1]
    band_tops, y = {}, 20
    for band in sorted({b for b, _ in offsets}):
        band_tops[band] = y
        y += max(h for (b, _), h in offsets.items() if b == band) + BAND_GAP
    return {
        node_id: (lefts[depth[node_id]], band_tops[bands.get(node_id, 0)] + within[node_id] + TITLE_HEIGHT)
        for node_id in graph
    }


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def ui_from_api(
    graph: dict[str, dict],
    object_info: dict[str, dict],
    positions: dict[str, tuple[float, float]] | None = None,
    titles: dict[str, str] | None = None,
    groups: list[tuple[str, list[str], str]] | None = None,
) -> dict:
    """A UI-format workflow for an API-format graph (node ids kept, links numbered from 1).

    ``positions`` default to ``column_layout``; ``groups`` are (title, node ids, colour) boxes drawn
    around those nodes.
    """
    positions = positions or column_layout(graph, object_info)
    titles = titles or {}
    links: list[list] = []
    outputs_links: dict[tuple[str, int], list[int]] = {}
    nodes = []
    for order, (node_id, node) in enumerate(graph.items()):
        node_type = node["class_type"]
        info = object_info[node_type]
        ui_inputs, values = [], []
        expanded = [e for n, s in _inputs(info) for e in _expanded(n, s, node["inputs"].get)]
        for name, spec in expanded:
            value = node["inputs"].get(name)
            if _is_link(value):
                link_id = len(links) + 1
                source, slot = value
                source_type = object_info[graph[source]["class_type"]]["output"][slot]
                links.append([link_id, int(source), slot, int(node_id), len(ui_inputs), source_type])
                outputs_links.setdefault((source, slot), []).append(link_id)
                entry = {"name": name, "type": input_type(spec), "link": link_id}
                if is_widget(spec):
                    raise ValueError(f"{node_type}.{name}: linking a widget input is not supported here")
                ui_inputs.append(entry)
            elif is_widget(spec):
                if value is None:
                    value = default_value(spec)
                values.append(value)
                if has_control_value(name, spec):
                    values.append("fixed")
            elif name in node["inputs"]:
                raise ValueError(f"{node_type}.{name} takes a link, got {value!r}")
        x, y = positions.get(node_id, (50 + 320 * order, 100))
        entry = {
            "id": int(node_id),
            "type": node_type,
            "pos": [x, y],
            "size": node_size(info),
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": ui_inputs,
            "outputs": [],
            "properties": {"Node name for S&R": node_type},
            "widgets_values": values,
        }
        if node_id in titles:
            entry["title"] = titles[node_id]
        nodes.append(entry)
    for entry in nodes:
        info = object_info[entry["type"]]
        names = info.get("output_name") or info["output"]
        entry["outputs"] = [
            {
                "name": names[slot],
                "type": out_type,
                "links": outputs_links.get((str(entry["id"]), slot), []),
                "slot_index": slot,
            }
            for slot, out_type in enumerate(info["output"])
        ]
    return {
        "last_node_id": max(int(k) for k in graph),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [_group(title, members, colour, nodes) for title, members, colour in groups or []],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def _group(title: str, members: list[str], colour: str, nodes: list[dict]) -> dict:
    boxes = [(n["pos"], n["size"]) for n in nodes if str(n["id"]) in members]
    if len(boxes) != len(members):
        raise ValueError(f"group {title!r} names nodes that are not in the graph: {members}")
    pad = 16
    left = min(p[0] for p, _ in boxes) - pad
    top = min(p[1] for p, _ in boxes) - TITLE_HEIGHT - pad - 34  # room for the group's own title
    right = max(p[0] + s[0] for p, s in boxes) + pad
    bottom = max(p[1] + s[1] for p, s in boxes) + pad
    return {
        "title": title,
        "bounding": [left, top, right - left, bottom - top],
        "color": colour,
        "font_size": 24,
    }
