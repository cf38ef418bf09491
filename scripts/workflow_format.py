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


def _inputs(node_info: dict) -> list[tuple[str, list]]:
    spec = node_info.get("input", {})
    order = node_info.get("input_order", {})
    result = []
    for section in ("required", "optional"):
        entries = spec.get(section, {})
        names = order.get(section, list(entries))
        result += [(name, entries[name]) for name in names if name in entries]
    return result


def is_widget(spec: list) -> bool:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


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
        for name, spec in _inputs(object_info[node_type]):
            if not is_widget(spec):
                continue
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
        graph[str(node["id"])] = {"class_type": node_type, "inputs": inputs}
    return graph


def ui_from_api(
    graph: dict[str, dict],
    object_info: dict[str, dict],
    positions: dict[str, tuple[float, float]] | None = None,
    titles: dict[str, str] | None = None,
) -> dict:
    """A UI-format workflow for an API-format graph (node ids kept, links numbered from 1)."""
    positions = positions or {}
    titles = titles or {}
    links: list[list] = []
    outputs_links: dict[tuple[str, int], list[int]] = {}
    nodes = []
    for order, (node_id, node) in enumerate(graph.items()):
        node_type = node["class_type"]
        info = object_info[node_type]
        ui_inputs, values = [], []
        for name, spec in _inputs(info):
            value = node["inputs"].get(name)
            linked = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            if linked:
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
            "size": [300, 60 + 26 * (len(values) + len(ui_inputs))],
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
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }
