"""The pack inside a real ComfyUI server: it imports cleanly, lists its nodes, serves its workflows."""

from __future__ import annotations

from pathlib import Path

import comfyui_host
from fixtures.tiny_models import TINY_MODELS
from graphs import Graph, tiny_text_to_video

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_pack_imports_with_no_error(comfy_server):
    log = comfy_server.log()
    pack_lines = [line for line in log.splitlines() if comfyui_host.PACK_DIR_NAME in line]
    assert any("custom_nodes" in line and "seconds" in line for line in pack_lines), log[-3000:]
    assert not [line for line in pack_lines if "IMPORT FAILED" in line or "Cannot import" in line]
    assert "Error while calling comfy_entrypoint" not in log


def test_start_up_log_has_no_deprecation_warning_about_the_pack(comfy_server):
    """ComfyUI warns of deprecated APIs a pack uses (legacy node definitions, frontend paths under
    /scripts/ui or /extensions/core, old loader functions); none may name the pack or its nodes."""
    from video_unlearning.nodes import all_nodes

    names = [comfyui_host.PACK_DIR_NAME, *(node.GET_SCHEMA().node_id for node in all_nodes())]
    warned = [line for line in comfy_server.log().splitlines() if "deprecat" in line.lower()]
    about_pack = [line for line in warned if any(name in line for name in names)]
    assert not about_pack, about_pack
    assert not [line for line in warned if "DEPRECATION WARNING" in line], warned


def test_object_info_lists_every_pack_node(comfy_server):
    from video_unlearning.nodes import all_nodes

    info = comfy_server.get("/object_info")
    expected = {node.GET_SCHEMA().node_id for node in all_nodes()}
    assert expected, "the pack registers no nodes"
    assert expected <= set(info), sorted(expected - set(info))
    for node_id in expected:
        assert info[node_id]["python_module"].startswith("custom_nodes.")
    assert "VideoUnlearningTestTinyTextEncoder" in info


def test_workflow_templates_lists_the_pack_workflows(comfy_server):
    templates = comfy_server.get("/workflow_templates")
    shipped = sorted(p.stem for p in (REPO_ROOT / "workflows").glob("*.json"))
    assert sorted(templates.get(comfyui_host.PACK_DIR_NAME, [])) == shipped


def test_tiny_wan_samples_through_the_server(comfy_server, host_base):
    graph = Graph()
    ids = tiny_text_to_video(graph, TINY_MODELS["tiny_wan21_t2v"], "a red ball bouncing")
    graph.node("SaveLatent", samples=Graph.out(ids["sampler"]), filename_prefix="foundation/tiny_wan")
    entry = comfy_server.run_prompt(graph.nodes)
    files = [f for out in entry["outputs"].values() for f in out.get("latents", [])]
    assert files, entry["outputs"]
    saved = host_base / "output" / files[0]["subfolder"] / files[0]["filename"]
    assert saved.stat().st_size > 0
