"""The example workflows match the live ComfyUI's node schemas, convert to runnable API graphs, and
come with the thumbnails the template browser shows."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import build_workflows
import workflow_format

WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.json"))
# Widgets that name a model file: the host does not have the real ones (test_workflows_run swaps
# them for tiny models), so their values are checked against the names ComfyUI's examples use.
MODEL_FILE_WIDGETS = {
    "unet_name",
    "ckpt_name",
    "clip_name",
    "clip_name1",
    "clip_name2",
    "vae_name",
    "lora_name",
    "text_encoder",
}
EXAMPLE_FILE_NAMES = {
    build_workflows.WAN21_T2V,
    build_workflows.UMT5,
    build_workflows.WAN_VAE,
    build_workflows.WAN22_HIGH,
    build_workflows.WAN22_LOW,
    build_workflows.HUNYUAN,
    build_workflows.HUNYUAN_LLM,
    build_workflows.CLIP_L,
    build_workflows.HUNYUAN_VAE,
    build_workflows.HUNYUAN_LORA,
    build_workflows.HUNYUAN15,
    build_workflows.QWEN25_VL,
    build_workflows.BYT5,
    build_workflows.HUNYUAN15_VAE,
    build_workflows.LTXV_CHECKPOINT,
    build_workflows.T5XXL,
    build_workflows.KANDINSKY5,
    build_workflows.COGVIDEOX,
    build_workflows.COGVIDEOX_VAE,
    build_workflows.LTXAV_CHECKPOINT,
    build_workflows.GEMMA3_12B,
}
README_IMAGES = ["toy_world_erasure.png", "nudenet_badges.png", "loss_chart.png", "preset_picker.png"]


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


def test_every_shipped_workflow_has_a_definition():
    assert WORKFLOW_FILES, "workflows/ is empty"
    assert sorted(p.stem for p in WORKFLOW_FILES) == sorted(build_workflows.WORKFLOWS)
    assert build_workflows.DEMO_WORKFLOW in build_workflows.WORKFLOWS


def _without_new_unlinked_outputs(built: dict, shipped: dict) -> dict:
    """``built`` with each node's trailing outputs that have no links and that the shipped file's
    node lacks dropped: a newer ComfyUI may give a node more outputs (0.33's SaveImage and
    SaveAnimatedWEBP return their images), and the frontend adds unlinked output slots from the
    node's definition when it loads a file, so they are no difference to a user."""
    shipped_nodes = {node["id"]: node for node in shipped["nodes"]}
    nodes = []
    for node in built["nodes"]:
        outputs = list(node.get("outputs", []))
        kept = len(shipped_nodes.get(node["id"], {}).get("outputs", outputs))
        while len(outputs) > kept and not outputs[-1].get("links"):
            outputs.pop()
        nodes.append(dict(node, outputs=outputs) if "outputs" in node else node)
    return dict(built, nodes=nodes)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_file_is_current_with_the_node_schemas(path, object_info):
    """The committed file equals what build_workflows writes now from the live /object_info (rerun
    it against the bundled ComfyUI after a schema change; a workflow whose nodes only a newer ComfyUI
    has, against that one)."""
    skip_without_its_nodes(path.stem, object_info)
    shipped = json.loads(path.read_text())
    assert shipped == _without_new_unlinked_outputs(build_workflows.build(object_info)[path.stem], shipped)


def skip_without_its_nodes(name: str, object_info: dict) -> None:
    missing = build_workflows.missing_nodes(name, object_info)
    if missing:
        pytest.skip(f"{name} needs nodes this ComfyUI lacks: {', '.join(missing)}")


def _accepts(declared, link_type: str) -> bool:
    if isinstance(declared, list):  # a combo fed by a link carries its value type
        return link_type == "COMBO"
    return declared == "*" or link_type in declared.split(",")


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_workflow_nodes_links_and_widgets_are_valid(path, object_info):
    """Against the live /object_info: node types exist, links join an output to an input that takes
    its type, and every widget value is one the node accepts (model files: see MODEL_FILE_WIDGETS)."""
    skip_without_its_nodes(path.stem, object_info)
    workflow = json.loads(path.read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for node in nodes.values():
        assert node["type"] in object_info, f"{node['type']} is not a node of this ComfyUI"
    for link_id, source, source_slot, target, target_slot, link_type in workflow["links"]:
        source_type = object_info[nodes[source]["type"]]["output"][source_slot]
        target_input = nodes[target]["inputs"][target_slot]
        target_info = object_info[nodes[target]["type"]]["input"]
        declared = {**target_info.get("required", {}), **target_info.get("optional", {})}[
            target_input["name"]
        ]
        assert target_input["link"] == link_id
        assert source_type == link_type, (path.stem, link_id)
        assert _accepts(declared[0], link_type), (path.stem, link_id, declared[0], link_type)
        source_outputs = nodes[source]["outputs"][source_slot]
        assert link_id in source_outputs["links"] and source_outputs["type"] == link_type
    graph = workflow_format.api_from_ui(workflow, object_info)
    for node_id, node in graph.items():
        info = object_info[node["class_type"]]
        specs = workflow_format.input_specs(info, node["inputs"])  # with a dynamic combo's own inputs
        for name in info["input"].get("required", {}):
            assert name in node["inputs"], f"{path.stem}: node {node_id} lacks required input {name}"
        for name, value in node["inputs"].items():
            spec = specs[name]
            if isinstance(value, list) or not workflow_format.is_widget(spec):
                continue
            where = f"{path.stem}: {node['class_type']}.{name}={value!r}"
            options = workflow_format.combo_options(spec)
            if name in MODEL_FILE_WIDGETS and value not in (options or []):
                assert value in EXAMPLE_FILE_NAMES, where
            elif options is not None:
                assert value in options, where
            limits = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if spec[0] in ("INT", "FLOAT"):
                assert isinstance(value, int | float) and not isinstance(value, bool), where
                assert limits.get("min", value) <= value <= limits.get("max", value), where
            elif spec[0] == "BOOLEAN":
                assert isinstance(value, bool), where
            elif spec[0] == "STRING":
                assert isinstance(value, str), where


def test_demo_workflow_uses_only_files_the_host_has(object_info):
    """The toy world's model is linked into the host's models/ (comfyui_host), so the demo runs as it is."""
    workflow = json.loads((WORKFLOWS_DIR / f"{build_workflows.DEMO_WORKFLOW}.json").read_text())
    graph = workflow_format.api_from_ui(workflow, object_info)
    unets = [n["inputs"]["unet_name"] for n in graph.values() if n["class_type"] == "UNETLoader"]
    options = workflow_format.combo_options(object_info["UNETLoader"]["input"]["required"]["unet_name"])
    assert unets and set(unets) <= set(options)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_ui_to_api_round_trip_gives_the_definition(path, object_info):
    skip_without_its_nodes(path.stem, object_info)
    graph = build_workflows.WORKFLOWS[path.stem]().graph
    converted = workflow_format.api_from_ui(json.loads(path.read_text()), object_info)
    assert sorted(converted) == sorted(graph)
    for node_id, node in graph.items():
        assert converted[node_id]["class_type"] == node["class_type"]
        for name, value in node["inputs"].items():
            assert converted[node_id]["inputs"][name] == value, (node_id, name)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_template_browser_gets_the_workflow_and_its_thumbnail(path, comfy_server):
    """ComfyUI serves workflows/<name>.json and the <name>.jpg the template browser shows with it
    (made by test_browser from its screenshot: VIDEO_UNLEARNING_UPDATE_SCREENSHOTS=1)."""
    from PIL import Image

    thumbnail = path.with_suffix(".jpg")
    assert thumbnail.is_file(), f"no thumbnail {thumbnail.name}"
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.size == (512, 512)  # the template browser's cards are square
    base = f"{comfy_server.url}/api/workflow_templates/video_unlearning/{path.stem}"
    with urllib.request.urlopen(base + ".json", timeout=30) as response:
        assert json.loads(response.read()) == json.loads(path.read_text())
    # The URL the frontend asks (ComfyUI's own folder route up to 0.33.0, the pack's after), and
    # the one without /api (no ComfyUI serves that one itself: the pack's route answers there).
    for url in (base + ".jpg", base.replace("/api/", "/", 1) + ".jpg"):
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.headers["Content-Type"] == "image/jpeg", url
            assert response.read() == thumbnail.read_bytes(), url


def test_thumbnail_route_serves_only_shipped_thumbnails(comfy_server):
    base = f"{comfy_server.url}/workflow_templates/video_unlearning"
    for name in ("no_such_workflow.jpg", "..%2Fpyproject.jpg", "screenshots%2Floss_chart.jpg"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{base}/{name}", timeout=30).close()
        assert error.value.code in (403, 404), name


def test_thumbnail_route_where_comfyui_serves_only_the_json(monkeypatch):
    """Newer ComfyUI than 0.33.0 serves a pack's workflow files from one route-table route that
    answers *.json only, added after the routes custom nodes add while they load. With a stand-in
    for that route, registered the same way after the pack's: the pack's route answers a thumbnail,
    ComfyUI's still answers the JSON and everything else under that path."""
    import asyncio
    import types

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from video_unlearning.nodes import web_routes

    async def comfy_json_only(request):  # the stand-in: JSON of any pack, 404 for anything else
        filename = request.match_info["filename"]
        if not filename.endswith(".json"):
            raise web.HTTPNotFound()
        return web.json_response({"served_by": "comfyui", "file": filename})

    async def check():
        routes = web.RouteTableDef()
        instance = types.SimpleNamespace(routes=routes)  # a PromptServer while custom nodes load
        monkeypatch.setitem(
            sys.modules,
            "server",
            types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=instance)),
        )
        assert web_routes.register()
        routes.get("/workflow_templates/{module_name}/{filename}")(comfy_json_only)
        app = web.Application()
        app.add_routes([web.get("/api" + r.path, r.handler) for r in routes])
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            base = f"/api/workflow_templates/{web_routes.PACK_FOLDER}/{build_workflows.DEMO_WORKFLOW}"
            response = await client.get(base + ".jpg")
            assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
            assert (
                await response.read() == (WORKFLOWS_DIR / f"{build_workflows.DEMO_WORKFLOW}.jpg").read_bytes()
            )
            response = await client.get(base + ".json")
            assert (await response.json())["served_by"] == "comfyui"
            response = await client.get(
                f"/api/workflow_templates/other_pack/{build_workflows.DEMO_WORKFLOW}.jpg"
            )
            assert response.status == 404

    asyncio.run(check())


def test_readme_pictures_exist():
    for name in README_IMAGES:
        assert (WORKFLOWS_DIR / "screenshots" / name).is_file(), name
