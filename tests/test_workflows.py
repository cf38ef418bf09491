"""The example workflows match the live ComfyUI's node schemas and convert to runnable API graphs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import build_workflows
import workflow_format

WORKFLOW_FILES = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


def test_every_shipped_workflow_has_a_definition():
    assert WORKFLOW_FILES, "workflows/ is empty"
    assert sorted(p.stem for p in WORKFLOW_FILES) == sorted(build_workflows.WORKFLOWS)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_file_is_current_with_the_node_schemas(path, object_info):
    """The committed file equals what build_workflows writes now (rerun it after a schema change)."""
    assert json.loads(path.read_text()) == build_workflows.build(object_info)[path.stem]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_nodes_links_and_widgets_are_valid(path, object_info):
    workflow = json.loads(path.read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for node in nodes.values():
        assert node["type"] in object_info, f"{node['type']} is not a node of this ComfyUI"
    for link_id, source, source_slot, target, target_slot, link_type in workflow["links"]:
        source_type = object_info[nodes[source]["type"]]["output"][source_slot]
        target_input = nodes[target]["inputs"][target_slot]
        assert target_input["link"] == link_id
        assert source_type == link_type == target_input["type"], (path.stem, link_id)
    graph = workflow_format.api_from_ui(workflow, object_info)
    for node_id, node in graph.items():
        info = object_info[node["class_type"]]
        for name, spec in info["input"].get("required", {}).items():
            assert name in node["inputs"], f"{path.stem}: node {node_id} lacks required input {name}"
            value = node["inputs"][name]
            options = workflow_format.combo_options(spec)
            if isinstance(value, list) or not workflow_format.is_widget(spec):
                continue
            if options is not None and not str(value).endswith(".safetensors"):
                assert value in options, f"{path.stem}: {node['class_type']}.{name}={value!r}"
            limits = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if spec[0] in ("INT", "FLOAT"):
                assert limits.get("min", value) <= value <= limits.get("max", value), (name, value)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_ui_to_api_round_trip_gives_the_definition(path, object_info):
    graph, _, _ = build_workflows.WORKFLOWS[path.stem]()
    converted = workflow_format.api_from_ui(json.loads(path.read_text()), object_info)
    for node_id, node in graph.items():
        assert converted[node_id]["class_type"] == node["class_type"]
        for name, value in node["inputs"].items():
            assert converted[node_id]["inputs"][name] == value, (node_id, name)
